//! `provision state list|show`: what the state file records.

use clap::{Args, Subcommand};

use super::stack::StackArgs;

/// Arguments of `provision state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Every recorded address with its id.
    List {
        #[command(flatten)]
        stack: StackArgs,
    },
    /// One recorded resource, as JSON.
    Show {
        #[command(flatten)]
        stack: StackArgs,
        /// Its address, e.g. `ecs_service.ingest`.
        address: String,
    },
}

impl StateArgs {
    /// Prints from the state file.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            StateCommand::List { stack } => {
                let state = stack.read_state()?;
                for (address, recorded) in &state.state.resources {
                    println!("{address}\t{}", recorded.id);
                }
            }
            StateCommand::Show { stack, address } => {
                let state = stack.read_state()?;
                let Some(recorded) = state.state.resources.get(&address) else {
                    anyhow::bail!(
                        "no resource `{address}` in the state of `{}` (see `provision state list`)",
                        state.state.stack
                    );
                };
                println!("{}", serde_json::to_string_pretty(recorded)?);
            }
        }
        Ok(())
    }
}
