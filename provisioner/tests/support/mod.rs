//! Shared setup of the stack tests: moto, the local blueprint pointed at
//! it, the SDK behind the fault layer (which also counts every call).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use event_store::aws::{sdk_config, AwsSettings};
use provisioner::blueprint::Blueprint;
use provisioner::engine::{Options, Progress, RetryPolicy};
use provisioner::stack::Stack;
use test_support::aws_calls::s3_needs;
use test_support::backend::AwsEmulator;
use test_support::fault::FaultLayer;

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
    /// Whether the blueprint names a prebuilt image for every service, so
    /// the stack builds and pushes none (the image tests build their own).
    pub prebuilt_images: bool,
}

/// Image references that keep a test off the build-and-push path.
pub const PREBUILT_IMAGES: [(&str, &str); 3] = [
    ("ingest", "public.ecr.aws/event-platform/ingest:0.1.0"),
    ("processor", "public.ecr.aws/event-platform/processor:0.1.0"),
    ("graphql", "public.ecr.aws/event-platform/graphql:0.1.0"),
];

impl Env {
    /// Starts moto and writes the local blueprint with `edits` applied and
    /// a prebuilt image for every service.
    pub async fn start(edits: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(edits, true).await
    }

    /// Starts moto and writes the local blueprint with `edits` applied; the
    /// stack builds and pushes the services' images.
    pub async fn start_building_images(edits: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(edits, false).await
    }

    /// [`Env::start`] on a moto started with `emulator_env` (its `MOTO_*` switches).
    pub async fn start_emulating(
        edits: &[(&str, &str)],
        emulator_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_on(
            AwsEmulator::start_with_env(emulator_env).await?,
            edits,
            true,
        )
        .await
    }

    async fn start_with(edits: &[(&str, &str)], prebuilt_images: bool) -> anyhow::Result<Self> {
        Self::start_on(AwsEmulator::start().await?, edits, prebuilt_images).await
    }

