//! The `graphql` binary: reads the environment and serves until SIGTERM;
//! `--print-schema` prints the schema and exits; `healthcheck` checks a
//! running instance's health (the container health check).

use clap::Parser;
use event_common::config::Env;
use event_common::{lifecycle, telemetry};
use graphql::GraphqlConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Read-only GraphQL API and dashboard over the hot store. Configured by
/// the environment (see README).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Print the schema (SDL) and exit.
    #[arg(long)]
    print_schema: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    // Before clap: `healthcheck` is the container health check's argument.
    if lifecycle::healthcheck_requested() {
        lifecycle::exit_with_health(config(&env)?.port);
    }
    let args = Args::parse();
    if args.print_schema {
        print!("{}", graphql::schema::sdl());
        return Ok(());
    }
    let _traces = telemetry::init_tracing(&env, "graphql");
    let config = config(&env)?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port)).await?;
    graphql::run(config, listener, lifecycle::shutdown_signal()).await
}

fn config(env: &Env) -> anyhow::Result<GraphqlConfig> {
    GraphqlConfig::from_env(env).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}
