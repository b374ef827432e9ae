//! Shared setup of the stack tests: moto, the local blueprint pointed at
//! it, the SDK behind the fault layer (which also counts every call).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use event_store::aws::{sdk_config, AwsSettings};
use integration_tests::backend::AwsEmulator;
use integration_tests::fault::FaultLayer;
use provisioner::blueprint::Blueprint;
use provisioner::engine::{Options, Progress, RetryPolicy};
use provisioner::stack::Stack;

/// A moto server, a state folder and a stack on them.
pub struct Env {
    /// The emulator (stopped on drop).
    pub emulator: AwsEmulator,
    /// SDK config straight to moto, for the test's own describe calls.
    pub direct: SdkConfig,
    /// Every call the stack makes goes through this.
    pub faults: FaultLayer,
    /// State folder.
    pub dir: tempfile::TempDir,
    /// The blueprint file (local.toml aimed at this emulator).
    pub blueprint_path: PathBuf,
    /// Progress lines.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Env {
    /// Starts moto and writes the local blueprint with `edits` applied.
    pub async fn start(edits: &[(&str, &str)]) -> anyhow::Result<Self> {
        let emulator = AwsEmulator::start().await?;
        let direct = sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
        let (_, faults) = FaultLayer::wrap(&direct);
        let dir = tempfile::tempdir()?;
        let blueprint_path = dir.path().join("local.toml");
        let env = Self {
            emulator,
            direct,
            faults,
            dir,
            blueprint_path,
            lines: Arc::default(),
        };
        env.write_blueprint(edits)?;
        Ok(env)
    }

    /// Rewrites the blueprint file: local.toml, this endpoint, then `edits`.
    pub fn write_blueprint(&self, edits: &[(&str, &str)]) -> anyhow::Result<()> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/local.toml");
        let mut text = std::fs::read_to_string(source)?
            .replace("http://127.0.0.1:5000", self.emulator.endpoint());
        for (from, to) in edits {
            anyhow::ensure!(text.contains(from), "blueprint has no {from:?}");
            text = text.replacen(from, to, 1);
        }
        std::fs::write(&self.blueprint_path, text)?;
        Ok(())
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The stack from the blueprint file, its calls through a new fault layer
    /// (kept in `self.faults`).
    pub fn stack(&mut self) -> anyhow::Result<Stack> {
        let (blueprint, _) = Blueprint::load_checked(&self.blueprint_path)?;
        let (config, faults) = FaultLayer::wrap(&self.direct);
        self.faults = faults;
        Ok(Stack::new(blueprint, self.dir.path(), &config))
    }

    /// Options for tests: fast retries, progress collected.
    pub fn options(&self) -> Options {
        let lines = self.lines.clone();
        let mut options = Options::new(false);
        options.retry = RetryPolicy::fast();
        options.progress = Progress::to(move |line| {
            if let Ok(mut lines) = lines.lock() {
                lines.push(line.to_string());
            }
        });
        options
    }
}

/// Whether an operation (as the fault layer names it) changes anything.
pub fn is_mutating(operation: &str) -> bool {
    let read_prefixes = ["Describe", "Get", "List", "Head", "GET ", "HEAD "];
    !read_prefixes.iter().any(|p| operation.starts_with(p))
}

/// Applies with auto-approve; fails if the apply fails.
pub async fn apply(stack: &Stack, options: &Options) -> anyhow::Result<provisioner::plan::Plan> {
    let (plan, _) = stack.apply(options, |_| true).await?;
    Ok(plan)
}
