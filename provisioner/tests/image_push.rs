//! Images pushed to a real OCI registry (Debian's `docker-registry` on
//! loopback) with the credentials moto's ECR hands out, read back with an
//! independent client (`skopeo`), and `apply` on moto pinning every task
//! definition to a pushed digest.

mod support;

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context};
use provisioner::engine::Progress;
use provisioner::image::{self, Binaries, BuildInfo, Image};
use provisioner::plan::Action;
use serde_json::Value;
use support::{apply, is_mutating, Env};
use test_support::registry::{binary, LocalRegistry};

const STACK: &str = "ep-local";
const EPOCH: &str = "1700000000";

fn info() -> BuildInfo {
    BuildInfo::of(Path::new(env!("CARGO_MANIFEST_DIR")), Some(EPOCH))
}

fn build(dir: &Path) -> anyhow::Result<Vec<Image>> {
    Ok(image::build_all(
        &Binaries::Dir(dir.to_path_buf()),
        &[],
        &info(),
    )?)
}

/// moto, and a registry that accepts exactly ECR's credentials, named in the blueprint.
async fn start(password: Option<&str>) -> anyhow::Result<(Env, LocalRegistry, String)> {
    let env = Env::start_building_images(&[]).await?;
    let real = support::ecr_password(&env).await?;
    let registry = LocalRegistry::start(Some(("AWS", password.unwrap_or(&real)))).await?;
    env.write_blueprint(&[("http://127.0.0.1:5001", &registry.url())])?;
    Ok((env, registry, real))
}

/// `provision ARGS` on the binaries `cargo test` built, at a fixed time.
fn provision(env: &Env, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(support::provision_building_images(env, args, EPOCH)?.output()?)
}

