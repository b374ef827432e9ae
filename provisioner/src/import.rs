//! `provision import`: historical events from a file, through the ingest
//! API, so that the same validation, limits and idempotency apply as to
//! live traffic.
//!
//! - Input: CSV with the header `event_id,occurred_at,user_id,event_type,properties_json`
//!   (the reference format), or NDJSON, one event object a line (the fields
//!   `POST /events` takes). A row without an `event_id` gets one derived
//!   from its content, so a second import of the same file repeats it
//!   rather than adding it.
//! - Rows go in batches, a bounded number of requests at a time; 429 and 503
//!   are retried after their `Retry-After`, other failures of the server or
//!   the network with backoff. A row the API refuses (422) is written to the
//!   rejects file with its line number, field and reason, and the rest of its
//!   batch is sent again without it. Rows that cannot be read are rejected
//!   the same way without being sent.
//! - Resumable: after every batch the API accepted, in file order, the
//!   checkpoint file records the last line done. A new run starts after it
//!   (and keeps the rejects before it); an event sent again after a crash
//!   between acceptance and checkpoint is stored once, by its id.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// What the import reads and where it sends it.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The CSV or NDJSON file.
    pub file: PathBuf,
    /// The platform's front door (ingest's `POST /events` is under it).
    pub url: String,
    /// A bearer token ingest accepts.
    pub token: String,
    /// Rows per request (at most ingest's `MAX_BATCH_EVENTS`).
    pub batch_size: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Where refused rows go (NDJSON: line, field, reason).
    pub rejects: PathBuf,
    /// Where the last line done is kept.
    pub checkpoint: PathBuf,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows the API accepted in this run.
    pub accepted: u64,
    /// Rows refused in this run, each in the rejects file.
    pub rejected: u64,
    /// Lines skipped as done by an earlier run.
    pub resumed_after_line: u64,
}

/// A row the import will not store, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 1-based line in the file (CSV: where the record starts).
    pub line: u64,
    /// The field at fault (`row` when the row as a whole is).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// One event to send, with its line.
#[derive(Debug, Clone)]
struct Row {
    line: u64,
    event: Value,
}

/// The CSV header of the reference format.
const CSV_HEADER: [&str; 5] = [
    "event_id",
    "occurred_at",
    "user_id",
    "event_type",
    "properties_json",
];

/// Rows and rejects in file order, read as they are needed.
type Rows = Box<dyn Iterator<Item = Result<Row, Reject>>>;

/// Reads `file` (CSV when it ends in `.csv`, else NDJSON) after `after_line`.
fn read_file(file: &Path, after_line: u64) -> anyhow::Result<Rows> {
    let is_csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let opened = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    if is_csv {
        read_csv(opened, after_line)
    } else {
        read_ndjson(opened, after_line)
    }
}

