//! A running platform for the tests that use it as a user does: `provision dev`
//! as a child process, and its clients (GraphQL, the dashboard in headless
//! chromium). The stack on moto is in `support`.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `provision dev` and what its banner said.
pub struct Dev {
    pub child: Child,
    pub data: tempfile::TempDir,
    pub url: String,
    pub dashboard: String,
    pub broker: String,
    pub token: String,
}

/// Starts `provision dev` with `args` (and a fresh data directory) and reads its banner.
pub fn start(args: &[&str]) -> Dev {
    start_in(tempfile::tempdir().expect("data dir"), args)
}

/// Starts `provision dev` with `args` on the data directory `data`.
pub fn start_in(data: tempfile::TempDir, args: &[&str]) -> Dev {
    let mut child = Command::new(env!("CARGO_BIN_EXE_provision"))
        .arg("dev")
        .args(args)
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("provision dev starts");
    let stdout = child.stdout.take().expect("stdout");
    let (mut url, mut dashboard, mut broker, mut token) =
        (String::new(), String::new(), String::new(), String::new());
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("banner line");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("front") => url = words.nth(1).unwrap_or_default().to_string(),
            Some("dashboard:") => dashboard = words.next().unwrap_or_default().to_string(),
            Some("broker:") => broker = words.next().unwrap_or_default().to_string(),
            Some("dev") => token = words.nth(1).unwrap_or_default().to_string(),
            Some("Ctrl-C") => break,
            _ => {}
        }
    }
    // Keep reading, as a terminal would, so the process never sees a closed stdout.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        url.starts_with("http://127.0.0.1:") && !broker.is_empty() && !token.is_empty(),
        "banner: {url} {broker} {token}"
    );
    Dev {
        child,
        data,
        url,
        dashboard,
        broker,
        token,
    }
}

/// Sends `signal` and waits for the exit status.
pub fn stop(dev: Dev, signal: &str) -> std::process::ExitStatus {
    stop_keeping_data(dev, signal).0
}

/// Stops as [`stop`] does, and hands back the data directory.
pub fn stop_keeping_data(
    mut dev: Dev,
    signal: &str,
) -> (std::process::ExitStatus, tempfile::TempDir) {
    let killed = Command::new("kill")
        .args([signal, &dev.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = dev.child.try_wait().expect("wait") {
            let data =
                std::mem::replace(&mut dev.data, tempfile::tempdir().expect("a placeholder"));
            return (status, data);
        }
        assert!(
            Instant::now() < deadline,
            "provision dev did not exit after {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Dev {
    /// A failed test must not leave the platform running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Debian's `chromium` (or `CHROMIUM`).
pub fn chromium() -> PathBuf {
    let candidates = std::env::var("CHROMIUM")
        .into_iter()
        .chain(["chromium", "chromium-browser"].map(String::from));
    for candidate in candidates {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {candidate}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if let Some(path) = found.filter(|p| !p.is_empty()) {
            return path.into();
        }
    }
    panic!("no chromium: install Debian's chromium (integration-tests/run-all-tests.sh does) or set CHROMIUM");
}

/// Runs headless Chromium on `url` with `action` (`--dump-dom` or `--screenshot=...`).
pub fn render(url: &str, action: &str, profile: &Path) -> String {
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--window-size=1280,1500",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(action)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `POST {url}/graphql` with `query` and `token`: the answer's JSON.
pub async fn graphql(url: &str, token: &str, query: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .expect("graphql answers")
        .json()
        .await
        .expect("json")
}

/// `eventCount(from, to)`'s total (whole hours, as the dashboard asks).
pub async fn event_total(dev: &Dev, from: &str, to: &str) -> i64 {
    let query =
        format!(r#"{{ eventCount(from: "{from}", to: "{to}", bucket: HOUR) {{ total }} }}"#);
    let answer = graphql(&dev.url, &dev.token, &query).await;
    answer["data"]["eventCount"]["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("no total: {answer}"))
}
