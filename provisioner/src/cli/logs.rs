//! `provision logs`: the services' log events from CloudWatch Logs.

use std::collections::BTreeMap;

use clap::Args;

use super::stack::StackArgs;
use crate::logs::{parse_since, show, Query};

/// Arguments of `provision logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Only this service (`ingest`, `processor` or `graphql`); all three by default.
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// From how long ago (`90s`, `10m`, `2h`, `1d`) or since when (RFC 3339).
    #[arg(long, default_value = "10m")]
    since: String,
    /// Keep printing new events (polls every 2 s) until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only events containing this text (exactly, as one phrase).
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
}

impl LogsArgs {
    /// Prints the events.
    pub async fn run(self) -> anyhow::Result<()> {
        let start = parse_since(&self.since, chrono::Utc::now())?;
        let stack = self.stack.open().await?;
        let state = stack.state()?;
        let services = stack.blueprint.services();
        let names: Vec<&str> = services.iter().map(|s| s.name).collect();
        if let Some(wanted) = &self.service {
            anyhow::ensure!(
                names.contains(&wanted.as_str()),
                "--service {wanted:?}: the services are {}",
                names.join(", ")
            );
        }
        let groups: BTreeMap<String, String> = names
            .iter()
            .filter(|name| self.service.as_deref().is_none_or(|s| s == **name))
            .map(|name| {
                let group = state
                    .resources
                    .get(&format!("log_group.{name}"))
                    .map(|r| r.id.clone())
                    .unwrap_or_else(|| format!("/ecs/{}/{name}", stack.blueprint.stack()));
                (name.to_string(), group)
            })
            .collect();
        let query = Query {
            groups,
            start_ms: start.timestamp_millis(),
            filter: self.filter.filter(|f| !f.is_empty()),
        };
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        show(&stack.cloud, query, self.follow, stop, |line| {
            println!("{line}")
        })
        .await
    }
}