fn read_csv(file: File, after_line: u64) -> anyhow::Result<Rows> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(BufReader::new(file));
    let header: Vec<String> = reader
        .headers()
        .context("reading the CSV header")?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header != CSV_HEADER {
        bail!(
            "the CSV header is `{}`; expected `{}`",
            header.join(","),
            CSV_HEADER.join(",")
        );
    }
    let mut record = csv::StringRecord::new();
    let mut ended = false;
    let rows = std::iter::from_fn(move || loop {
        if ended {
            return None;
        }
        let line = reader.position().line() + 1;
        match reader.read_record(&mut record) {
            Ok(false) => return None,
            Ok(true) => {}
            Err(e) => {
                // An unreadable record (bad UTF-8, a quote never closed) ends what can be read.
                ended = true;
                let line = e.position().map_or(line, |p| p.line());
                return Some(Err(reject(line, "row", &format!("unreadable CSV: {e}"))));
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        if line > after_line {
            return Some(csv_row(line, &record));
        }
    });
    Ok(Box::new(rows))
}

fn csv_row(line: u64, record: &csv::StringRecord) -> Result<Row, Reject> {
    if record.len() != CSV_HEADER.len() {
        return Err(reject(
            line,
            "row",
            &format!("{} fields, expected {}", record.len(), CSV_HEADER.len()),
        ));
    }
    let field = |i: usize| record.get(i).unwrap_or_default().trim();
    let properties = match field(4) {
        "" => json!({}),
        text => serde_json::from_str::<Value>(text)
            .map_err(|e| reject(line, "properties_json", &format!("not JSON: {e}")))?,
    };
    let mut event = Map::new();
    let id = match field(0) {
        "" => derived_id(record.as_slice().as_bytes()),
        id => id.to_string(),
    };
    event.insert("event_id".into(), json!(id));
    if !field(1).is_empty() {
        event.insert("occurred_at".into(), json!(field(1)));
    }
    event.insert("user_id".into(), json!(field(2)));
    event.insert("event_type".into(), json!(field(3)));
    event.insert("properties".into(), properties);
    Ok(Row {
        line,
        event: Value::Object(event),
    })
}

fn read_ndjson(file: File, after_line: u64) -> anyhow::Result<Rows> {
    let rows = BufReader::new(file)
        .lines()
        .enumerate()
        .filter_map(move |(i, text)| {
            let line = i as u64 + 1;
            match text {
                Err(e) => Some(Err(reject(line, "row", &format!("unreadable line: {e}")))),
                Ok(text) if line <= after_line || text.trim().is_empty() => None,
                Ok(text) => Some(ndjson_row(line, &text)),
            }
        });
    Ok(Box::new(rows))
}

fn ndjson_row(line: u64, text: &str) -> Result<Row, Reject> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut event)) => {
            if !event.contains_key("event_id") {
                event.insert("event_id".into(), json!(derived_id(text.as_bytes())));
            }
            Ok(Row {
                line,
                event: Value::Object(event),
            })
        }
        Ok(_) => Err(reject(line, "row", "not a JSON object")),
        Err(e) => Err(reject(line, "row", &format!("not JSON: {e}"))),
    }
}

/// A UUID (version 8) from a row's bytes: the same row, the same id.
fn derived_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(id).into_uuid().to_string()
}

