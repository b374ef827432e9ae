//! One task slot of a service, run as ECS would run it, without Docker: the
//! image's layers unpacked into a fresh root filesystem at every start (a new
//! container), its entrypoint run there with `chroot` as the image's user,
//! with exactly the environment it is given. A task that exits, or whose
//! container health check fails `retries` times in a row, is replaced, and
//! its target leaves the load balancer while it is down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::balancer::LoadBalancer;
use super::deployed::ContainerCheck;
use super::Report;
use crate::image::registry::Pulled;

/// ECS's default `stopTimeout`: SIGTERM, then SIGKILL after this.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// A task that ran at least this long restarts at once; quicker exits back off.
const STEADY: Duration = Duration::from_secs(30);
/// The longest wait between two starts of a crashing task.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What one slot runs.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// `service/N`, as reports name it.
    pub id: String,
    /// The image.
    pub image: Arc<Pulled>,
    /// The whole environment (image, task definition, secrets, credentials).
    pub env: Vec<(String, String)>,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// `UID:GID` to run as.
    pub user: String,
    /// Where its root filesystem and log go.
    pub dir: PathBuf,
    /// Its target group and the address it listens on.
    pub target: Option<(String, SocketAddr)>,
    /// Its container health check.
    pub check: Option<ContainerCheck>,
    /// `VARIABLE=PORT` when it listens on another port than the task
    /// definition says (a second task of a service on this machine).
    pub port_substitution: Option<String>,
}

impl TaskPlan {
    /// The log file of the slot (every start appends).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("output.log")
    }

    /// The task's root filesystem, made afresh at every start.
    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// The program and user of an image config, with the task definition's
/// overrides (ECS's `entryPoint` and `command`).
pub fn argv_and_user(
    config: &serde_json::Value,
    entry_point: &[String],
    command: &[String],
) -> anyhow::Result<(Vec<String>, String)> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let inner = &config["config"];
    // As Docker does: a new entrypoint also drops the image's command.
    let mut argv = if entry_point.is_empty() {
        strings(&inner["Entrypoint"])
    } else {
        entry_point.to_vec()
    };
    if !command.is_empty() {
        argv.extend(command.iter().cloned());
    } else if entry_point.is_empty() {
        argv.extend(strings(&inner["Cmd"]));
    }
    if argv.is_empty() {
        bail!("the image has no entrypoint and the task definition names no command");
    }
    let user = inner["User"].as_str().unwrap_or("0:0");
    let numeric = |s: &str| s.parse::<u32>().is_ok();
    let user = match user.split_once(':') {
        Some((u, g)) if numeric(u) && numeric(g) => user.to_string(),
        None if numeric(user) => format!("{user}:{user}"),
        _ if user.is_empty() => "0:0".to_string(),
        _ => bail!(
            "image user {user:?}: run-local runs numeric UID:GID users, as the stack's images have"
        ),
    };
    Ok((argv, user))
}

