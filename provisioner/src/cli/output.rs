//! `provision output`: the stack's outputs from the state file.

use clap::Args;

use super::stack::StackArgs;
use crate::stack::Outputs;

/// Arguments of `provision output`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

impl OutputArgs {
    /// Prints the outputs.
    pub fn run(self) -> anyhow::Result<()> {
        let state = self.stack.read_state()?;
        let outputs = Outputs::of(&state.state);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&outputs)?);
        } else {
            print!("{}", outputs.render());
        }
        Ok(())
    }
}
