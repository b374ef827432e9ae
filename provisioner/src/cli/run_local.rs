//! `provision run-local`: the deployed task definitions running on this
//! machine behind the load balancer's own rules (see [`crate::local`]).

use clap::Args;
use event_common::lifecycle;

use super::stack::StackArgs;
use crate::blueprint::Blueprint;
use crate::local::{self, RunLocalOptions};

/// Options of `provision run-local`.
#[derive(Debug, Args)]
pub struct RunLocalArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Port of the load balancer on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A Kafka broker on this machine for the tasks (default: an embedded one).
    #[arg(long, value_name = "ADDR")]
    kafka: Option<String>,
}

impl RunLocalArgs {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let (blueprint, warnings) = Blueprint::load_checked(&self.stack.blueprint)?;
        for warning in warnings {
            eprintln!("{warning}");
        }
        let options = RunLocalOptions {
            port: self.port,
            kafka: self.kafka,
            state_dir: self.stack.state_dir,
        };
        local::run(&blueprint, options, lifecycle::shutdown_signal()).await
    }
}
