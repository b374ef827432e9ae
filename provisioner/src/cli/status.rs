//! `provision status`: is the applied stack as the blueprint wants?

use std::process::ExitCode;

use clap::Args;

use super::stack::StackArgs;
use crate::status::Status;

/// Arguments of `provision status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// The broker to read the processor's lag from (default: the broker's
    /// private address, which answers inside the VPC only).
    #[arg(long, value_name = "HOST:PORT")]
    kafka: Option<String>,
}

impl StatusArgs {
    /// Prints the status; exit 0 when the stack is as the blueprint wants, 2 when not.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let stack = self.stack.open().await?;
        let state = stack.state()?;
        let status = Status::gather(
            &stack.cloud,
            &stack.blueprint,
            &state,
            self.kafka.as_deref(),
        )
        .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print!("{}", status.render());
        }
        Ok(ExitCode::from(status.exit_code()))
    }
}