fn skopeo(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(binary("skopeo")?)
        .arg("--insecure-policy")
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// sha256 of the manifest bytes the registry serves for `reference`, read by skopeo.
fn manifest_digest(creds: &str, reference: &str) -> anyhow::Result<String> {
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        creds,
        "--raw",
        &format!("docker://{reference}"),
    ])?;
    Ok(image::sha256(raw.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_ecr_credentials_reads_back_with_an_independent_client() -> anyhow::Result<()> {
    let (env, registry, password) = start(None).await?;
    let out = provision(&env, &["image", "push"])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.success(), "image push: {stderr}");
    let built = build(&support::service_binaries()?)?;
    let creds = format!("AWS:{password}");
    let stdout = String::from_utf8(out.stdout)?;
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for image in &built {
        let repository = format!("{}/{STACK}/{}", registry.host(), image.service);
        let reference = format!("{repository}@{}", image.digest());
        assert!(
            stdout.contains(&format!("{} {reference}\n", image.service)),
            "{stdout}"
        );
        let docker = format!("docker://{reference}");
        let raw = skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            "--raw",
            &docker,
        ])?;
        assert_eq!(
            image::sha256(raw.as_bytes()),
            image.digest(),
            "manifest bytes"
        );
        let config: Value = serde_json::from_str(&skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            "--config",
            &docker,
        ])?)?;
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!([format!("/app/{}", image.service)])
        );
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.version"],
            info().version
        );
        let tags: Value = serde_json::from_str(&skopeo(&[
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{repository}"),
        ])?)?;
        for tag in info().tags() {
            assert!(
                tags["Tags"]
                    .as_array()
                    .context("tags")?
                    .contains(&Value::from(tag.as_str())),
                "{tags}"
            );
        }
        // skopeo copy checks every blob against its digest; check them again.
        let copy = tempfile::tempdir()?;
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &docker,
            &format!("oci:{}:copy", copy.path().display()),
        ])?;
        for blob in image.blobs() {
            let path = copy
                .path()
                .join("blobs/sha256")
                .join(blob.digest.trim_start_matches("sha256:"));
            assert_eq!(image::sha256(&std::fs::read(&path)?), blob.digest);
        }
    }
    assert!(stderr.contains("uploaded"), "{stderr}");
    // A second push sends no blob again.
    let again = provision(&env, &["image", "push"])?;
    let stderr = String::from_utf8_lossy(&again.stderr);
    ensure!(again.status.success(), "{stderr}");
    assert!(!stderr.contains(" uploaded ("), "{stderr}");
    assert_eq!(stderr.matches("already there").count(), 9, "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_registry_password_fails_naming_the_registry_and_what_to_do() -> anyhow::Result<()>
{
    let (env, registry, _) = start(Some("not-what-ecr-hands-out")).await?;
    let out = provision(&env, &["image", "push"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(registry.host()), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(stderr.contains("images.registry"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_pins_every_task_definition_to_a_pushed_digest() -> anyhow::Result<()> {
    let (mut env, registry, password) = start(None).await?;
    let binaries = support::service_binaries()?;
    let images = build(&binaries)?;
    let lines = env.lines.clone();
    let progress = Progress::to(move |line: &str| {
        if let Ok(mut lines) = lines.lock() {
            lines.push(line.to_string());
        }
    });
    let stack = env
        .stack()
        .await?
        .with_images(images.clone(), Some(progress.clone()));
    let options = env.options();
    let plan = apply(&stack, &options).await?;
    assert_eq!(plan.count(Action::Create), stack.desired.len());
    let pushed: Vec<String> = env.lines.lock().map(|l| l.clone()).unwrap_or_default();
    for service in ["ingest", "processor", "graphql"] {
        assert!(
            pushed
                .iter()
                .any(|l| l.starts_with(&format!("image.{service}: ")) && l.contains("uploaded")),
            "{pushed:?}"
        );
    }

    // The task definitions moto registered name the pushed digests.
    let ecs = aws_sdk_ecs::Client::new(&env.direct);
    let state = stack.state()?;
    let creds = format!("AWS:{password}");
    for image in &images {
        let arn = &state.resources[&format!("task_definition.{}", image.service)].id;
        let task = ecs
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await?;
        let task = task.task_definition().context("task definition")?;
        let container = &task.container_definitions()[0];
        let want = format!(
            "{}/{STACK}/{}@{}",
            registry.host(),
            image.service,
            image.digest()
        );
        assert_eq!(container.image(), Some(want.as_str()));
        assert_eq!(
            task.runtime_platform()
                .and_then(|p| p.cpu_architecture())
                .map(|a| a.as_str()),
            Some("X86_64")
        );
        let check = container.health_check().context("health check")?;
        assert_eq!(
            check.command(),
            [
                "CMD".to_string(),
                format!("/app/{}", image.service),
                "healthcheck".to_string()
            ]
        );
        // The registry serves it.
        assert_eq!(manifest_digest(&creds, &want)?, image.digest());
    }

    // The same images again: nothing to do, not one mutating AWS call.
    let stack = env
        .stack()
        .await?
        .with_images(images.clone(), Some(progress.clone()));
    let (plan, applied) = stack.apply(&options, |_| true).await?;
    assert!(!plan.has_changes(), "{}", plan.render());
    assert!(!applied);
    let mutating: Vec<String> = env
        .faults
        .calls()
        .into_iter()
        .filter(|c| is_mutating(c))
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");

    // A changed binary: its image, its task definition, and its service roll.
    let changed = support::binaries_with_changed_ingest()?;
    let new_images = build(changed.path())?;
    let stack = env
        .stack()
        .await?
        .with_images(new_images.clone(), Some(progress));
    let plan = stack.plan(&options).await?;
    let changes: Vec<(&str, Action)> = plan
        .changes
        .iter()
        .map(|c| (c.address.as_str(), c.action))
        .collect();
    assert_eq!(
        changes,
        [
            ("image.ingest", Action::Replace),
            ("task_definition.ingest", Action::Replace),
            ("ecs_service.ingest", Action::Update),
        ],
        "{}",
        plan.render()
    );
    apply(&stack, &options).await?;
    let service = &stack.state()?.resources["ecs_service.ingest"].id;
    let described = ecs
        .describe_services()
        .cluster(STACK)
        .services(service)
        .send()
        .await?;
    let task_arn = described.services()[0]
        .task_definition()
        .context("task definition")?;
    let task = ecs
        .describe_task_definition()
        .task_definition(task_arn)
        .send()
        .await?;
    let ingest = new_images
        .iter()
        .find(|i| i.service == "ingest")
        .context("ingest")?;
    assert_eq!(
        task.task_definition()
            .context("task")?
            .container_definitions()[0]
            .image(),
        Some(format!("{}/{STACK}/ingest@{}", registry.host(), ingest.digest()).as_str())
    );
    let plan = stack.plan(&options).await?;
    assert!(!plan.has_changes(), "{}", plan.render());

    // Destroy: the images go with their repositories; nothing tagged is left.
    let report = stack
        .destroy(&options, |_| true)
        .await?
        .context("destroy ran")?;
    assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);
    Ok(())
}
