//! The `processor` binary: reads the environment and consumes until SIGTERM;
//! `processor healthcheck` checks a running instance (the container health check).

use event_common::config::Env;
use event_common::{lifecycle, telemetry};
use processor::ProcessorConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let config = ProcessorConfig::from_env(&env)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if lifecycle::healthcheck_requested() {
        lifecycle::exit_with_health(config.metrics_port);
    }
    let _traces = telemetry::init_tracing(&env, "processor");
    processor::run(config, lifecycle::shutdown_signal()).await
}