    async fn start_on(
        emulator: AwsEmulator,
        edits: &[(&str, &str)],
        prebuilt_images: bool,
    ) -> anyhow::Result<Self> {
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
            prebuilt_images,
        };
        env.write_blueprint(edits)?;
        Ok(env)
    }

    /// Rewrites the blueprint file: local.toml, this endpoint, then `edits`.
    pub fn write_blueprint(&self, edits: &[(&str, &str)]) -> anyhow::Result<()> {
        std::fs::write(&self.blueprint_path, self.blueprint_text(edits)?)?;
        Ok(())
    }

    /// Another stack on the same emulator: local.toml named `name`, with
    /// `edits`, its own state folder (returned with it), calls straight to moto.
    pub async fn other_stack(
        &self,
        name: &str,
        edits: &[(&str, &str)],
    ) -> anyhow::Result<(Stack, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("other.toml");
        let renamed = format!("name = \"{name}\"");
        let mut all = vec![("name = \"ep-local\"", renamed.as_str())];
        all.extend_from_slice(edits);
        std::fs::write(&path, self.blueprint_text(&all)?)?;
        let (blueprint, _) = Blueprint::load_checked(&path)?;
        let stack = Stack::new(blueprint, dir.path(), &self.direct).await?;
        Ok((stack, dir))
    }

    fn blueprint_text(&self, edits: &[(&str, &str)]) -> anyhow::Result<String> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/local.toml");
        let mut text = std::fs::read_to_string(source)?
            .replace("http://127.0.0.1:5000", self.emulator.endpoint());
        for (from, to) in edits {
            anyhow::ensure!(text.contains(from), "blueprint has no {from:?}");
            text = text.replacen(from, to, 1);
        }
        if self.prebuilt_images {
            for (service, image) in PREBUILT_IMAGES {
                let table = format!("[services.{service}]\n");
                if !text.contains(&table) {
                    text.push_str(&format!("\n{table}"));
                }
                text = text.replacen(&table, &format!("{table}image = \"{image}\"\n"), 1);
            }
        }
        Ok(text)
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The stack from the blueprint file, its calls through a new fault layer
    /// (kept in `self.faults`).
    pub async fn stack(&mut self) -> anyhow::Result<Stack> {
        let (blueprint, _) = Blueprint::load_checked(&self.blueprint_path)?;
        let (config, faults) = FaultLayer::wrap(&self.direct);
        self.faults = faults;
        Stack::new(blueprint, self.dir.path(), &config).await
    }

    /// [`Env::options`] with the waits of a real account, each at most `timeout`.
    pub fn options_with_waits(&self, timeout: std::time::Duration) -> Options {
        let mut options = self.options();
        options.waits = true;
        options.wait_timeout = timeout;
        options
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

impl Env {
    /// Plays the broker's user-data, which moto does not run: once the
    /// stack's broker instance exists, waits `after`, then tags it with
    /// `report` as the instance reports its setup. Returns whether any ECS
    /// service existed when it reported.
    pub fn broker_reports(
        &self,
        report: &str,
        after: std::time::Duration,
    ) -> tokio::task::JoinHandle<anyhow::Result<bool>> {
        let ec2 = aws_sdk_ec2::Client::new(&self.direct);
        let ecs = aws_sdk_ecs::Client::new(&self.direct);
        let report = report.to_string();
        tokio::spawn(async move {
            let stack_filter = aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{}", provisioner::model::STACK_TAG))
                .values("ep-local")
                .build();
            let id = loop {
                let out = ec2
                    .describe_instances()
                    .filters(stack_filter.clone())
                    .send()
                    .await?;
                let mut instances = out.reservations().iter().flat_map(|r| r.instances());
                if let Some(id) = instances.find_map(|i| i.instance_id()) {
                    break id.to_string();
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            tokio::time::sleep(after).await;
            let mut services = 0;
            for cluster in ecs.list_clusters().send().await?.cluster_arns() {
                let out = ecs.list_services().cluster(cluster).send().await?;
                services += out.service_arns().len();
            }
            ec2.create_tags()
                .resources(id)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(provisioner::model::BROKER_SETUP_TAG)
                        .value(report)
                        .build(),
                )
                .send()
                .await?;
            Ok(services > 0)
        })
    }
}

/// `provision ARGS -b BLUEPRINT --state-dir DIR`, the binary as a user runs it.
pub fn provision(env: &Env, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provision"));
    command
        .args(args)
        .arg("-b")
        .arg(&env.blueprint_path)
        .arg("--state-dir")
        .arg(env.state_dir());
    command
}

/// The id `state` records at `address`.
pub fn recorded_id(state: &provisioner::state::State, address: &str) -> anyhow::Result<String> {
    state
        .resources
        .get(address)
        .map(|r| r.id.clone())
        .ok_or_else(|| anyhow::anyhow!("{address} not recorded"))
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

/// Fails unless a fresh plan of `env`'s stack has no change and no drift;
/// `context` says what was just done.
pub async fn assert_settled(env: &mut Env, options: &Options, context: &str) -> anyhow::Result<()> {
    let plan = env.stack().await?.plan(options).await?;
    anyhow::ensure!(
        !plan.has_changes() && plan.drift.is_empty(),
        "{context}: {}",
        plan.render()
    );
    Ok(())
}

/// The IAM action a recorded call (as the fault layer names it) needs: `service:Operation`, except for S3's
/// REST calls, named by method, path and subresource (test-support's one table of them).
pub fn iam_action(service: &str, operation: &str) -> Option<String> {
    if service == "sts" {
        // GetCallerIdentity needs no permission.
        return None;
    }
    if service == "dynamodb" && operation == "TransactWriteItems" {
        // A transaction is authorized per item (the store's are all updates).
        return Some("dynamodb:UpdateItem".into());
    }
    if service != "s3" {
        return Some(format!("{service}:{operation}"));
    }
    let (method, path) = operation.split_once(' ').unwrap_or((operation, "/"));
    s3_needs(method, path, None).0
}

/// Applies with auto-approve, which must fail; returns the whole error text.
pub async fn apply_error(stack: &Stack, options: &Options) -> anyhow::Result<String> {
    match stack.apply(options, |_| true).await {
        Ok(_) => anyhow::bail!("apply succeeded"),
        Err(err) => Ok(format!("{err:#}")),
    }
}

/// The folder of the services' binaries that `cargo test` built (beside
/// `provision`), so the image tests need no release build; any missing is
/// built first, in the same profile.
pub fn service_binaries() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_BIN_EXE_provision"))
                .parent()
                .ok_or("provision has no folder")?
                .to_path_buf();
            let services = ["ingest", "processor", "graphql"];
            if services.iter().all(|s| dir.join(s).is_file()) {
                return Ok(dir);
            }
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .arg("build");
            if !cfg!(debug_assertions) {
                cargo.arg("--release");
            }
            for service in services {
                cargo.args(["--bin", service]);
            }
            let status = cargo.status().map_err(|e| e.to_string())?;
            if status.success() {
                Ok(dir)
            } else {
                Err(format!("cargo build of the services failed: {status}"))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A copy of [`service_binaries`] in which only `ingest` differs: a note
/// section added (still the same program; the images keep it, as they
/// keep every section but debug info).
pub fn binaries_with_changed_ingest() -> anyhow::Result<tempfile::TempDir> {
    let binaries = service_binaries()?;
    let changed = tempfile::tempdir()?;
    for service in ["processor", "graphql"] {
        std::fs::copy(binaries.join(service), changed.path().join(service))?;
    }
    let note = changed.path().join("note");
    std::fs::write(&note, b"changed")?;
    let status = Command::new("objcopy")
        .arg("--add-section")
        .arg(format!(".note.event-platform-test={}", note.display()))
        .arg(binaries.join("ingest"))
        .arg(changed.path().join("ingest"))
        .status()?;
    anyhow::ensure!(status.success(), "objcopy --add-section failed");
    Ok(changed)
}

/// The password moto's `GetAuthorizationToken` gives (user `AWS`).
pub async fn ecr_password(env: &Env) -> anyhow::Result<String> {
    use base64::Engine as _;
    let out = aws_sdk_ecr::Client::new(&env.direct)
        .get_authorization_token()
        .send()
        .await?;
    let token = out
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or_else(|| anyhow::anyhow!("no token"))?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token)?)?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("not user:password: {decoded}"))?;
    anyhow::ensure!(user == "AWS", "{decoded}");
    Ok(password.to_string())
}

/// `provision ARGS` with the images built from the binaries `cargo test`
/// built, at a fixed time (`SOURCE_DATE_EPOCH` = `epoch`).
pub fn provision_building_images(env: &Env, args: &[&str], epoch: &str) -> anyhow::Result<Command> {
    let mut command = provision(env, args);
    command
        .arg("--binaries")
        .arg(service_binaries()?)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SOURCE_DATE_EPOCH", epoch);
    Ok(command)
}

/// Fails unless this test runs as root: it runs images with chroot.
pub fn require_root() -> anyhow::Result<()> {
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m))?;
    anyhow::ensure!(
        uid == 0,
        "this test runs images with chroot, which needs root: run it as root (CI does)"
    );
    Ok(())
}
