//! What every stack subcommand shares: the blueprint and the state folder.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use crate::blueprint::Blueprint;
use crate::engine::Options;
use crate::stack::Stack;
use crate::state::StateFile;

/// `-b/--blueprint` and `--state-dir`.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// The blueprint (TOML).
    #[arg(short = 'b', long, env = "PROVISION_BLUEPRINT")]
    pub blueprint: PathBuf,
    /// Folder of state files.
    #[arg(long, env = "PROVISION_STATE_DIR", default_value = "state")]
    pub state_dir: PathBuf,
}

impl StackArgs {
    /// The recorded state of the blueprint's stack, without lock or AWS call.
    pub fn read_state(&self) -> anyhow::Result<StateFile> {
        let blueprint = Blueprint::load(&self.blueprint)?;
        Ok(StateFile::read(&self.state_dir, blueprint.stack())?)
    }

    /// Loads and checks the blueprint (warnings to stderr) and connects.
    pub async fn open(&self) -> anyhow::Result<Stack> {
        let (blueprint, warnings) = Blueprint::load_checked(&self.blueprint)?;
        for warning in warnings {
            eprintln!("{warning}");
        }
        let config = Stack::sdk_config(&blueprint).await;
        Ok(Stack::new(blueprint, &self.state_dir, &config))
    }
}

/// Executor options from a blueprint and `--parallelism`.
pub fn options(stack: &Stack, parallelism: usize) -> Options {
    let mut options = Options::new(stack.blueprint.spec.stack.waits);
    options.parallelism = parallelism.max(1);
    options
}

/// Asks "yes" on the terminal; anything else (or no terminal) is no.
pub fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!("{question} -- no terminal to ask; pass --auto-approve");
        return false;
    }
    print!("{question} Only 'yes' is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    answer.trim() == "yes"
}
