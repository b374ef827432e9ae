//! The processor end to end, against a real broker and the AWS emulator:
//! events accepted by ingest land exactly once in DynamoDB and S3 with exact
//! rollups; a replay of the whole topic changes nothing; poison messages go
//! to the dead-letter topic; store faults (injected) cost only a delay.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use event_common::event::Event;
use event_store::aws::{self, AwsSettings};
use event_store::cold::{parquet, ColdStore};
use event_store::hot::{EventFilter, HotStore};
use processor::{ProcessorConfig, Stores};
use serde_json::Value;
use test_support::backend::{AwsEmulator, Broker};
use test_support::fault::{Fault, FaultLayer};
use test_support::harness::{accepted, IngestServer, ProcessorServer, ProcessorTopics};
use test_support::kafka::{message_counts, read_topic, reset_group};
use test_support::stores::{
    all_pages, at, day, dynamodb_store_with, event, s3_store_with, Analytics,
};

const TYPES: &[&str] = &["signup", "page_view", "click", "purchase"];

fn config(broker: &Broker, t: &ProcessorTopics) -> ProcessorConfig {
    let mut c = ProcessorConfig::for_dev(&broker.bootstrap_servers(), &t.events, &t.dlq, &t.group);
    c.batch_max_events = 100;
    c.batch_flush_interval_ms = 100;
    c
}

/// The events of the test, as clients send them: spread over 6 days, 4 types, 25 users.
fn client_events(n: usize) -> Vec<Value> {
    let start = at("2024-05-06T08:00:00Z");
    (0..n)
        .map(|i| {
            let ts: DateTime<Utc> =
                start + chrono::Duration::minutes(((i * 4099) % (6 * 24 * 60)) as i64);
            serde_json::json!({
                "event_type": TYPES[i % TYPES.len()],
                "user_id": format!("user-{}", (i * 7) % 25),
                "timestamp": ts.to_rfc3339(),
                "payload": {"i": i},
            })
        })
        .collect()
}

/// Sends `events` through ingest (singles, then batches of 50) and returns
/// them as the processor will see them (with the ids ingest gave back).
async fn send(server: &IngestServer, events: &[Value]) -> Vec<Event> {
    let client = reqwest::Client::new();
    let mut all = Vec::new();
    let (singles, rest) = events.split_at(events.len().min(20));
    let mut requests: Vec<Vec<Value>> = singles.iter().map(|e| vec![e.clone()]).collect();
    requests.extend(rest.chunks(50).map(<[Value]>::to_vec));
    for request in requests {
        let body = if request.len() == 1 {
            request[0].clone()
        } else {
            serde_json::json!({ "events": request })
        };
        let response = client
            .post(format!("{}/events", server.url))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
            .await
            .expect("ingest answers");
        assert_eq!(response.status(), 202);
        let reply: Value = response.json().await.expect("json");
        all.extend(accepted(&request, &reply));
    }
    all
}

/// Event ids in every archive object (with repeats, if any object repeats one).
async fn archived_ids(cold: &dyn ColdStore) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for key in cold.list("raw/").await.expect("list") {
        assert!(
            key.starts_with("raw/dt=2024-05-") && key.contains("/hour="),
            "partitioned key: {key}"
        );
        ids.extend(parquet::event_ids(cold.get(&key).await.expect("get")).expect("parquet"));
    }
    ids
}

async fn assert_stored_exactly(hot: &Arc<dyn HotStore>, cold: &dyn ColdStore, events: &[Event]) {
    let stored = all_pages(hot, &EventFilter::default(), 500)
        .await
        .expect("pages");
    let stored_ids: BTreeSet<_> = stored.iter().map(|e| e.event_id).collect();
    let sent_ids: BTreeSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        stored.len(),
        events.len(),
        "one hot item per accepted event"
    );
    assert_eq!(stored_ids, sent_ids);
    let expected = Analytics::expected(events);
    let actual = Analytics::read(hot.as_ref(), day("2024-05-01"), day("2024-05-20"), TYPES)
        .await
        .expect("analytics");
    assert_eq!(
        actual, expected,
        "rollups equal the values recomputed from the events"
    );
    let archived = archived_ids(cold).await;
    assert_eq!(
        archived.iter().collect::<BTreeSet<_>>(),
        sent_ids.iter().collect::<BTreeSet<_>>(),
        "every event archived"
    );
    assert_eq!(archived.len(), events.len(), "no event archived twice");
}

