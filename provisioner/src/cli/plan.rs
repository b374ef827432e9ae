//! `provision plan`: refreshes from the cloud and shows what apply would do.

use std::process::ExitCode;

use clap::Args;

use super::stack::{options, BinariesArgs, StackArgs};

/// Arguments of `provision plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    binaries: BinariesArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Exit 0 with no changes, 2 with changes, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Cloud reads in flight at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
}

impl PlanArgs {
    /// Plans and prints.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let stack = self.binaries.open(&self.stack).await?;
        let plan = stack.plan(&options(&stack, self.parallelism)).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", plan.render());
        }
        Ok(if self.detailed_exitcode && plan.has_changes() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    }
}
