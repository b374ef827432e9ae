//! Images without Docker: built from the binaries `cargo test` compiled,
//! unpacked with `umoci` (an independent OCI tool), and run from their own
//! root filesystems with `chroot` as the image's non-root user. Needs root
//! (as here and in CI); without it these tests fail and say why.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use provisioner::blueprint::Blueprint;
use provisioner::desired::{self, ImagePin, ImagePins};
use provisioner::image::{self, Architecture, Binaries, BuildInfo, NONROOT};
use serde_json::Value;
use test_support::free_port;
use test_support::registry::binary;

fn info() -> BuildInfo {
    BuildInfo::of(Path::new(env!("CARGO_MANIFEST_DIR")), Some("1700000000"))
}

/// `provision image build` as a user runs it; the printed lines by service.
fn build_layouts(out: &Path) -> anyhow::Result<BTreeMap<String, (String, u64)>> {
    let run = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["image", "build", "--binaries"])
        .arg(support::service_binaries()?)
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()?;
    ensure!(
        run.status.success(),
        "image build failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut printed = BTreeMap::new();
    for line in String::from_utf8_lossy(&run.stdout).lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [service, digest, size] = fields[..] else {
            anyhow::bail!("unexpected line {line:?}");
        };
        ensure!(
            digest.len() == 71 && digest.starts_with("sha256:"),
            "{line}"
        );
        printed.insert(service.to_string(), (digest.to_string(), size.parse()?));
    }
    Ok(printed)
}

/// The account moto answers GetCallerIdentity with.
const ACCOUNT: &str = "123456789012";

/// The container health check as `apply` registers it, from the graph.
fn health_check(service: &str) -> anyhow::Result<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/local.toml");
    let blueprint = Blueprint::load(&path)?;
    let pins: ImagePins = ["ingest", "processor", "graphql"]
        .iter()
        .map(|s| {
            (
                s.to_string(),
                ImagePin {
                    digest: format!("sha256:{}", "0".repeat(64)),
                    architecture: Architecture::Amd64,
                },
            )
        })
        .collect();
    let task = desired::resources(&blueprint, ACCOUNT, &pins)
        .into_iter()
        .find(|r| r.address == format!("task_definition.{service}"))
        .context("task definition")?;
    let command = task.props["container"]["health_check"]
        .as_array()
        .context("health check command")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Ok(command)
}

/// A service running inside its unpacked image; killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_image(
    rootfs: &Path,
    user: &str,
    env: &[(String, String)],
    args: &[String],
) -> anyhow::Result<Command> {
    let mut command = Command::new(binary("chroot")?);
    command
        .arg(format!("--userspec={user}"))
        .arg(rootfs)
        .args(args)
        .env_clear()
        .envs(env.iter().cloned());
    Ok(command)
}

async fn wait_live(port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/health/live");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(&url).await {
            if response.status() == 200 {
                return Ok(());
            }
        }
        ensure!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_image_runs_its_service_from_its_own_root_filesystem() -> anyhow::Result<()> {
    support::require_root()?;
    let dir = tempfile::tempdir()?;
    let printed = build_layouts(&dir.path().join("images"))?;
    assert_eq!(
        printed.keys().collect::<Vec<_>>(),
        ["graphql", "ingest", "processor"]
    );
    for (service, (digest, size)) in &printed {
        let layout = dir.path().join("images").join(service);
        // Every blob is what its name says, and the index names the printed digest.
        let mut total = 0;
        for entry in std::fs::read_dir(layout.join("blobs/sha256"))? {
            let path = entry?.path();
            let bytes = std::fs::read(&path)?;
            let name = path
                .file_name()
                .context("name")?
                .to_string_lossy()
                .into_owned();
            assert_eq!(image::sha256(&bytes), format!("sha256:{name}"));
            total += bytes.len() as u64;
        }
        assert_eq!(
            total, *size,
            "{service}: printed size is manifest + config + layers"
        );
        let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
        assert_eq!(
            index["manifests"][0]["digest"],
            Value::from(digest.as_str())
        );

        // umoci, not our code, unpacks it.
        let bundle = dir.path().join(format!("bundle-{service}"));
        let tag = info().version;
        let unpack = Command::new(binary("umoci")?)
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle)
            .output()?;
        ensure!(
            unpack.status.success(),
            "umoci: {}",
            String::from_utf8_lossy(&unpack.stderr)
        );
        let runtime: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
        let process = &runtime["process"];
        assert_eq!(process["user"]["uid"], NONROOT);
        assert_eq!(process["user"]["gid"], NONROOT);
        assert_eq!(
            process["args"],
            serde_json::json!([format!("/app/{service}")])
        );
        assert!(
            process["env"]
                .as_array()
                .context("env")?
                .iter()
                .any(|e| e == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
            "{process}"
        );
        let rootfs = bundle.join("rootfs");
        check_root_filesystem(&rootfs, service)?;

        // Its entrypoint serves from inside the image, as the image's user.
        let port = free_port()?;
        let env = dev_env(service, port, "/tmp");
        let entrypoint: Vec<String> = process["args"]
            .as_array()
            .context("args")?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let user = format!("{NONROOT}:{NONROOT}");
        let child = in_image(&rootfs, &user, &env, &entrypoint)?
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let running = Running(child);
        wait_live(port)
            .await
            .with_context(|| format!("{service} in its image"))?;

        // The task definition's health check, run inside the same root filesystem.
        let check = health_check(service)?;
        assert_eq!(check[0], "CMD", "exec form: the image has no shell");
        let status = in_image(&rootfs, &user, &env, &check[1..])?.status()?;
        assert!(
            status.success(),
            "{service}: health check failed while it serves"
        );
        drop(running);
        let status = in_image(&rootfs, &user, &env, &check[1..])?
            .stderr(Stdio::null())
            .status()?;
        assert!(
            !status.success(),
            "{service}: health check passed with the service stopped"
        );
    }
    Ok(())
}

