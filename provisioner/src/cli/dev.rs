//! `provision dev`: the platform on one machine, no AWS account, no Docker.

use std::io::Write;

use clap::Args;
use event_common::config::Env;
use event_common::{lifecycle, telemetry};

use devstack::{DevOptions, DevPlatform};

/// Options of `provision dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Port of the front door (the load balancer's place), on 127.0.0.1.
    #[arg(long, env = "EVENT_PLATFORM_DEV_PORT", default_value_t = 8080)]
    port: u16,
    /// Partitions of the events topic on the embedded broker.
    #[arg(long, env = "EVENT_PLATFORM_DEV_PARTITIONS", default_value_t = 4)]
    partitions: i32,
    /// Where the embedded stores keep their data, across restarts.
    #[arg(long, env = "EVENT_PLATFORM_DEV_DATA_DIR", default_value = "state/dev")]
    data_dir: std::path::PathBuf,
    /// Start with empty stores (the events and the archive in --data-dir are deleted).
    #[arg(long)]
    fresh: bool,
}

impl DevArgs {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let env = Env::from_process().with("ENVIRONMENT", "development");
        let _traces = telemetry::init_tracing(&env, "provision-dev");
        let platform = DevPlatform::start(DevOptions {
            port: self.port,
            partitions: self.partitions,
            data_dir: self.data_dir,
            fresh: self.fresh,
        })
        .await?;
        // Write errors are ignored: a closed stdout (`| head`) must not stop the platform.
        let _ = writeln!(std::io::stdout(), "{}", platform.banner());
        platform.serve(lifecycle::shutdown_signal()).await?;
        let _ = writeln!(std::io::stdout(), "event platform stopped");
        Ok(())
    }
}