#[tokio::test]
async fn ingested_events_land_once_in_dynamodb_and_s3_and_a_replay_changes_nothing() {
    let broker = Broker::start().await.expect("broker");
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let t = ProcessorTopics::create(&broker, 3).await.expect("topics");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let hot: Arc<dyn HotStore> = Arc::new(dynamodb_store_with(&sdk, 2).await.expect("table"));
    let cold = Arc::new(s3_store_with(&sdk).await.expect("bucket"));
    let stores = Stores {
        hot: hot.clone(),
        cold: cold.clone(),
    };
    let ingest = IngestServer::start(&broker.bootstrap_servers(), &t.events, |_| {})
        .await
        .expect("ingest");

    let processor = ProcessorServer::start(config(&broker, &t), stores.clone()).expect("processor");
    let events = send(&ingest, &client_events(420)).await;
    processor
        .drain(Duration::from_secs(60))
        .await
        .expect("caught up");
    assert_stored_exactly(&hot, cold.as_ref(), &events).await;
    let objects_before = cold.list("raw/").await.expect("list");

    // Replay: the same group from the beginning of the topic.
    reset_group(&broker.bootstrap_servers(), &t.group, &t.events)
        .await
        .expect("reset offsets");
    let processor = ProcessorServer::start(config(&broker, &t), stores).expect("processor");
    processor
        .drain(Duration::from_secs(60))
        .await
        .expect("caught up again");
    assert_stored_exactly(&hot, cold.as_ref(), &events).await;
    assert_eq!(
        cold.list("raw/").await.expect("list"),
        objects_before,
        "replay rewrote the same objects"
    );
    let dead: i64 = message_counts(&broker.bootstrap_servers(), &t.dlq)
        .expect("dlq")
        .values()
        .sum();
    assert_eq!(dead, 0);
}

#[tokio::test]
async fn a_new_broker_with_the_same_topics_is_not_taken_for_a_replay() {
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let hot: Arc<dyn HotStore> = Arc::new(dynamodb_store_with(&sdk, 1).await.expect("table"));
    let cold = Arc::new(s3_store_with(&sdk).await.expect("bucket"));
    let stores = Stores {
        hot: hot.clone(),
        cold: cold.clone(),
    };
    let first = Broker::start().await.expect("broker");
    let t = ProcessorTopics::create(&first, 2).await.expect("topics");
    let mut events = Vec::new();
    // The second broker replaces the first (a new instance: offsets from 0
    // again), with the same topic names, and the same stores.
    for (round, broker) in [first, Broker::start().await.expect("new broker")]
        .iter()
        .enumerate()
    {
        if round > 0 {
            broker.create_topic(&t.events, 2).await.expect("topic");
            broker.create_topic(&t.dlq, 1).await.expect("dlq");
        }
        let ingest = IngestServer::start(&broker.bootstrap_servers(), &t.events, |_| {})
            .await
            .expect("ingest");
        let processor =
            ProcessorServer::start(config(broker, &t), stores.clone()).expect("processor");
        let sent = client_events(300 * (round + 1));
        events.extend(send(&ingest, &sent[300 * round..]).await);
        processor
            .drain(Duration::from_secs(60))
            .await
            .expect("caught up");
        ingest.stop().await.expect("ingest stops");
    }
    assert_eq!(events.len(), 600);
    let counted: i64 = Analytics::read(hot.as_ref(), day("2024-05-01"), day("2024-05-20"), TYPES)
        .await
        .expect("analytics")
        .daily_types
        .values()
        .sum();
    assert_eq!(counted, 600, "every event counted");
    assert_stored_exactly(&hot, cold.as_ref(), &events).await;
}

