//! The command line: one module per subcommand.

mod apply;
mod check;
mod destroy;
mod dev;
mod image;
mod output;
mod plan;
mod run_local;
mod stack;
mod state;
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
    /// Validate and lint a blueprint (no AWS call).
    Check(check::CheckArgs),
    /// Refresh from the cloud and show what apply would change.
    Plan(plan::PlanArgs),
    /// Make the cloud match the blueprint.
    Apply(apply::ApplyArgs),
    /// Delete everything the stack made.
    Destroy(destroy::DestroyArgs),
    /// Build the service images and push them (no Docker needed).
    Image(image::ImageArgs),
    /// Run the deployed stack's tasks on this machine behind its load balancer rules.
    RunLocal(run_local::RunLocalArgs),
    /// Print the stack's outputs (URLs, broker address).
    Output(output::OutputArgs),
    /// Inspect the state file.
    State(state::StateArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Dev(args) => args.run().await?,
            Command::Token(args) => args.run()?,
            Command::Check(args) => args.run()?,
            Command::Plan(args) => return args.run().await,
            Command::Apply(args) => args.run().await?,
            Command::Destroy(args) => args.run().await?,
            Command::Image(args) => args.run().await?,
            Command::RunLocal(args) => args.run().await?,
            Command::Output(args) => args.run()?,
            Command::State(args) => args.run()?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
