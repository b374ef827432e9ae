//! `querybench`: GraphQL read latency and freshness (loopback only).
//!
//! - `querybench queries`: fills a hot store (SQLite, or DynamoDB on an
//!   emulator) with events through the store port, serves `graphql` over it
//!   in this process, and reports p50/p99 of each query, sent one at a time
//!   over HTTP.
//! - `querybench freshness`: against a running `provision dev`, sends a
//!   steady load through the front door plus probe events, and reports the
//!   time from a probe's 202 to its appearance in `latestEvents`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::loopback_target;
use chrono::{TimeZone, Utc};
use clap::{Parser, Subcommand};
use event_store::aws::{self, AwsSettings};
use event_store::hot::dynamodb::DynamoHotStore;
use event_store::hot::sqlite::SqliteHotStore;
use event_store::hot::{HotReader, HotWriter};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use test_support::harness::GraphqlServer;
use test_support::stores::{self, event};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Latency of each query over a filled store.
    Queries {
        /// `sqlite` or `dynamodb` (on `--aws-endpoint`).
        #[arg(long, default_value = "sqlite")]
        store: String,
        /// The AWS emulator's URL, for `--store dynamodb`; must be loopback.
        #[arg(long)]
        aws_endpoint: Option<String>,
        /// Events to load.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// SQLite file to fill, or reuse when it exists.
        #[arg(long, default_value = "target/querybench.sqlite3")]
        db: String,
        /// DynamoDB table to fill, or reuse when it exists.
        #[arg(long, default_value = "QueryBench")]
        table: String,
        /// Requests per query (after 10 warm-up requests).
        #[arg(long, default_value_t = 300)]
        iterations: usize,
    },
    /// Ingest 202 to visible in `latestEvents`, under a steady load.
    Freshness {
        /// The front door of `provision dev`.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// A token (`provision dev` prints one).
        #[arg(long)]
        token: String,
        /// Background load, events per second (batches of 25).
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Probe events, one at a time, 50 ms apart.
        #[arg(long, default_value_t = 600)]
        probes: usize,
    },
}

/// 30 days from this day; 20 types with skewed frequencies; users with a
/// long tail, and one heavy user with 1% of the events.
const FIRST_DAY: (i32, u32, u32) = (2026, 10, 1);
const DAYS: i64 = 30;

