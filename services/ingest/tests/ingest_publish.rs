//! Every 202-accepted event is on the topic, byte-for-byte as accepted;
//! a stopped broker gives a bounded 503 and recovery resumes 202s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use event_common::event::Event;
use serde_json::{json, Value};
use test_support::harness::{ingest_with_broker, IngestServer, IngestSetup};
use test_support::kafka::{message_counts, read_topic};

/// Payloads written as raw text so that spacing, key order and escapes can be
/// compared byte-for-byte with what lands on the topic.
const PAYLOADS: &[&str] = &[
    r#"{"page": "/home",   "z": 1, "a": [1, 2.50, {"x": null}]}"#,
    r#"{"emoji":"héllo \u00e9 🚀","esc":"line\nbreak \"quoted\""}"#,
    r#"{}"#,
    r#"{"n": 1e3, "big": 12345678901234567890, "neg": -0.0}"#,
];

async fn post(server: &IngestServer, body: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/events", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request reaches ingest");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_accepted_event_is_on_the_topic_byte_for_byte() {
    let IngestSetup {
        broker,
        topic,
        server,
    } = ingest_with_broker(3, |_| {})
        .await
        .expect("broker, topic and ingest");
    let before = Utc::now();

    // (event_id, event_type, user_id, raw payload) of everything sent.
    let mut sent: HashMap<String, (String, String, &str)> = HashMap::new();
    for (i, payload) in PAYLOADS.iter().enumerate() {
        let body =
            format!(r#"{{"event_type":"single.{i}","user_id":"user-{i}","payload":{payload}}}"#);
        let (status, reply) = post(&server, body).await;
        assert_eq!(status, 202, "{reply}");
        let id = reply["event_ids"][0].as_str().expect("an id").to_string();
        sent.insert(id, (format!("single.{i}"), format!("user-{i}"), payload));
    }
    for b in 0..3 {
        let items: Vec<String> = (0..50)
            .map(|i| {
                let payload = PAYLOADS[i % PAYLOADS.len()];
                format!(
                    r#"{{"event_type":"batch.{b}","user_id":"u{}","properties":{payload}}}"#,
                    i % 7
                )
            })
            .collect();
        let (status, reply) = post(&server, format!(r#"{{"events":[{}]}}"#, items.join(","))).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["accepted"], 50);
        let ids = reply["event_ids"].as_array().expect("ids");
        for (i, id) in ids.iter().enumerate() {
            let payload = PAYLOADS[i % PAYLOADS.len()];
            sent.insert(
                id.as_str().expect("id").to_string(),
                (format!("batch.{b}"), format!("u{}", i % 7), payload),
            );
        }
    }
    // A client-chosen event_id is kept as the idempotency key.
    let client_id = "0190f1e2-5a4b-7c3d-8e9f-0a1b2c3d4e5f";
    let (status, reply) =
        post(&server, format!(r#"{{"event_id":"{client_id}","event_type":"own.id","user_id":"u-own","payload":{{"k":1}}}}"#)).await;
    assert_eq!(
        (status, reply["event_ids"][0].as_str()),
        (202, Some(client_id))
    );
    sent.insert(
        client_id.to_string(),
        ("own.id".into(), "u-own".into(), r#"{"k":1}"#),
    );
    let after = Utc::now();

    let records = read_topic(
        &broker.bootstrap_servers(),
        &topic,
        sent.len() + 1,
        Duration::from_secs(20),
    )
    .expect("read");
    assert_eq!(
        records.len(),
        sent.len(),
        "exactly the accepted events are on the topic"
    );
    for record in records {
        let event: Event = serde_json::from_slice(&record.value).expect("topic holds valid events");
        let (event_type, user_id, payload) = sent
            .remove(&event.event_id.to_string())
            .expect("event was accepted, once");
        assert_eq!(event.event_type, event_type);
        assert_eq!(event.user_id, user_id);
        assert_eq!(record.key, user_id.as_bytes(), "keyed by user_id");
        assert_eq!(
            event.payload.get(),
            payload,
            "payload byte-for-byte as sent"
        );
        assert!(event.received_at >= before && event.received_at <= after);
        assert_eq!(
            event.timestamp, event.received_at,
            "no client timestamp: received_at"
        );
        assert_eq!(
            serde_json::to_vec(&event).expect("encode"),
            record.value,
            "message is the canonical encoding"
        );
    }
    assert!(
        sent.is_empty(),
        "accepted but missing from the topic: {sent:?}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn stopped_broker_gives_bounded_503_and_recovery_resumes_202() {
    let IngestSetup {
        broker,
        topic,
        server,
    } = ingest_with_broker(1, |c| c.kafka_delivery_timeout_ms = 1_500)
        .await
        .expect("broker, topic and ingest");
    let event =
        |i: usize| format!(r#"{{"event_type":"outage","user_id":"u","payload":{{"i":{i}}}}}"#);
    assert_eq!(post(&server, event(0)).await.0, 202);

    broker.stop().await.expect("broker down");
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/events", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body(event(1))
        .send()
        .await
        .expect("ingest answers");
    let waited = started.elapsed();
    assert_eq!(response.status().as_u16(), 503);
    assert!(
        response.headers().get("retry-after").is_some(),
        "503 carries Retry-After"
    );
    assert!(
        waited < Duration::from_millis(1_500 + 1_500),
        "answered within the bound, took {waited:?}"
    );
    let ready = reqwest::get(format!("{}/health/ready", server.url))
        .await
        .expect("ready answers");
    assert_eq!(
        ready.status().as_u16(),
        503,
        "not ready while the broker is down"
    );

    broker.resume().await.expect("broker up");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut accepted_after = 0;
    while Instant::now() < deadline {
        if post(&server, event(2)).await.0 == 202 {
            accepted_after += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(accepted_after, 1, "202s resume after the broker comes back");
    let total: i64 = message_counts(&broker.bootstrap_servers(), &topic)
        .expect("counts")
        .values()
        .sum();
    // The 503'd event may or may not have reached the log (at-least-once is
    // the client's retry), but both 202'd events must be there.
    assert!(
        total >= 2,
        "both accepted events are on the topic, found {total}"
    );
    let records = read_topic(
        &broker.bootstrap_servers(),
        &topic,
        total as usize,
        Duration::from_secs(10),
    )
    .expect("read");
    let payloads: Vec<String> = records
        .iter()
        .filter_map(|r| serde_json::from_slice::<Event>(&r.value).ok())
        .map(|e| e.payload.get().to_string())
        .collect();
    assert!(
        payloads.contains(&json!({"i":0}).to_string())
            && payloads.contains(&json!({"i":2}).to_string()),
        "{payloads:?}"
    );
    server.stop().await.expect("clean stop");
}

/// A batch answered 503 names the event ids the server gave its events (the
/// broker may hold some of them already): a retry that sends them is
/// accepted with the same ids, so every record of those events on the
/// topic carries one of them and the processor's idempotent writes store
/// each event once.
#[tokio::test]
async fn a_503_names_the_generated_event_ids_so_a_retry_stores_each_event_once() {
    let IngestSetup {
        broker,
        topic,
        server,
    } = ingest_with_broker(1, |c| c.kafka_delivery_timeout_ms = 1_500)
        .await
        .expect("broker, topic and ingest");
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"event_type": "retry", "user_id": format!("u{i}"), "payload": {"i": i}}))
        .collect();
    broker.stop().await.expect("broker down");
    let (status, problem) = post(&server, json!({"events": events}).to_string()).await;
    assert_eq!(status, 503, "{problem}");
    let ids: Vec<String> = problem["event_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids.len(), events.len(), "{problem}");

    broker.resume().await.expect("broker up");
    let retried: Vec<Value> = events
        .iter()
        .zip(&ids)
        .map(|(event, id)| {
            let mut event = event.clone();
            event["event_id"] = json!(id);
            event
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let accepted = loop {
        let (status, body) = post(&server, json!({"events": retried}).to_string()).await;
        if status == 202 || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(accepted["event_ids"], json!(ids), "{accepted}");
    let total: i64 = message_counts(&broker.bootstrap_servers(), &topic)
        .expect("counts")
        .values()
        .sum();
    let records = read_topic(
        &broker.bootstrap_servers(),
        &topic,
        total as usize,
        Duration::from_secs(10),
    )
    .expect("read");
    let on_topic: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|r| serde_json::from_slice::<Event>(&r.value).ok())
        .map(|e| e.event_id.to_string())
        .collect();
    let sent: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(on_topic, sent, "{total} records");
    server.stop().await.expect("clean stop");
}
