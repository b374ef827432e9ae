//! The `processor` binary under signals:
//! - killed with SIGKILL at least three times while events flow, and
//!   restarted each time, the stores end exactly as without crashes (one
//!   item per event, exact rollups, every event archived once);
//! - sent SIGTERM while its store keeps failing, it stops retrying and exits
//!   well within ECS's 30 s stop timeout, committing nothing unwritten.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_store::aws::{self, AwsSettings};
use event_store::cold::{parquet, ColdStore};
use event_store::hot::{EventFilter, HotStore};
use integration_tests::backend::{AwsEmulator, Broker};
use integration_tests::free_port;
use integration_tests::harness::{accepted, IngestServer, ProcessorTopics};
use integration_tests::kafka::{committed_offsets, wait_until_caught_up};
use integration_tests::stores::{
    all_pages, at, day, dynamodb_store_with, s3_store_with, Analytics,
};

const TYPES: &[&str] = &["a", "b", "c"];

/// A processor child process, killed if the test ends first.
struct ProcessorProcess(Child);

impl Drop for ProcessorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn committed_total(bootstrap: &str, group: &str, topic: &str) -> i64 {
    let (b, g, t) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        committed_offsets(&b, &g, &t)
            .map(|c| c.values().sum())
            .unwrap_or(0)
    })
    .await
    .unwrap_or(0)
}

fn spawn_processor(env: &[(&str, String)]) -> ProcessorProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_processor"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("METRICS_PORT", free_port().expect("port").to_string())
        .env(
            "RUST_LOG",
            std::env::var("CRASH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("processor starts");
    ProcessorProcess(child)
}

#[tokio::test]
async fn sigkilled_processor_converges_to_the_same_exact_result() {
    let broker = Broker::start().await.expect("broker");
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let ProcessorTopics {
        events: topic,
        dlq,
        group,
    } = ProcessorTopics::create(&broker, 3).await.expect("topics");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let dynamo = dynamodb_store_with(&sdk, 1).await.expect("table");
    let s3 = s3_store_with(&sdk).await.expect("bucket");
    let table = dynamo.table().to_string();
    let bucket = s3.bucket().to_string();
    let hot: Arc<dyn HotStore> = Arc::new(dynamo);
    let ingest = IngestServer::start(&broker.bootstrap_servers(), &topic, |_| {})
        .await
        .expect("ingest");
    let env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers()),
        ("KAFKA_TOPIC", topic.clone()),
        ("KAFKA_DLQ_TOPIC", dlq.clone()),
        ("KAFKA_CONSUMER_GROUP", group.clone()),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
        ("DYNAMODB_TABLE", table),
        ("S3_BUCKET", bucket),
        ("AWS_ENDPOINT_URL", emulator.endpoint().to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("BATCH_MAX_EVENTS", "40".into()),
        ("BATCH_FLUSH_INTERVAL_MS", "100".into()),
        ("STORE_BACKOFF_MAX_MS", "500".into()),
    ];

    // Events flow in the background while the processor is killed and restarted.
    let (url, token) = (ingest.url.clone(), ingest.token.clone());
    let sender = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let start = at("2024-07-01T00:00:00Z");
        let mut sent = Vec::new();
        for round in 0..24 {
            let batch: Vec<serde_json::Value> = (0..25)
                .map(|i| {
                    let n = round * 25 + i;
                    serde_json::json!({
                        "event_type": TYPES[n % 3],
                        "user_id": format!("u{}", (n * 7) % 31),
                        "timestamp": (start + chrono::Duration::minutes((n * 37 % 4000) as i64)).to_rfc3339(),
                        "payload": {"n": n},
                    })
                })
                .collect();
            let reply: serde_json::Value = client
                .post(format!("{url}/events"))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "events": batch }))
                .send()
                .await
                .expect("ingest answers")
                .json()
                .await
                .expect("json");
            sent.extend(accepted(&batch, &reply));
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        sent
    });

    // Each processor is killed at a different point after it has committed
    // something, so every kill lands mid-stream (between or inside writes).
    let mut kills = 0;
    for delay_ms in [0, 170, 340, 90] {
        let before = committed_total(&broker.bootstrap_servers(), &group, &topic).await;
        let mut child = spawn_processor(&env);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while committed_total(&broker.bootstrap_servers(), &group, &topic).await <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "processor made no progress"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("reaped");
        kills += 1;
    }
    let events = sender.await.expect("sender");
    let mut last = spawn_processor(&env);
    wait_until_caught_up(
        &broker.bootstrap_servers(),
        &group,
        &topic,
        Duration::from_secs(240),
    )
    .await
    .expect("caught up");
    let _ = Command::new("kill")
        .args(["-TERM", &last.0.id().to_string()])
        .status();
    let status = last.0.wait().expect("exits");
    assert!(status.success(), "clean exit on SIGTERM");
    assert!(kills >= 3);

    let stored = all_pages(&hot, &EventFilter::default(), 500)
        .await
        .expect("pages");
    assert_eq!(
        stored.len(),
        events.len(),
        "one hot item per accepted event"
    );
    let sent_ids: BTreeSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        stored.iter().map(|e| e.event_id).collect::<BTreeSet<_>>(),
        sent_ids
    );
    let expected = Analytics::expected(&events);
    let actual = Analytics::read(hot.as_ref(), day("2024-06-24"), day("2024-07-10"), TYPES)
        .await
        .expect("read");
    assert_eq!(actual, expected, "rollups exact after crashes");
    let mut archived = Vec::new();
    for key in s3.list("raw/").await.expect("list") {
        archived.extend(parquet::event_ids(s3.get(&key).await.expect("get")).expect("parquet"));
    }
    assert_eq!(
        archived.iter().collect::<BTreeSet<_>>(),
        sent_ids.iter().collect::<BTreeSet<_>>(),
        "every event archived"
    );
    assert_eq!(archived.len(), events.len(), "no event archived twice");
}

