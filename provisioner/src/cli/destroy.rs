//! `provision destroy`: deletes everything the stack made, then checks that
//! nothing carrying its tag is left.

use clap::Args;

use super::stack::{confirm, options, StackArgs};

/// Arguments of `provision destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Destroy without asking.
    #[arg(long)]
    auto_approve: bool,
    /// Resource operations in flight at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
}

impl DestroyArgs {
    /// Destroys and reports.
    pub async fn run(self) -> anyhow::Result<()> {
        let stack = self.stack.open().await?;
        let auto_approve = self.auto_approve;
        let name = stack.blueprint.stack().to_string();
        let started = std::time::Instant::now();
        let report = stack
            .destroy(&options(&stack, self.parallelism), |state| {
                println!(
                    "Destroy stack `{name}`: {} recorded resources, and anything else tagged event-platform:stack={name}.",
                    state.resources.len()
                );
                let data: Vec<String> = state
                    .resources
                    .iter()
                    .filter(|(_, r)| r.kind.implementation().holds_data(&r.props))
                    .map(|(address, r)| format!("{address} ({})", r.id))
                    .collect();
                if !data.is_empty() {
                    println!(
                        "This deletes, with all the data in them (items, object versions, events not consumed yet): {} (the table's deletion protection is lifted just before).",
                        data.join(", ")
                    );
                }
                auto_approve || confirm("Destroy everything?")
            })
            .await?;
        let Some(report) = report else {
            anyhow::bail!("destroy cancelled; nothing was deleted");
        };
        println!(
            "Destroy complete in {:.1}s: {} resources deleted.",
            started.elapsed().as_secs_f64(),
            report.deleted
        );
        if report.leftovers.is_empty() {
            println!("Checked EC2, ELB, ECS, ECR, IAM, DynamoDB, S3, SSM and CloudWatch Logs: no resource tagged event-platform:stack={name} remains.");
            Ok(())
        } else {
            for (kind, id) in &report.leftovers {
                println!("still tagged: {kind} {id}");
            }
            anyhow::bail!(
                "{} resource(s) tagged with the stack remain; run destroy again or delete them by hand",
                report.leftovers.len()
            )
        }
    }
}