#[tokio::test]
async fn poison_messages_go_to_the_dlq_with_headers_and_good_ones_are_stored() {
    let broker = Broker::start().await.expect("broker");
    let t = ProcessorTopics::create(&broker, 3).await.expect("topics");
    let (hot, _dir) = test_support::stores::sqlite_store().expect("sqlite");
    let archive = tempfile::tempdir().expect("dir");
    let hot: Arc<dyn HotStore> = Arc::new(hot);
    let cold =
        Arc::new(event_store::cold::local::LocalColdStore::new(archive.path()).expect("archive"));
    let good: Vec<Event> = (0..6)
        .map(|i| {
            event(
                "click",
                "u1",
                at("2024-05-06T10:00:00Z") + chrono::Duration::minutes(i),
                i as usize,
            )
        })
        .collect();
    let too_long = {
        let mut e = good[0].clone();
        e.event_id = uuid::Uuid::new_v4();
        e.event_type = "x".repeat(200);
        e
    };
    // A date no store or reader can represent (a negative year), as a
    // producer other than ingest could write it.
    let ancient = {
        let mut e = good[0].clone();
        e.event_id = uuid::Uuid::new_v4();
        e.timestamp = chrono::DateTime::from_timestamp(-220_000_000_000, 0).expect("5000 BC");
        e
    };
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (b"\xff\xfenot json".to_vec(), "decode"),
        (br#"{"event_type":"click"}"#.to_vec(), "decode"),
        (serde_json::to_vec(&too_long).expect("encode"), "contract"),
        (serde_json::to_vec(&ancient).expect("encode"), "contract"),
    ];
    // Good and bad interleaved on one partition (same key).
    let mut records = Vec::new();
    for (i, e) in good.iter().enumerate() {
        records.push((serde_json::to_vec(e).expect("encode"), None));
        if let Some((bad, kind)) = poison.get(i) {
            records.push((bad.clone(), Some(*kind)));
        }
    }
    let landed = broker
        .produce(
            &t.events,
            records
                .iter()
                .map(|(payload, _)| ("u1".to_string(), payload.clone())),
        )
        .await
        .expect("sent");
    let sent_bad: Vec<_> = records
        .into_iter()
        .zip(landed)
        .filter_map(|((payload, kind), (partition, offset))| {
            kind.map(|kind| (payload, kind, partition, offset))
        })
        .collect();
    let processor = ProcessorServer::start(
        config(&broker, &t),
        Stores {
            hot: hot.clone(),
            cold: cold.clone(),
        },
    )
    .expect("processor");
    processor
        .drain(Duration::from_secs(30))
        .await
        .expect("caught up");

    let dead = read_topic(
        &broker.bootstrap_servers(),
        &t.dlq,
        sent_bad.len(),
        Duration::from_secs(10),
    )
    .expect("dlq");
    assert_eq!(dead.len(), sent_bad.len());
    for ((bad, kind, partition, offset), record) in sent_bad.iter().zip(&dead) {
        let headers = &record.headers;
        assert_eq!(&record.value, bad, "the original bytes");
        assert_eq!(headers["dlq.error.kind"], *kind);
        assert!(!headers["dlq.error"].is_empty());
        assert_eq!(headers["dlq.original.topic"], t.events);
        assert_eq!(headers["dlq.original.partition"], partition.to_string());
        assert_eq!(headers["dlq.original.offset"], offset.to_string());
    }
    for e in &good {
        assert!(
            hot.event(e.event_id).await.expect("read").is_some(),
            "good event stored"
        );
    }
    assert_eq!(
        Analytics::read(
            hot.as_ref(),
            day("2024-05-01"),
            day("2024-05-20"),
            &["click"]
        )
        .await
        .expect("read"),
        Analytics::expected(&good)
    );
}

#[tokio::test]
async fn injected_store_throttling_and_outage_cost_a_delay_not_data() {
    let broker = Broker::start().await.expect("broker");
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let t = ProcessorTopics::create(&broker, 3).await.expect("topics");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let (faulty, faults) = FaultLayer::wrap(&sdk);
    let hot: Arc<dyn HotStore> = Arc::new(dynamodb_store_with(&faulty, 1).await.expect("table"));
    let cold = Arc::new(s3_store_with(&faulty).await.expect("bucket"));
    let ingest = IngestServer::start(&broker.bootstrap_servers(), &t.events, |_| {})
        .await
        .expect("ingest");
    // More faults than the SDK's own retries absorb, so the processor backs off too.
    faults.inject("TransactWriteItems", Fault::throttling(), 8);
    faults.inject("BatchWriteItem", Fault::throttling(), 6);
    faults.inject("GetItem", Fault::Unreachable, 6);
    faults.inject("PUT", Fault::Unreachable, 5);
    let mut config = config(&broker, &t);
    config.store_backoff_max_ms = 300;
    let processor = ProcessorServer::start(
        config,
        Stores {
            hot: hot.clone(),
            cold: cold.clone(),
        },
    )
    .expect("processor");
    let events = send(&ingest, &client_events(300)).await;
    processor
        .drain(Duration::from_secs(90))
        .await
        .expect("caught up");
    assert_eq!(faults.injected("TransactWriteItems"), 8);
    assert_eq!(faults.injected("BatchWriteItem"), 6);
    assert_eq!(faults.injected("GetItem"), 6);
    assert_eq!(faults.injected("PUT"), 5, "S3 PutObject outage");
    assert_stored_exactly(&hot, cold.as_ref(), &events).await;
    let dead: i64 = message_counts(&broker.bootstrap_servers(), &t.dlq)
        .expect("dlq")
        .values()
        .sum();
    assert_eq!(dead, 0, "a failing store is not a poison message");
}

