//! `provision import`: historical events from CSV or NDJSON through the
//! ingest API (see [`crate::import`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use event_common::auth::{self, JwtConfig};
use event_common::config::Env;

use crate::import::{self, ImportOptions};

/// Options of `provision import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file: CSV (`event_id,occurred_at,user_id,event_type,properties_json`) when it ends in `.csv`, else NDJSON.
    file: PathBuf,
    /// The platform's front door (a stack's load balancer, or `provision dev`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A bearer token ingest accepts (default: one signed with JWT_SECRET_KEY, or the development secret).
    #[arg(long, env = "EVENT_PLATFORM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Rows per request (at most ingest's MAX_BATCH_EVENTS, 500 by default).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Where refused rows are written (default: FILE.rejects.ndjson).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Where progress is kept for a resumed run (default: FILE.checkpoint).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl ImportArgs {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        if self.url.starts_with("https://") && !cfg!(feature = "aws") {
            anyhow::bail!("this build has no TLS: build `provision` with its default features for https:// URLs");
        }
        let token = match self.token {
            Some(token) => token,
            None => {
                let config = JwtConfig::from_env(&Env::from_process(), true)
                    .context("reading JWT settings")?;
                auth::mint(&config, "import", Duration::from_secs(24 * 3600), None)?
            }
        };
        let with_suffix = |suffix: &str| {
            let mut name = self.file.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        let options = ImportOptions {
            rejects: self
                .rejects
                .unwrap_or_else(|| with_suffix(".rejects.ndjson")),
            checkpoint: self
                .checkpoint
                .unwrap_or_else(|| with_suffix(".checkpoint")),
            file: self.file,
            url: self.url,
            token,
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            progress: !self.quiet,
        };
        let started = Instant::now();
        let summary = import::run(&options).await?;
        println!(
            "imported {} rows: {} accepted, {} rejected ({}){} in {:.1} s, {:.0} rows/s",
            summary.accepted + summary.rejected,
            summary.accepted,
            summary.rejected,
            options.rejects.display(),
            if summary.resumed_after_line > 0 {
                format!(", resumed after line {}", summary.resumed_after_line)
            } else {
                String::new()
            },
            started.elapsed().as_secs_f64(),
            import::rate(&summary, started),
        );
        // Rejects are reported, not an error: the accepted rows are stored.
        Ok(ExitCode::SUCCESS)
    }
}