#[tokio::test]
async fn sigterm_while_the_store_keeps_failing_exits_within_10_s_committing_nothing() {
    let broker = Broker::start().await.expect("broker");
    let ProcessorTopics {
        events: topic,
        dlq,
        group,
    } = ProcessorTopics::create(&broker, 2).await.expect("topics");
    let ingest = IngestServer::start(&broker.bootstrap_servers(), &topic, |_| {})
        .await
        .expect("ingest");
    let batch: Vec<serde_json::Value> = (0..20)
        .map(|n| serde_json::json!({"event_type": "a", "user_id": format!("u{n}"), "payload": {}}))
        .collect();
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/events", ingest.url))
        .bearer_auth(&ingest.token)
        .json(&serde_json::json!({ "events": batch }))
        .send()
        .await
        .expect("ingest answers")
        .json()
        .await
        .expect("json");
    assert_eq!(reply["accepted"], 20, "{reply}");

    // Nothing listens on this port: every store call fails at once, and the
    // processor backs off up to the default 30 s between attempts.
    let dead_store = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers()),
        ("KAFKA_TOPIC", topic.clone()),
        ("KAFKA_DLQ_TOPIC", dlq),
        ("KAFKA_CONSUMER_GROUP", group.clone()),
        ("DYNAMODB_TABLE", "missing".into()),
        ("S3_BUCKET", "missing".into()),
        ("AWS_ENDPOINT_URL", dead_store),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("BATCH_FLUSH_INTERVAL_MS", "100".into()),
    ];
    let mut child = spawn_processor(&env);
    // Long enough to be deep in its backoff (several failed attempts).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        child.0.try_wait().expect("status").is_none(),
        "still running"
    );
    let signalled = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let exited = loop {
        if let Some(status) = child.0.try_wait().expect("status") {
            break Some(status);
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM");
    let status = exited.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM"));
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM"
    );
    assert!(status.success(), "clean exit: {status}");
    assert_eq!(
        committed_total(&broker.bootstrap_servers(), &group, &topic).await,
        0,
        "nothing committed"
    );
}
