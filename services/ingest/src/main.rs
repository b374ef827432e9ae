//! The `ingest` binary: reads the environment and serves until SIGTERM;
//! `ingest healthcheck` checks a running instance (the container health check).

use event_common::config::Env;
use event_common::{lifecycle, telemetry};
use ingest::IngestConfig;

// glibc malloc showed up as a fifth of ingest's CPU under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let config =
        IngestConfig::from_env(&env).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if lifecycle::healthcheck_requested() {
        lifecycle::exit_with_health(config.port);
    }
    let _traces = telemetry::init_tracing(&env, "ingest");
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port)).await?;
    ingest::run(config, listener, lifecycle::shutdown_signal()).await
}
