//! `provision plan`: refreshes from the cloud and shows what apply would do.

use std::path::PathBuf;
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
    /// Also save the plan to FILE, for `provision apply FILE` to apply
    /// exactly it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Cloud reads in flight at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
}

impl PlanArgs {
    /// Plans and prints.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let stack = self.binaries.open(&self.stack).await?;
        let (plan, cost) = stack
            .plan_with_cost(&options(&stack, self.parallelism))
            .await?;
        if self.json {
            let mut json = serde_json::to_value(&plan)?;
            if let Some(fields) = json.as_object_mut() {
                fields.insert("cost".into(), serde_json::to_value(&cost)?);
            }
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            print!("{}{}", plan.render(), cost.render());
        }
        if let Some(path) = &self.out {
            plan.save(path)?;
            eprintln!(
                "Saved the plan to {}: `provision apply -b BLUEPRINT {}` applies exactly it, and refuses it if the stack changes first.",
                path.display(),
                path.display()
            );
        }
        Ok(if self.detailed_exitcode && plan.has_changes() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    }
}