/// A write the task role does not allow (the fault layer answers
/// AccessDeniedException, as DynamoDB does) is not taken for a passing
/// outage: the processor reports unready naming the denied call, commits
/// nothing, and once the permission is there it stores everything.
#[tokio::test]
async fn fault_layer_a_denied_write_makes_the_processor_unready_and_commits_nothing() {
    let broker = Broker::start().await.expect("broker");
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let t = ProcessorTopics::create(&broker, 1).await.expect("topics");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let (faulty, faults) = FaultLayer::wrap(&sdk);
    let hot: Arc<dyn HotStore> = Arc::new(dynamodb_store_with(&faulty, 1).await.expect("table"));
    let cold = Arc::new(s3_store_with(&sdk).await.expect("bucket"));
    let ingest = IngestServer::start(&broker.bootstrap_servers(), &t.events, |_| {})
        .await
        .expect("ingest");
    let events = send(&ingest, &client_events(30)).await;
    let denied = "User: arn:aws:sts::123456789012:assumed-role/ep-processor/task is not authorized to perform: dynamodb:BatchWriteItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/events because no identity-based policy allows the dynamodb:BatchWriteItem action";
    faults.inject(
        "BatchWriteItem",
        Fault::Error {
            status: 400,
            code: "AccessDeniedException".into(),
            message: denied.into(),
        },
        u32::MAX,
    );
    let mut c = config(&broker, &t);
    c.store_backoff_max_ms = 200;
    let processor = ProcessorServer::start(
        c,
        Stores {
            hot: hot.clone(),
            cold: cold.clone(),
        },
    )
    .expect("processor");
    let reason = processor
        .unready_with("denied", Duration::from_secs(30))
        .await
        .expect("unready");
    assert!(reason.contains("dynamodb:BatchWriteItem"), "{reason}");
    let committed = processor.committed().expect("offsets");
    assert!(
        committed.values().all(|o| *o == 0),
        "committed past a denied write: {committed:?}"
    );

    // The permission arrives: the next attempt stores everything.
    faults.clear_faults();
    test_support::kafka::wait_until_caught_up(
        &broker.bootstrap_servers(),
        &t.group,
        &t.events,
        Duration::from_secs(30),
    )
    .await
    .expect("caught up");
    assert!(processor.health.ready().await.is_ok(), "still unready");
    processor.stop().await.expect("stopped");
    assert_stored_exactly(&hot, cold.as_ref(), &events).await;
}

