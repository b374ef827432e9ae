//! `provision output`: the stack's outputs from the state file.

use clap::Args;

use super::stack::StackArgs;
use crate::blueprint::Blueprint;
use crate::stack::Outputs;
use crate::state::StateFile;

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
        let blueprint = Blueprint::load(&self.stack.blueprint)?;
        let state = StateFile::read(&self.stack.state_dir, blueprint.stack())?;
        let outputs = Outputs::of(&state.state);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&outputs)?);
        } else {
            print!("{}", outputs.render());
        }
        Ok(())
    }
}
