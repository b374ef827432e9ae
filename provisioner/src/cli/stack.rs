//! What every stack subcommand shares: the blueprint and the state folder.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use crate::blueprint::Blueprint;
use crate::engine::{Options, Progress};
use crate::image::{self, Binaries, BuildInfo};
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
        Stack::new(blueprint, &self.state_dir, &config).await
    }
}

/// `--binaries`: where the service binaries for the images come from.
#[derive(Debug, Clone, Args)]
pub struct BinariesArgs {
    /// Folder with prebuilt Linux binaries `ingest`, `processor` and
    /// `graphql` (default: `cargo build --release` in this workspace).
    #[arg(long, env = "PROVISION_BINARIES")]
    pub binaries: Option<PathBuf>,
}

impl BinariesArgs {
    /// The images of `services` (all three when empty), built from
    /// `--binaries` or a release build of the workspace in this folder.
    pub fn build(&self, services: &[&str]) -> anyhow::Result<Vec<image::Image>> {
        let here = std::env::current_dir()?;
        let binaries = match &self.binaries {
            Some(dir) => Binaries::Dir(dir.clone()),
            None => Binaries::Build(here.clone()),
        };
        let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
        let info = BuildInfo::of(&here, epoch.as_deref());
        let started = std::time::Instant::now();
        let images = image::build_all(&binaries, services, &info)?;
        for image in &images {
            eprintln!(
                "image {}: {} ({:.1} MB)",
                image.service,
                image.digest(),
                image.compressed_size() as f64 / 1e6
            );
        }
        eprintln!(
            "{} image(s) built in {:.1}s",
            images.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(images)
    }

    /// Opens the stack of `stack_args` with its images built and pinned.
    pub async fn open(&self, stack_args: &StackArgs) -> anyhow::Result<Stack> {
        let stack = stack_args.open().await?;
        let services = stack.services_to_build();
        if services.is_empty() {
            return Ok(stack);
        }
        let images = self.build(&services)?;
        Ok(stack.with_images(images, Some(Progress::stdout())))
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