/// The image config's `Env` as pairs.
pub fn image_env(config: &serde_json::Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str()?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Unpacks `layers` (gzip tar, base first) into `rootfs`, which must not
/// exist; OCI whiteouts remove what a lower layer had.
pub fn unpack(layers: &[Vec<u8>], rootfs: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(rootfs)?;
    for layer in layers {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_overwrite(true);
        for entry in archive.entries().context("reading a layer")? {
            let mut entry = entry.context("reading a layer")?;
            let path = entry.path()?.into_owned();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let parent = rootfs.join(path.parent().unwrap_or(Path::new("")));
                if hidden == ".wh..opq" {
                    for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                        remove(&child.path())?;
                    }
                } else {
                    remove(&parent.join(hidden))?;
                }
                continue;
            }
            // `unpack_in` refuses paths that leave `rootfs`.
            if !entry.unpack_in(rootfs)? {
                bail!("layer entry {} points outside the image", path.display());
            }
        }
    }
    Ok(())
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs the slot until `stop`: starts the task, registers it with the load
/// balancer once it listens, replaces it when it exits or turns unhealthy,
/// and on `stop` sends SIGTERM and, after ECS's stop timeout, SIGKILL.
pub async fn supervise(
    plan: TaskPlan,
    balancer: Arc<LoadBalancer>,
    report: Report,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    let mut starts = 0u32;
    while !stop.is_cancelled() {
        starts += 1;
        let started = Instant::now();
        let mut child = match start(&plan).await {
            Ok(child) => child,
            Err(e) => {
                report.say(&format!("{}: cannot start: {e:#}", plan.id));
                tokio::select! {
                    _ = tokio::time::sleep(MAX_BACKOFF) => continue,
                    _ = stop.cancelled() => break,
                }
            }
        };
        let pid = child.id().unwrap_or_default();
        let place = plan
            .target
            .as_ref()
            .map_or(String::new(), |(_, addr)| format!(", {addr}"));
        let verb = if starts == 1 { "started" } else { "restarted" };
        report.task(&plan.id, &format!("{verb} (pid {pid}{place})"));
        let unhealthy = CancellationToken::new();
        let checker = plan.check.clone().map(|check| {
            tokio::spawn(container_health(
                plan.clone(),
                check,
                report.clone(),
                unhealthy.clone(),
            ))
        });
        let registered = plan.target.clone().map(|(group, addr)| {
            let balancer = balancer.clone();
            let id = plan.id.clone();
            tokio::spawn(async move {
                // ECS registers a task's target once it runs: here, once it listens.
                while tokio::net::TcpStream::connect(addr).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                balancer.register(&group, &id, addr);
            })
        });
        let outcome = tokio::select! {
            status = child.wait() => match status {
                Ok(status) => format!("exited ({status})"),
                Err(e) => format!("lost ({e})"),
            },
            _ = unhealthy.cancelled() => {
                stop_gracefully(&mut child).await;
                "unhealthy: container health check failed; replaced".to_string()
            }
            _ = stop.cancelled() => {
                stop_gracefully(&mut child).await;
                String::new()
            }
        };
        if let Some(handle) = registered {
            handle.abort();
        }
        if let Some(handle) = checker {
            handle.abort();
        }
        if let Some((group, _)) = &plan.target {
            balancer.deregister(group, &plan.id);
        }
        if stop.is_cancelled() {
            report.task(&plan.id, "stopped");
            break;
        }
        backoff = if started.elapsed() >= STEADY {
            Duration::from_secs(1)
        } else {
            (backoff * 2).min(MAX_BACKOFF)
        };
        report.task(
            &plan.id,
            &format!(
                "{outcome}; starting a new task in {} s (log: {}){}",
                backoff.as_secs(),
                plan.log_path().display(),
                last_line(&plan.log_path())
                    .map_or(String::new(), |line| format!("; last line: {line}"))
            ),
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => break,
        }
    }
}

/// The log's last line, shortened, to say why a task exited (read from
/// the log's tail: a long-running task's log can be large).
fn last_line(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(4096)))
        .ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.chars().take(400).collect())
}

/// A fresh root filesystem and the entrypoint started in it. Unpacking is
/// blocking file work, so it runs off the runtime's threads, which serve
/// the load balancer.
async fn start(plan: &TaskPlan) -> anyhow::Result<Child> {
    let prepared = plan.clone();
    let log = tokio::task::spawn_blocking(move || prepare(&prepared))
        .await
        .context("preparing the task")??;
    let mut command = in_rootfs(&plan.rootfs(), &plan.user, &plan.env, &plan.argv);
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let child = command.spawn().context("starting chroot")?;
    if let Some(pid) = child.id() {
        let _ = std::fs::write(plan.dir.join("pid"), pid.to_string());
    }
    Ok(child)
}

/// Stops a leftover task, unpacks the image into a fresh root filesystem,
/// and opens the log.
fn prepare(plan: &TaskPlan) -> anyhow::Result<std::fs::File> {
    let rootfs = plan.rootfs();
    stop_leftover(plan, &rootfs);
    remove(&rootfs).with_context(|| format!("removing {}", rootfs.display()))?;
    unpack(&plan.image.layers, &rootfs)
        .with_context(|| format!("unpacking the image into {}", rootfs.display()))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(plan.log_path())
        .with_context(|| format!("opening {}", plan.log_path().display()))
}

