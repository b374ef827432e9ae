//! The command line: one module per subcommand.

mod dev;
mod token;

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
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Dev(args) => args.run().await,
            Command::Token(args) => args.run(),
        }
    }
}