/// A dead-letter topic the broker refuses (here: an injected authorization
/// failure) holds the batch with the bad message back, visibly: the
/// processor turns unready naming the DLQ and commits nothing past it; once
/// the broker accepts again, everything is written and committed.
#[tokio::test]
async fn broker_injected_a_refused_dead_letter_topic_makes_the_processor_unready_not_stalled() {
    let broker = Broker::start().await.expect("broker");
    let t = ProcessorTopics::create(&broker, 1).await.expect("topics");
    let (hot, _db) = test_support::stores::sqlite_store().expect("sqlite");
    let archive = tempfile::tempdir().expect("dir");
    let hot: Arc<dyn HotStore> = Arc::new(hot);
    let cold =
        Arc::new(event_store::cold::local::LocalColdStore::new(archive.path()).expect("archive"));
    let good: Vec<Event> = (0..4)
        .map(|i| event("click", "u1", at("2024-05-06T10:00:00Z"), i))
        .collect();
    let mut payloads: Vec<Vec<u8>> = good
        .iter()
        .map(|e| serde_json::to_vec(e).expect("encode"))
        .collect();
    payloads.insert(2, b"not an event".to_vec());
    broker
        .produce(
            &t.events,
            payloads.into_iter().map(|p| ("u1".to_string(), p)),
        )
        .await
        .expect("sent");
    broker
        .inject_topic_error(
            &t.dlq,
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("inject");
    let mut c = config(&broker, &t);
    c.store_backoff_max_ms = 200;
    let processor = ProcessorServer::start(
        c,
        Stores {
            hot: hot.clone(),
            cold: cold.clone(),
        },
    )
    .expect("processor");
    let reason = processor
        .unready_with("dlq", Duration::from_secs(30))
        .await
        .expect("unready");
    assert!(reason.contains("nothing committed"), "{reason}");
    let committed = processor.committed().expect("offsets");
    assert!(
        committed.values().all(|o| *o == 0),
        "committed past an unwritten dead letter: {committed:?}"
    );

    broker
        .inject_topic_error(
            &t.dlq,
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
        )
        .expect("lift");
    test_support::kafka::wait_until_caught_up(
        &broker.bootstrap_servers(),
        &t.group,
        &t.events,
        Duration::from_secs(60),
    )
    .await
    .expect("caught up");
    assert!(processor.health.ready().await.is_ok(), "still unready");
    processor.stop().await.expect("stopped");
    let dead = read_topic(
        &broker.bootstrap_servers(),
        &t.dlq,
        1,
        Duration::from_secs(10),
    )
    .expect("dlq");
    assert_eq!(dead.len(), 1);
    let stored = all_pages(&hot, &EventFilter::default(), 100)
        .await
        .expect("pages");
    assert_eq!(stored.len(), good.len());
}

/// A member whose store fails while another joins may be dropped from the
/// group, and the other writes its partitions with batches of its own
/// boundaries. When the first member's store answers again, it must not
/// write the batch it was retrying (before the ownership check: 220
/// archived copies of 160 events). The fault layer injects the store
/// failure; the group and its rebalance are the broker's.
#[tokio::test]
async fn fault_layer_a_member_dropped_from_the_group_while_retrying_does_not_write_its_batch() {
    let broker = Broker::start().await.expect("broker");
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let t = ProcessorTopics::create(&broker, 2).await.expect("topics");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let (faulty, faults) = FaultLayer::wrap(&sdk);
    let table = dynamodb_store_with(&sdk, 1).await.expect("table");
    let table_name = table.table().to_string();
    let hot: Arc<dyn HotStore> = Arc::new(table);
    let cold = Arc::new(s3_store_with(&sdk).await.expect("bucket"));
    let ingest = IngestServer::start(&broker.bootstrap_servers(), &t.events, |_| {})
        .await
        .expect("ingest");
    let sent = client_events(160);
    let mut events = send(&ingest, &sent[..60]).await;
    faults.inject(
        "TransactWriteItems",
        Fault::Error {
            status: 500,
            code: "InternalServerError".into(),
            message: "injected".into(),
        },
        u32::MAX,
    );
    let mut c = config(&broker, &t);
    c.store_backoff_max_ms = 200;
    c.kafka_max_poll_interval_ms = 8_000;
    let failing = ProcessorServer::start(
        c.clone(),
        Stores {
            hot: Arc::new(event_store::hot::dynamodb::DynamoHotStore::new(
                &faulty,
                &table_name,
                30,
                1,
            )),
            cold: cold.clone(),
        },
    )
    .expect("processor");
    failing
        .unready_with("failing", Duration::from_secs(30))
        .await
        .expect("unready");
    // More events while the first member holds its batches: the second
    // member's batches will have other boundaries.
    events.extend(send(&ingest, &sent[60..]).await);
    // The second member joins. The first, busy retrying, either leaves the
    // group at its poll interval (8 s), and the second takes its partitions
    // with batches of its own boundaries, or notices the rebalance at its
    // ownership check, gives its batch up and rejoins.
    let second = ProcessorServer::start(
        c,
        Stores {
            hot: hot.clone(),
            cold: cold.clone(),
        },
    )
    .expect("second processor");
    tokio::time::sleep(Duration::from_secs(12)).await;

    // The first member's store answers again: whatever it still held is
    // written once, by whoever owns it now.
    faults.clear_faults();
    test_support::kafka::wait_until_caught_up(
        &broker.bootstrap_servers(),
        &t.group,
        &t.events,
        Duration::from_secs(60),
    )
    .await
    .expect("caught up");
    failing.stop().await.expect("stopped");
    second.stop().await.expect("second stops");
    assert_stored_exactly(&hot, cold.as_ref(), &events).await;
}