fn reject(line: u64, field: &str, reason: &str) -> Reject {
    Reject {
        line,
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// The last line an earlier run finished, and the rejects it wrote before it.
fn resume_point(options: &ImportOptions) -> anyhow::Result<u64> {
    let done = match std::fs::read_to_string(&options.checkpoint) {
        Ok(text) => text.trim().parse::<u64>().with_context(|| {
            format!(
                "{} is not a checkpoint (delete it to start over)",
                options.checkpoint.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).context("reading the checkpoint"),
    };
    // Rejects past the checkpoint are found again by this run: drop them.
    let kept: Vec<String> = match std::fs::read_to_string(&options.rejects) {
        Ok(text) => text
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v["line"].as_u64())
                    .is_some_and(|line| line <= done)
            })
            .map(String::from)
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut out = File::create(&options.rejects)
        .with_context(|| format!("creating {}", options.rejects.display()))?;
    for line in kept {
        writeln!(out, "{line}")?;
    }
    Ok(done)
}

/// A batch's outcome at the API.
struct Sent {
    accepted: u64,
    rejects: Vec<Reject>,
}

/// Runs the import.
pub async fn run(options: &ImportOptions) -> anyhow::Result<Summary> {
    if options.batch_size == 0 || options.concurrency == 0 {
        bail!("--batch-size and --concurrency must be at least 1");
    }
    let after = resume_point(options)?;
    let mut rows = read_file(&options.file, after)?.peekable();
    let bar = options
        .progress
        .then(|| progress_bar(count_lines(&options.file).saturating_sub(after)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let endpoint = format!("{}/events", options.url.trim_end_matches('/'));

    // Batches in file order, read as they are sent; unreadable rows ride along as rejects.
    let batch_size = options.batch_size;
    let batches = std::iter::from_fn(move || {
        rows.peek()?;
        let (mut good, mut unreadable, mut last) = (Vec::new(), Vec::new(), 0);
        for row in rows.by_ref().take(batch_size) {
            match row {
                Ok(row) => {
                    last = row.line;
                    good.push(row);
                }
                Err(reject) => {
                    last = reject.line;
                    unreadable.push(reject);
                }
            }
        }
        Some((good, unreadable, last))
    });

    let mut rejects_file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&options.rejects)
        .with_context(|| format!("opening {}", options.rejects.display()))?;
    let mut summary = Summary {
        resumed_after_line: after,
        ..Summary::default()
    };
    // `buffered` answers in order, so the checkpoint only ever moves past
    // batches that are done, while later ones are in flight.
    let mut sent = futures::stream::iter(batches.map(|(rows, unreadable, last)| {
        let (client, endpoint, token) = (&client, &endpoint, &options.token);
        async move {
            let mut outcome = send_batch(client, endpoint, token, rows).await?;
            outcome.rejects.extend(unreadable);
            outcome.rejects.sort_by_key(|r| r.line);
            anyhow::Ok((last, outcome))
        }
    }))
    .buffered(options.concurrency);
    while let Some(outcome) = sent.next().await {
        let (last_line, outcome) = outcome?;
        for r in &outcome.rejects {
            let line = json!({"line": r.line, "field": r.field, "reason": r.reason});
            writeln!(rejects_file, "{line}").context("writing a reject")?;
        }
        rejects_file.flush().context("writing the rejects")?;
        std::fs::write(&options.checkpoint, format!("{last_line}\n"))
            .context("writing the checkpoint")?;
        summary.accepted += outcome.accepted;
        summary.rejected += outcome.rejects.len() as u64;
        if let Some(bar) = &bar {
            bar.inc(outcome.accepted + outcome.rejects.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    Ok(summary)
}

/// Lines in `file`, for the progress bar's length (CSV's header counts, a
/// quoted newline too: an estimate).
fn count_lines(file: &Path) -> u64 {
    let Ok(file) = File::open(file) else {
        return 0;
    };
    BufReader::new(file).split(b'\n').count() as u64
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Sends `rows` until the API has taken every one it does not refuse.
async fn send_batch(
    client: &reqwest::Client,
    endpoint: &str,
    token: &str,
    mut rows: Vec<Row>,
) -> anyhow::Result<Sent> {
    let mut rejects = Vec::new();
    let mut attempt = 0u32;
    while !rows.is_empty() {
        let body = json!({"events": rows.iter().map(|r| &r.event).collect::<Vec<_>>()});
        let response = client
            .post(endpoint)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                attempt += 1;
                retry_or_fail(attempt, None, &format!("{endpoint}: {e}")).await?;
                continue;
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            202 => {
                return Ok(Sent {
                    accepted: rows.len() as u64,
                    rejects,
                })
            }
            429 | 503 | 500..=599 => {
                attempt += 1;
                let why = format!("{endpoint} answered {status}: {}", problem["detail"]);
                retry_or_fail(attempt, retry_after, &why).await?;
            }
            _ => {
                // Refused rows name their place in the batch; anything else stops the import.
                let refused = refused_rows(&problem, &rows);
                if refused.is_empty() {
                    bail!(
                        "{endpoint} answered {status}: {} (nothing more is sent)",
                        problem["detail"].as_str().unwrap_or("no detail")
                    );
                }
                let mut bad: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
                bad.sort_unstable();
                bad.dedup();
                rejects.extend(refused.into_iter().map(|(_, r)| r));
                rows = rows
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| bad.binary_search(i).is_err())
                    .map(|(_, r)| r)
                    .collect();
            }
        }
    }
    Ok(Sent {
        accepted: 0,
        rejects,
    })
}

/// The rows a problem response refuses: (index in the batch, reject).
fn refused_rows(problem: &Value, rows: &[Row]) -> Vec<(usize, Reject)> {
    let Some(errors) = problem["errors"].as_array() else {
        return Vec::new();
    };
    let mut refused = Vec::new();
    for error in errors {
        let Some(index) = error["index"].as_u64().map(|i| i as usize) else {
            // A fault of the request as a whole: not one row's.
            return Vec::new();
        };
        let Some(row) = rows.get(index) else {
            return Vec::new();
        };
        let field = error["field"].as_str().unwrap_or("row");
        // `events[3].event_type` -> `event_type`.
        let field = field.split_once("].").map_or(field, |(_, f)| f).to_string();
        let reason = error["reason"].as_str().unwrap_or("refused").to_string();
        refused.push((
            index,
            Reject {
                line: row.line,
                field,
                reason,
            },
        ));
    }
    refused
}

/// Attempts per batch before the import stops (about five minutes of waiting).
const MAX_ATTEMPTS: u32 = 12;

async fn retry_or_fail(attempt: u32, after: Option<Duration>, why: &str) -> anyhow::Result<()> {
    if attempt >= MAX_ATTEMPTS {
        bail!("{why}; gave up after {attempt} attempts (run again to resume)");
    }
    let backoff = Duration::from_millis(250u64.saturating_mul(1 << attempt.min(7)));
    let wait = after.unwrap_or(backoff).min(Duration::from_secs(60));
    tokio::time::sleep(wait).await;
    Ok(())
}

/// Rows a second per [`Summary`], for the closing line.
pub fn rate(summary: &Summary, started: Instant) -> f64 {
    (summary.accepted + summary.rejected) as f64 / started.elapsed().as_secs_f64().max(1e-3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(text: &str, name: &str) -> Vec<Result<Row, Reject>> {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        read_file(&path, 0).expect("read").collect()
    }

    #[test]
    fn csv_rows_become_events_and_bad_rows_rejects_with_their_lines() {
        let rows = rows_of(
            "event_id,occurred_at,user_id,event_type,properties_json\n\
             550e8400-e29b-41d4-a716-446655440000,2024-01-15T10:30:00Z,user_123,page_view,\"{\"\"page\"\": \"\"/home\"\"}\"\n\
             ,2024-01-15T10:31:00Z,user_124,click,\n\
             ,2024-01-15T10:32:00Z,user_125,click,{not json\n\
             only,three,fields\n",
            "events.csv",
        );
        assert_eq!(rows.len(), 4);
        let first = rows[0].as_ref().expect("a row");
        assert_eq!(first.line, 2);
        assert_eq!(
            first.event["event_id"],
            "550e8400-e29b-41d4-a716-446655440000"
        );
        assert_eq!(first.event["properties"]["page"], "/home");
        assert_eq!(first.event["occurred_at"], "2024-01-15T10:30:00Z");
        let second = rows[1].as_ref().expect("a row");
        let derived = second.event["event_id"].as_str().expect("an id");
        assert!(uuid::Uuid::parse_str(derived).is_ok());
        assert_eq!(
            rows_of(
                "event_id,occurred_at,user_id,event_type,properties_json\n,2024-01-15T10:31:00Z,user_124,click,\n",
                "again.csv"
            )[0]
            .as_ref()
            .expect("a row")
            .event["event_id"],
            derived,
            "the same row, the same derived id"
        );
        let bad_json = rows[2].as_ref().expect_err("a reject");
        assert_eq!(
            (bad_json.line, bad_json.field.as_str()),
            (4, "properties_json")
        );
        let short = rows[3].as_ref().expect_err("a reject");
        assert_eq!(
            (short.line, short.reason.as_str()),
            (5, "3 fields, expected 5")
        );
    }

    #[test]
    fn ndjson_lines_are_events_and_others_rejects() {
        let rows = rows_of(
            "{\"event_type\":\"a\",\"user_id\":\"u\"}\n\n[1]\n{oops\n",
            "events.ndjson",
        );
        assert_eq!(rows.len(), 3);
        assert!(rows[0]
            .as_ref()
            .is_ok_and(|r| r.event["event_id"].is_string()));
        assert_eq!(rows[1].as_ref().expect_err("a reject").line, 3);
        assert_eq!(rows[2].as_ref().expect_err("a reject").line, 4);
    }

    #[test]
    fn a_wrong_csv_header_is_an_error_naming_the_expected_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "id,when\n1,2\n").expect("write");
        let error = read_file(&path, 0).err().expect("refused").to_string();
        assert!(
            error.contains("expected `event_id,occurred_at,user_id,event_type,properties_json`"),
            "{error}"
        );
    }
}