/// Kills the task a run-local that was itself killed left running in this
/// slot: the process of the slot's pid file, if its root is still the
/// slot's root filesystem.
fn stop_leftover(plan: &TaskPlan, rootfs: &Path) {
    let Ok(pid) = std::fs::read_to_string(plan.dir.join("pid")) else {
        return;
    };
    let pid = pid.trim();
    let root = std::fs::read_link(format!("/proc/{pid}/root")).ok();
    if root.is_some_and(|root| root == rootfs) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", pid])
            .status();
        // The port is free once the process is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `argv` inside `rootfs` as `user`, with exactly `env`.
fn in_rootfs(rootfs: &Path, user: &str, env: &[(String, String)], argv: &[String]) -> Command {
    let mut command = Command::new(chroot());
    command
        .arg(format!("--userspec={user}"))
        .arg(rootfs)
        .args(argv)
        .env_clear()
        .envs(env.iter().cloned());
    command
}

/// `chroot`, which some `PATH`s lack (`/usr/sbin`).
fn chroot() -> PathBuf {
    ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("chroot"))
}

async fn stop_gracefully(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SIGTERM through kill(1): the crate forbids unsafe code.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Runs the container health check as ECS does (in the container, every
/// `interval`, failures counted after `start_period`); cancels `unhealthy`
/// after `retries` failures in a row.
async fn container_health(
    plan: TaskPlan,
    check: ContainerCheck,
    report: Report,
    unhealthy: CancellationToken,
) {
    let started = Instant::now();
    let rootfs = plan.rootfs();
    let mut failures = 0;
    let mut healthy = false;
    loop {
        // Until it is first healthy, checks come sooner, so a task reports promptly.
        let wait = if healthy {
            check.interval
        } else {
            check.interval.min(Duration::from_secs(5))
        };
        tokio::time::sleep(wait).await;
        let mut command = in_rootfs(&rootfs, &plan.user, &plan.env, &check.command);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let passed = match tokio::time::timeout(check.timeout, command.status()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        };
        if passed {
            failures = 0;
            if !healthy {
                healthy = true;
                report.task(&plan.id, "container health check: HEALTHY");
            }
        } else if started.elapsed() >= check.start_period {
            failures += 1;
            if failures >= check.retries.max(1) {
                unhealthy.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_task_definition_overrides_the_image_entrypoint_and_command() -> anyhow::Result<()> {
        let config = json!({"config": {"User": "65532:65532", "Entrypoint": ["/app/ingest"], "Cmd": ["serve"], "Env": ["PATH=/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]}});
        assert_eq!(
            argv_and_user(&config, &[], &[])?,
            (
                vec!["/app/ingest".to_string(), "serve".to_string()],
                "65532:65532".to_string()
            )
        );
        let (argv, _) = argv_and_user(&config, &[], &["other".to_string()])?;
        assert_eq!(argv, ["/app/ingest", "other"]);
        let (argv, _) = argv_and_user(&config, &["/bin/x".to_string()], &[])?;
        assert_eq!(argv, ["/bin/x"]);
        assert_eq!(image_env(&config)[0], ("PATH".into(), "/bin".into()));
        let named = json!({"config": {"User": "nobody", "Entrypoint": ["/x"]}});
        assert!(argv_and_user(&named, &[], &[]).is_err());
        Ok(())
    }

    #[test]
    fn layers_unpack_in_order_with_whiteouts_and_never_outside() -> anyhow::Result<()> {
        fn layer(files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
            let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            ));
            for (path, data) in files {
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_uid(0);
                header.set_gid(0);
                header.set_cksum();
                builder.append_data(&mut header, path, *data)?;
            }
            Ok(builder.into_inner()?.finish()?)
        }
        let dir = tempfile::tempdir()?;
        let rootfs = dir.path().join("rootfs");
        let base = layer(&[("etc/a", b"base"), ("etc/b", b"gone later")])?;
        let top = layer(&[("etc/a", b"top"), ("etc/.wh.b", b"")])?;
        unpack(&[base, top], &rootfs)?;
        assert_eq!(std::fs::read(rootfs.join("etc/a"))?, b"top");
        assert!(!rootfs.join("etc/b").exists());

        // A path with `..` is refused by the tar builder itself, so write its header by hand.
        let mut header = tar::Header::new_gnu();
        if let Some(gnu) = header.as_gnu_mut() {
            gnu.name[..9].copy_from_slice(b"../escape");
        }
        header.set_size(1);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        builder.append(&header, &b"x"[..])?;
        let evil = builder.into_inner()?.finish()?;
        let other = dir.path().join("other");
        assert!(unpack(&[evil], &other).is_err());
        assert!(!dir.path().join("escape").exists());
        Ok(())
    }
}
