//! A real OCI registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on a free loopback port, with its own throwaway config and storage
//! (never the packaged service), optionally behind htpasswd (bcrypt) Basic
//! auth. `integration-tests/run-all-tests.sh` installs it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{find_command, free_port};

/// A running registry; stopped and its storage removed on drop.
pub struct LocalRegistry {
    child: Child,
    _dir: tempfile::TempDir,
    host: String,
}

impl LocalRegistry {
    /// Starts a registry; with `basic_auth` it accepts only that user and
    /// password. Waits until `/v2/` answers.
    pub async fn start(basic_auth: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let binary = binary("docker-registry")?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: event-platform-tests\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = basic_auth {
            let hash = bcrypt::hash(password, 5).context("hashing the registry password")?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: event-platform-tests\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let registry = Self {
            child,
            _dir: dir,
            host,
        };
        registry
            .wait_until_answering(Duration::from_secs(20))
            .await?;
        Ok(registry)
    }

    /// `127.0.0.1:PORT`, as image references name it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://127.0.0.1:PORT`, for a blueprint's `images.registry`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    async fn wait_until_answering(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        let url = format!("{}/v2/", self.url());
        loop {
            // 200 without auth, 401 with: either way it serves.
            if client.get(&url).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("registry at {url} did not answer within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command from Debian's packages (see [`find_command`]), or an error
/// that says how to install it.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    find_command(name).with_context(|| {
        format!(
            "`{name}` not found: run integration-tests/run-all-tests.sh (it installs Debian's docker-registry, skopeo and umoci)"
        )
    })
}