fn dataset_event(n: usize, total: usize) -> event_common::event::Event {
    let start = Utc
        .with_ymd_and_hms(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let spacing = (DAYS * 86_400_000) as f64 / total as f64;
    let ts = start + chrono::Duration::milliseconds((n as f64 * spacing) as i64);
    let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let event_type = format!("type_{}", (h % 400).isqrt());
    let user = if n.is_multiple_of(100) {
        "heavy".to_string()
    } else {
        format!("user-{}", (h >> 20) % (total as u64 / 50).max(1))
    };
    event(&event_type, &user, ts, n)
}

async fn fill(hot: &dyn HotWriter, events: usize, batch: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    for chunk_start in (0..events).step_by(batch) {
        let chunk: Vec<_> = (chunk_start..(chunk_start + batch).min(events))
            .map(|n| dataset_event(n, events))
            .collect();
        let b = stores::batch("bench", 0, chunk_start as i64, &chunk);
        hot.apply(&b).await?;
        if (chunk_start / batch).is_multiple_of(50) {
            eprintln!(
                "loaded {chunk_start}/{events} ({:.0} events/s)",
                chunk_start as f64 / started.elapsed().as_secs_f64().max(0.001)
            );
        }
    }
    eprintln!(
        "loaded {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The walk over the heavy user's history used for the middle-page query.
const WALK: &str = r#"query($after: String) { events(userId: "heavy", first: 50, after: $after) { nodes { eventId eventType userId timestamp receivedAt payload } pageInfo { endCursor } } }"#;

/// (name, query, variables) of every measured query; `middle` is a cursor
/// in the middle of the heavy user's history.
fn queries(middle: Value) -> Vec<(&'static str, String, Value)> {
    let page = "eventId eventType userId timestamp receivedAt payload";
    let plain = |name, query: String| (name, query, json!({}));
    vec![
        plain("latestEvents(limit: 10)", format!("{{ latestEvents(limit: 10) {{ {page} }} }}")),
        plain("eventsByType(limit: 50)", format!(r#"{{ eventsByType(eventType: "type_3", limit: 50) {{ {page} }} }}"#)),
        plain("eventsByUser(limit: 50)", format!(r#"{{ eventsByUser(userId: "heavy", limit: 50) {{ {page} }} }}"#)),
        ("events(first: 50), a middle page", WALK.into(), json!({ "after": middle })),
        plain("eventCount 30 days, DAY", r#"{ eventCount(from: "2026-10-01T00:00:00Z", to: "2026-10-31T00:00:00Z") { total buckets { start count } } }"#.into()),
        plain("eventCount 7 days, HOUR, one type", r#"{ eventCount(from: "2026-10-10T00:00:00Z", to: "2026-10-17T00:00:00Z", eventType: "type_5", bucket: HOUR) { total buckets { start count } } }"#.into()),
        plain("dailyActiveUsers 30 days", r#"{ dailyActiveUsers(from: "2026-10-01", to: "2026-10-30") { date count } }"#.into()),
        plain("topEvents 30 days", r#"{ topEvents(from: "2026-10-01", to: "2026-10-30") { eventType count } }"#.into()),
        plain("retention 14 daily cohorts", r#"{ retention(startDate: "2026-10-01", windows: 14) { cohortDate size retained rates } }"#.into()),
        plain("retention 4 weekly cohorts", r#"{ retention(startDate: "2026-10-01", windows: 4, windowType: WEEKLY) { cohortDate size retained rates } }"#.into()),
    ]
}

async fn run_queries(api: &GraphqlServer, iterations: usize) -> anyhow::Result<()> {
    let mut middle = Value::Null;
    for _ in 0..20 {
        let data = api.data(WALK, json!({ "after": middle })).await?;
        middle = data["events"]["pageInfo"]["endCursor"].clone();
    }
    println!("| query | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, query, variables) in queries(middle) {
        let mut histogram = Histogram::<u64>::new(3)?;
        for i in 0..iterations + 10 {
            let started = Instant::now();
            api.data(&query, variables.clone())
                .await
                .with_context(|| name.to_string())?;
            if i >= 10 {
                histogram.record(started.elapsed().as_micros() as u64)?;
            }
        }
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            histogram.value_at_quantile(0.5) as f64 / 1000.0,
            histogram.value_at_quantile(0.99) as f64 / 1000.0,
            histogram.max() as f64 / 1000.0
        );
    }
    Ok(())
}

async fn freshness(url: &str, token: &str, rate: u64, probes: usize) -> anyhow::Result<()> {
    loopback_target(url)?;
    let client = reqwest::Client::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, url, token, stop) = (
            client.clone(),
            url.to_string(),
            token.to_string(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let batch: Vec<Value> = (0..25)
                .map(|i| json!({"event_type": "load", "user_id": format!("load-{i}"), "payload": {"i": i}}))
                .collect();
            let body = json!({ "events": batch });
            let mut tick = tokio::time::interval(Duration::from_micros(25_000_000 / rate.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut sent = 0u64;
            let mut refused = 0u64;
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let (client, url, token, body) =
                    (client.clone(), url.clone(), token.clone(), body.clone());
                sent += 25;
                let response = tokio::spawn(async move {
                    client
                        .post(format!("{url}/events"))
                        .bearer_auth(token)
                        .json(&body)
                        .send()
                        .await
                });
                // Sample one answer in 200 (the others run detached).
                if (sent / 25).is_multiple_of(200)
                    && !matches!(response.await, Ok(Ok(r)) if r.status() == 202)
                {
                    refused += 1;
                }
            }
            (sent as f64 / started.elapsed().as_secs_f64(), refused)
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let latest = json!({"query": "{ latestEvents(limit: 10) { eventId } }"});
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut missed = 0;
    for p in 0..probes {
        // Two minutes ahead (inside ingest's skew allowance): a stored probe
        // is at the top of latestEvents however many load events follow it.
        let ahead = (Utc::now() + chrono::Duration::seconds(120)).to_rfc3339();
        let probe = json!({"event_type": "probe", "user_id": "probe", "timestamp": ahead, "payload": {"p": p}});
        let response = client
            .post(format!("{url}/events"))
            .bearer_auth(token)
            .json(&probe)
            .send()
            .await?;
        let accepted = Instant::now();
        if response.status() != 202 {
            bail!("probe refused: {}", response.status());
        }
        let reply: Value = response.json().await?;
        let id = reply["event_ids"][0].as_str().context("an id")?.to_string();
        let deadline = accepted + Duration::from_secs(10);
        loop {
            let page: Value = client
                .post(format!("{url}/graphql"))
                .bearer_auth(token)
                .json(&latest)
                .send()
                .await?
                .json()
                .await?;
            let seen = page["data"]["latestEvents"]
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e["eventId"] == id.as_str()));
            if seen {
                histogram.record(accepted.elapsed().as_micros() as u64)?;
                break;
            }
            if Instant::now() > deadline {
                missed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (achieved, refused) = load.await?;
    println!("background load:  {achieved:.0} events/s ({refused} sampled requests not 202)");
    println!(
        "freshness:        p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} probes ({missed} not seen within 10 s)",
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Mode::Queries {
            store,
            aws_endpoint,
            events,
            db,
            table,
            iterations,
        } => {
            let hot: Arc<dyn HotReader> = match store.as_str() {
                "sqlite" => {
                    let fresh = !std::path::Path::new(&db).exists();
                    let hot = Arc::new(SqliteHotStore::open(db.as_ref(), 3650)?);
                    if fresh {
                        fill(hot.as_ref(), events, 2_000).await?;
                    }
                    hot
                }
                "dynamodb" => {
                    let endpoint = aws_endpoint.context("--store dynamodb needs --aws-endpoint")?;
                    loopback_target(&endpoint)?;
                    let sdk = aws::sdk_config(&AwsSettings::emulator(&endpoint)).await;
                    let hot = Arc::new(DynamoHotStore::new(&sdk, &table, 3650, 1));
                    if DynamoHotStore::create_table(hot.client(), &table)
                        .await
                        .is_ok()
                    {
                        fill(hot.as_ref(), events, 500).await?;
                    }
                    hot
                }
                other => bail!("--store must be sqlite or dynamodb, not {other}"),
            };
            let api = GraphqlServer::start(hot, |_| {}).await?;
            run_queries(&api, iterations).await
        }
        Mode::Freshness {
            url,
            token,
            rate,
            probes,
        } => freshness(&url, &token, rate, probes).await,
    }
}