/// What a service needs in the environment to start on this machine.
fn dev_env(service: &str, port: u16, tmp: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("ENVIRONMENT", "development".to_string()),
        // Nothing listens there: liveness needs no broker.
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9".to_string()),
        ("HOT_STORE", "sqlite".to_string()),
        ("SQLITE_PATH", format!("{tmp}/hot.sqlite3")),
        ("COLD_STORE", "directory".to_string()),
        ("COLD_STORE_DIR", format!("{tmp}/raw")),
        ("RUST_LOG", "warn".to_string()),
    ];
    let port_var = if service == "processor" {
        "METRICS_PORT"
    } else {
        "PORT"
    };
    env.push((port_var, port.to_string()));
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The base layer holds the loader, exactly the libraries `ldd` names,
/// CA certificates, the users, name service config and a sticky /tmp.
fn check_root_filesystem(rootfs: &Path, service: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let binary = support::service_binaries()?.join(service);
    let ldd = Command::new("ldd").arg(&binary).output()?;
    let mut want: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| !name.starts_with("linux-vdso") && !name.starts_with('/'))
        .collect();
    want.push("ld-linux-x86-64.so.2".into());
    want.sort();
    let libs = rootfs.join("lib/x86_64-linux-gnu");
    let mut have: Vec<String> = std::fs::read_dir(&libs)?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    have.sort();
    assert_eq!(have, want, "{service}: libraries in the image");
    assert!(rootfs.join("lib64/ld-linux-x86-64.so.2").exists());
    let files: Vec<PathBuf> = walk(rootfs)?;
    let allowed = ["app/", "etc/", "home/", "lib/", "lib64/", "tmp"];
    for file in &files {
        let relative = file.strip_prefix(rootfs)?.to_string_lossy().into_owned();
        assert!(
            allowed
                .iter()
                .any(|a| relative.starts_with(a) || format!("{relative}/") == *a),
            "{service}: unexpected {relative}"
        );
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd"))?;
    assert!(
        passwd.contains(&format!("nonroot:x:{NONROOT}:{NONROOT}:")),
        "{passwd}"
    );
    assert!(std::fs::read_to_string(rootfs.join("etc/group"))?.contains(&format!(":{NONROOT}:")));
    assert!(std::fs::read_to_string(rootfs.join("etc/nsswitch.conf"))?.contains("hosts: files dns"));
    let ca = std::fs::read(rootfs.join("etc/ssl/certs/ca-certificates.crt"))?;
    assert!(ca.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let tmp = std::fs::metadata(rootfs.join("tmp"))?.permissions().mode();
    assert_eq!(tmp & 0o7777, 0o1777);
    Ok(())
}

fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

#[test]
fn builds_are_reproducible_and_a_changed_binary_changes_only_its_image() -> anyhow::Result<()> {
    let binaries = support::service_binaries()?;
    let digests = |dir: &Path| -> anyhow::Result<BTreeMap<String, String>> {
        Ok(
            image::build_all(&Binaries::Dir(dir.to_path_buf()), &[], &info())?
                .into_iter()
                .map(|i| (i.service.clone(), i.digest().to_string()))
                .collect(),
        )
    };
    let first = digests(&binaries)?;
    let second = digests(&binaries)?;
    assert_eq!(first, second, "two builds of the same binaries");
    assert_eq!(first.len(), 3);

    let changed = support::binaries_with_changed_ingest()?;
    let third = digests(changed.path())?;
    assert_ne!(third["ingest"], first["ingest"]);
    assert_eq!(third["processor"], first["processor"]);
    assert_eq!(third["graphql"], first["graphql"]);
    Ok(())
}
