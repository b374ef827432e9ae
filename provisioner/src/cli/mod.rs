//! The command line: one module per subcommand.

#[cfg(feature = "aws")]
mod apply;
#[cfg(feature = "aws")]
mod check;
#[cfg(feature = "aws")]
mod destroy;
mod dev;
#[cfg(feature = "aws")]
mod image;
mod import;
#[cfg(feature = "aws")]
mod logs;
#[cfg(feature = "aws")]
mod output;
#[cfg(feature = "aws")]
mod plan;
#[cfg(feature = "aws")]
mod run_local;
#[cfg(feature = "aws")]
mod stack;
#[cfg(feature = "aws")]
mod state;
#[cfg(feature = "aws")]
mod status;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Provision and run the Event Platform.
#[derive(Debug, Parser)]
#[command(name = "provision", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole platform on this machine with embedded defaults.
    Dev(dev::DevArgs),
    /// Mint a JWT for a subject (what the reference platform's generate_jwt_token did).
    Token(token::TokenArgs),
    /// Send historical events from CSV or NDJSON through the ingest API (resumable).
    Import(import::ImportArgs),
    /// Validate and lint a blueprint (no AWS call).
    #[cfg(feature = "aws")]
    Check(check::CheckArgs),
    /// Refresh from the cloud and show what apply would change.
    #[cfg(feature = "aws")]
    Plan(plan::PlanArgs),
    /// Make the cloud match the blueprint.
    #[cfg(feature = "aws")]
    Apply(apply::ApplyArgs),
    /// Delete everything the stack made.
    #[cfg(feature = "aws")]
    Destroy(destroy::DestroyArgs),
    /// Build the service images and push them (no Docker needed).
    #[cfg(feature = "aws")]
    Image(image::ImageArgs),
    /// Run the deployed stack's tasks on this machine behind its load balancer rules.
    #[cfg(feature = "aws")]
    RunLocal(run_local::RunLocalArgs),
    /// Print the stack's outputs (URLs, broker address).
    #[cfg(feature = "aws")]
    Output(output::OutputArgs),
    /// Inspect the state file.
    #[cfg(feature = "aws")]
    State(state::StateArgs),
    /// The services' log events from CloudWatch Logs, merged in time order.
    #[cfg(feature = "aws")]
    Logs(logs::LogsArgs),
    /// Is the applied stack as the blueprint wants? (exit 0 yes, 2 no)
    #[cfg(feature = "aws")]
    Status(status::StatusArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Dev(args) => args.run().await?,
            Command::Token(args) => args.run()?,
            Command::Import(args) => return args.run().await,
            #[cfg(feature = "aws")]
            Command::Check(args) => args.run()?,
            #[cfg(feature = "aws")]
            Command::Plan(args) => return args.run().await,
            #[cfg(feature = "aws")]
            Command::Apply(args) => args.run().await?,
            #[cfg(feature = "aws")]
            Command::Destroy(args) => args.run().await?,
            #[cfg(feature = "aws")]
            Command::Image(args) => args.run().await?,
            #[cfg(feature = "aws")]
            Command::RunLocal(args) => args.run().await?,
            #[cfg(feature = "aws")]
            Command::Output(args) => args.run()?,
            #[cfg(feature = "aws")]
            Command::State(args) => args.run()?,
            #[cfg(feature = "aws")]
            Command::Status(args) => return args.run().await,
            #[cfg(feature = "aws")]
            Command::Logs(args) => args.run().await?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
