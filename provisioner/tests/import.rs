//! `provision import` as a user runs it, into `provision dev`: a 100,000-row
//! CSV with 1% bad rows (some the importer cannot read, some the API
//! refuses), killed part-way and run again. Every good row is counted once,
//! every bad one is in the rejects file with its line and reason.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod platform;

const ROWS: u64 = 100_000;

/// Writes the file; returns the 1-based lines of the bad rows.
fn write_csv(path: &Path) -> BTreeSet<u64> {
    let mut text = String::from("event_id,occurred_at,user_id,event_type,properties_json\n");
    let mut bad = BTreeSet::new();
    for i in 0..ROWS {
        let line = i + 2;
        let id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i));
        let minute = i % (6 * 24 * 60);
        let when = format!(
            "2026-11-0{}T{:02}:{:02}:00Z",
            1 + minute / (24 * 60),
            minute / 60 % 24,
            minute % 60
        );
        let user = format!("user-{}", i % 500);
        let row = match i % 100 {
            // Refused by the API: no event type, a date that is not one.
            17 => format!("{id},{when},{user},,{{}}"),
            42 => format!("{id},yesterday,{user},click,{{}}"),
            // Not readable here: broken JSON, a missing column.
            63 => format!("{id},{when},{user},click,{{broken"),
            88 => format!("{id},{when},{user}"),
            _ => format!("{id},{when},{user},page_view,\"{{\"\"n\"\": {i}}}\""),
        };
        if matches!(i % 100, 17 | 42 | 63 | 88) {
            bad.insert(line);
        }
        text.push_str(&row);
        text.push('\n');
    }
    std::fs::write(path, text).expect("write the CSV");
    bad
}

fn import(dev: &platform::Dev, file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provision"));
    command
        .args([
            "import", "--quiet", "--url", &dev.url, "--token", &dev.token,
        ])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

async fn total(dev: &platform::Dev) -> i64 {
    platform::event_total(dev, "2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z").await
}

#[tokio::test]
async fn a_killed_and_resumed_import_stores_each_good_row_once_and_reports_each_bad_one() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("history.csv");
    let bad = write_csv(&file);
    assert_eq!(bad.len(), 4 * (ROWS as usize / 100));
    let port = test_support::free_port().expect("port").to_string();
    let dev = platform::start(&["--port", &port]);

    // First run: killed once a fifth of the file is done.
    let checkpoint = dir.path().join("history.csv.checkpoint");
    let mut first = import(&dev, &file).spawn().expect("import starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: u64 = std::fs::read_to_string(&checkpoint)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if done >= ROWS / 5 {
            break;
        }
        assert!(
            first.try_wait().expect("wait").is_none(),
            "the import ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no progress: checkpoint {done}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("kill");
    first.wait().expect("reaped");

    // Second run: from the checkpoint to the end.
    let second = import(&dev, &file).output().expect("import runs");
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{said}");
    assert!(said.contains("resumed after line"), "{said}");

    let rejects = std::fs::read_to_string(dir.path().join("history.csv.rejects.ndjson"))
        .expect("the rejects file");
    let rejected: Vec<Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let lines: BTreeSet<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().expect("a line"))
        .collect();
    assert_eq!(rejected.len(), bad.len(), "each bad row once");
    assert_eq!(lines, bad, "exactly the bad rows");
    for r in &rejected {
        let line = r["line"].as_u64().unwrap_or_default();
        let (field, reason) = (
            r["field"].as_str().unwrap_or(""),
            r["reason"].as_str().unwrap_or(""),
        );
        let expected_field = match (line - 2) % 100 {
            17 => "event_type",
            42 => "occurred_at",
            63 => "properties_json",
            _ => "row",
        };
        assert_eq!(field, expected_field, "line {line}: {r}");
        assert!(!reason.is_empty(), "line {line} has no reason");
    }

    let good = (ROWS - bad.len() as u64) as i64;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let stored = total(&dev).await;
        if stored == good {
            break;
        }
        assert!(stored < good, "counted twice: {stored} of {good}");
        assert!(Instant::now() < deadline, "stored {stored} of {good}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Nothing arrives late to push the count past the rows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(total(&dev).await, good);
    assert!(platform::stop(dev, "-TERM").success());
}
