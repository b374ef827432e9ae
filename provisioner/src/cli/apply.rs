//! `provision apply`: plan, confirm, and make the cloud match the blueprint.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::stack::{confirm, options, BinariesArgs, StackArgs};
use crate::plan::{Action, Plan};
use crate::stack::Outputs;

/// Arguments of `provision apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    binaries: BinariesArgs,
    /// A plan saved by `plan --out`: applied as it is, without asking (it
    /// was reviewed), and refused if the stack changed since.
    #[arg(value_name = "PLAN")]
    saved_plan: Option<PathBuf>,
    /// Apply without asking.
    #[arg(long)]
    auto_approve: bool,
    /// Resource operations in flight at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
    /// Let this apply replace or delete the table, the bucket or the broker,
    /// and with them every item, object version and unconsumed event they hold.
    #[arg(long)]
    allow_data_loss: bool,
}

impl ApplyArgs {
    /// Applies and prints the outputs.
    pub async fn run(self) -> anyhow::Result<()> {
        let stack = self.binaries.open(&self.stack).await?;
        let auto_approve = self.auto_approve;
        let started = Instant::now();
        let mut options = options(&stack, self.parallelism);
        options.allow_data_loss = self.allow_data_loss;
        if let Some(path) = &self.saved_plan {
            let plan = Plan::load(path)?;
            print!("{}", plan.render());
            stack.apply_saved(&plan, &options).await?;
            print_complete(&plan, started);
            print!("\nOutputs:\n{}", Outputs::of(&stack.state()?).render());
            return Ok(());
        }
        let (plan, applied) = stack
            .apply(&options, |plan| {
                print!("{}", plan.render());
                auto_approve || confirm("Apply these changes?")
            })
            .await?;
        if !plan.has_changes() && !applied {
            print!("{}", plan.render());
        } else if !applied {
            anyhow::bail!("apply cancelled; nothing was changed");
        } else {
            print_complete(&plan, started);
        }
        print!("\nOutputs:\n{}", Outputs::of(&stack.state()?).render());
        Ok(())
    }
}

fn print_complete(plan: &Plan, started: Instant) {
    println!(
        "Apply complete in {:.1}s: {} created, {} updated in place, {} replaced, {} deleted.",
        started.elapsed().as_secs_f64(),
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    );
}
