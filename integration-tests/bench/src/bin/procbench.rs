//! `procbench`: processor throughput. Fills a topic on an in-process
//! Kafka-protocol broker (loopback) with events, runs the real `processor`
//! binary against the embedded stores or DynamoDB and S3 on an emulator,
//! and reports events/s until the group has committed everything, DynamoDB
//! write requests per event (from the processor's own `/metrics`) and the
//! processor's peak RSS.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::loopback_target;
use chrono::{TimeZone, Utc};
use clap::Parser;
use event_store::aws::{self, AwsSettings};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use test_support::kafka::{committed_offsets, wait_until_caught_up};
use test_support::stores::{dynamodb_store_with, event, s3_store_with};
use test_support::{free_port, unique_name};

/// Processor benchmark (loopback only).
#[derive(Debug, Parser)]
struct Args {
    /// Path of the processor binary (build it with --release).
    #[arg(long, default_value = "target/release/processor")]
    processor_bin: String,
    /// `sqlite` (with a directory archive) or `dynamodb` (with S3), on `--aws-endpoint`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// The AWS emulator's URL, for `--store dynamodb`; must be loopback.
    #[arg(long)]
    aws_endpoint: Option<String>,
    /// Events to process.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Distinct event types.
    #[arg(long, default_value_t = 10)]
    types: usize,
    /// Distinct users.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// The processor's BATCH_MAX_EVENTS.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let broker = rdkafka::mocking::MockCluster::new(1)?;
    let (topic, dlq, group) = (
        unique_name("events"),
        unique_name("dlq"),
        unique_name("bench"),
    );
    broker.create_topic(&topic, args.partitions, 1)?;
    broker.create_topic(&dlq, 1, 1)?;
    let bootstrap = broker.bootstrap_servers();

    println!(
        "procbench: filling {topic} with {} events ({} types, {} users)",
        args.events, args.types, args.users
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()?;
    let day = Utc
        .with_ymd_and_hms(2024, 9, 2, 0, 0, 0)
        .single()
        .context("date")?;
    for chunk in (0..args.events).collect::<Vec<_>>().chunks(10_000) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for &n in chunk {
            let e = event(
                &format!("type_{}", n % args.types),
                &format!("user-{}", n % args.users),
                day + chrono::Duration::seconds((n % 86_400) as i64),
                n,
            );
            let value = serde_json::to_vec(&e)?;
            deliveries.push(
                producer
                    .send_result(FutureRecord::to(&topic).key(&e.user_id).payload(&value))
                    .map_err(|(e, _)| e)?,
            );
        }
        for d in deliveries {
            d.await?.map_err(|(e, _)| e)?;
        }
    }

    let data = tempfile::tempdir()?;
    let mut env: Vec<(&str, String)> = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()),
        ("KAFKA_TOPIC", topic.clone()),
        ("KAFKA_DLQ_TOPIC", dlq.clone()),
        ("KAFKA_CONSUMER_GROUP", group.clone()),
        ("BATCH_MAX_EVENTS", args.batch.to_string()),
        ("RUST_LOG", "warn".into()),
    ];
    match args.store.as_str() {
        "sqlite" => env.extend([
            ("HOT_STORE", "sqlite".to_string()),
            (
                "SQLITE_PATH",
                data.path().join("hot.sqlite3").display().to_string(),
            ),
            ("COLD_STORE", "directory".to_string()),
            ("COLD_STORE_DIR", data.path().display().to_string()),
        ]),
        "dynamodb" => {
            let endpoint = args
                .aws_endpoint
                .clone()
                .context("--store dynamodb needs --aws-endpoint")?;
            loopback_target(&endpoint)?;
            let sdk = aws::sdk_config(&AwsSettings::emulator(&endpoint)).await;
            let table = dynamodb_store_with(&sdk, 1).await?;
            let bucket = s3_store_with(&sdk).await?;
            env.extend([
                ("DYNAMODB_TABLE", table.table().to_string()),
                ("S3_BUCKET", bucket.bucket().to_string()),
                ("AWS_ENDPOINT_URL", endpoint),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_REGION", "us-east-1".into()),
            ]);
        }
        other => bail!("--store must be sqlite or dynamodb, not {other}"),
    }
    let metrics_port = free_port()?;
    let started = Instant::now();
    let mut child = Command::new(&args.processor_bin)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("METRICS_PORT", metrics_port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.processor_bin))?;
    let pid = child.id();
    // The first commit ends start-up and the group join; the steady rate
    // is what was committed after it over the time after it.
    let (first_commit, committed_then) = loop {
        let committed: i64 = committed_offsets(&bootstrap, &group, &topic)
            .map(|c| c.values().sum())
            .unwrap_or(0);
        if committed > 0 {
            break (Instant::now(), committed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let caught_up =
        wait_until_caught_up(&bootstrap, &group, &topic, Duration::from_secs(3_600)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let steady = first_commit.elapsed().as_secs_f64();
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await?
        .text()
        .await?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    caught_up?;

    let sum = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l.len() == name.len() || l[name.len()..].starts_with(['{', ' ']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let stored = sum("consumer_messages_processed_total");
    let writes = sum("dynamodb_write_requests_total");
    println!("store:            {}", args.store);
    println!(
        "events:           {} processed in {elapsed:.1} s (includes group join)",
        stored
    );
    println!(
        "throughput:       {:.0} events/s (from the start); {:.0} events/s after the first commit",
        args.events as f64 / elapsed,
        (args.events as f64 - committed_then as f64) / steady
    );
    if args.store == "dynamodb" {
        println!(
            "dynamodb writes:  {writes} requests, {:.4} per event",
            writes / args.events as f64
        );
    }
    for line in status.lines().filter(|l| l.starts_with("VmHWM")) {
        println!("processor {line}");
    }
    Ok(())
}
