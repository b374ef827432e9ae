//! Every GraphQL query against a crafted dataset whose answers are written
//! here by hand: the events go through `ingest` and a real broker, the
//! `processor` stores them, and `graphql` reads them back, once over the
//! embedded store (SQLite) and once over DynamoDB on the AWS emulator.

use std::sync::Arc;
use std::time::Duration;

use event_store::aws::{self, AwsSettings};
use event_store::cold::local::LocalColdStore;
use event_store::hot::HotStore;
use processor::{ProcessorConfig, Stores};
use serde_json::{json, Value};
use test_support::backend::{AwsEmulator, Broker};
use test_support::harness::{GraphqlServer, IngestServer, ProcessorServer, ProcessorTopics};
use test_support::stores::{dynamodb_store_with, sqlite_store};

/// The id of crafted event `n`.
fn id(n: u32) -> String {
    format!("0195f000-0000-7000-8000-{n:012}")
}

/// The dataset: (n, timestamp, type, user). Days: Mon 2026-03-02 to Tue
/// 2026-03-10. alice and bob are first seen on the 2nd, carol on the 3rd,
/// dave on the 10th (the next ISO week).
const EVENTS: &[(u32, &str, &str, &str)] = &[
    (1, "2026-03-02T09:15:00Z", "page_view", "alice"),
    (2, "2026-03-02T09:40:00Z", "click", "alice"),
    (3, "2026-03-02T10:05:00Z", "page_view", "bob"),
    (4, "2026-03-02T23:59:59Z", "purchase", "bob"),
    (5, "2026-03-03T00:00:00Z", "page_view", "alice"),
    (6, "2026-03-03T12:30:00Z", "page_view", "carol"),
    (7, "2026-03-03T12:45:00Z", "click", "carol"),
    (8, "2026-03-04T08:00:00Z", "page_view", "bob"),
    (9, "2026-03-04T08:10:00Z", "purchase", "bob"),
    (10, "2026-03-10T15:00:00Z", "page_view", "alice"),
    (11, "2026-03-10T15:20:00Z", "page_view", "dave"),
    (12, "2026-03-10T16:00:00Z", "click", "dave"),
];

fn client_event(n: u32, timestamp: &str, event_type: &str, user: &str) -> Value {
    json!({
        "event_id": id(n),
        "event_type": event_type,
        "user_id": user,
        "timestamp": timestamp,
        "payload": {"n": n, "tags": ["crafted"]},
    })
}

/// Sends the dataset through ingest: one batch, then event 6 again (a
/// client retry, which must count once).
async fn send_dataset(ingest: &IngestServer) {
    let client = reqwest::Client::new();
    let batch: Vec<Value> = EVENTS
        .iter()
        .map(|&(n, ts, t, u)| client_event(n, ts, t, u))
        .collect();
    let (_, ts, t, u) = EVENTS[5];
    for body in [json!({ "events": batch }), client_event(6, ts, t, u)] {
        let response = client
            .post(format!("{}/events", ingest.url))
            .bearer_auth(&ingest.token)
            .json(&body)
            .send()
            .await
            .expect("ingest answers");
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
    }
}

/// Runs the pipeline into `hot` and answers with a graphql server over it.
async fn pipeline_into(hot: Arc<dyn HotStore>) -> GraphqlServer {
    let broker = Broker::start().await.expect("broker");
    let t = ProcessorTopics::create(&broker, 2).await.expect("topics");
    let ingest = IngestServer::start(&broker.bootstrap_servers(), &t.events, |_| {})
        .await
        .expect("ingest");
    let archive = tempfile::tempdir().expect("archive dir");
    let stores = Stores {
        hot: hot.clone(),
        cold: Arc::new(LocalColdStore::new(archive.path()).expect("archive")),
    };
    let mut config =
        ProcessorConfig::for_dev(&broker.bootstrap_servers(), &t.events, &t.dlq, &t.group);
    config.batch_flush_interval_ms = 100;
    let processor = ProcessorServer::start(config, stores).expect("processor");
    send_dataset(&ingest).await;
    processor
        .drain(Duration::from_secs(60))
        .await
        .expect("processor caught up");
    GraphqlServer::start(hot, |_| {}).await.expect("graphql")
}

/// Asserts `query` answers exactly `expected` (the `data` object).
async fn assert_answer(api: &GraphqlServer, query: &str, expected: Value) {
    let data = api.data(query, json!({})).await.expect(query);
    assert_eq!(data, expected, "query: {query}");
}

fn ids(ns: &[u32]) -> Value {
    Value::Array(ns.iter().map(|&n| json!({ "eventId": id(n) })).collect())
}

async fn assert_crafted_answers(api: &GraphqlServer) {
    // The reference platform's list queries, newest first.
    assert_answer(
        api,
        "{ latestEvents(limit: 2) { eventId eventType userId timestamp payload } }",
        json!({"latestEvents": [
            {"eventId": id(12), "eventType": "click", "userId": "dave",
             "timestamp": "2026-03-10T16:00:00Z", "payload": {"n": 12, "tags": ["crafted"]}},
            {"eventId": id(11), "eventType": "page_view", "userId": "dave",
             "timestamp": "2026-03-10T15:20:00Z", "payload": {"n": 11, "tags": ["crafted"]}},
        ]}),
    )
    .await;
    assert_answer(
        api,
        "{ latestEvents { eventId } }",
        json!({"latestEvents": ids(&[12, 11, 10, 9, 8, 7, 6, 5, 4, 3])}),
    )
    .await;
    assert_answer(
        api,
        r#"{ eventsByType(eventType: "page_view") { eventId } }"#,
        json!({"eventsByType": ids(&[11, 10, 8, 6, 5, 3, 1])}),
    )
    .await;
    assert_answer(
        api,
        r#"{ eventsByUser(userId: "bob", limit: 3) { eventId eventType } }"#,
        json!({"eventsByUser": [
            {"eventId": id(9), "eventType": "purchase"},
            {"eventId": id(8), "eventType": "page_view"},
            {"eventId": id(4), "eventType": "purchase"},
        ]}),
    )
    .await;
    assert_answer(
        api,
        r#"{ eventsByType(eventType: "refund") { eventId } }"#,
        json!({"eventsByType": []}),
    )
    .await;

    // The connection: pages of 2 over the clicks, then both filters at once.
    let page = |after: &str| {
        format!(
            r#"{{ events(eventType: "click", first: 2{after}) {{ nodes {{ eventId }} pageInfo {{ hasNextPage endCursor }} }} }}"#
        )
    };
    let first = api.data(&page(""), json!({})).await.expect("page 1");
    assert_eq!(first["events"]["nodes"], ids(&[12, 7]));
    assert_eq!(first["events"]["pageInfo"]["hasNextPage"], json!(true));
    let cursor = first["events"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("a cursor");
    let second = api
        .data(&page(&format!(r#", after: "{cursor}""#)), json!({}))
        .await
        .expect("page 2");
    assert_eq!(second["events"]["nodes"], ids(&[2]));
    assert_eq!(second["events"]["pageInfo"]["hasNextPage"], json!(false));
    assert_answer(
        api,
        r#"{ events(eventType: "page_view", userId: "alice") { nodes { eventId } pageInfo { hasNextPage } } }"#,
        json!({"events": {"nodes": ids(&[10, 5, 1]), "pageInfo": {"hasNextPage": false}}}),
    )
    .await;

    // Counts: half-open ranges, UTC days, every bucket newest first.
    assert_answer(
        api,
        r#"{ eventCount(from: "2026-03-02T00:00:00Z", to: "2026-03-05T00:00:00Z") { total buckets { start count } } }"#,
        json!({"eventCount": {"total": 9, "buckets": [
            {"start": "2026-03-04T00:00:00Z", "count": 2},
            {"start": "2026-03-03T00:00:00Z", "count": 3},
            {"start": "2026-03-02T00:00:00Z", "count": 4},
        ]}}),
    )
    .await;
    assert_answer(
        api,
        r#"{ eventCount(from: "2026-03-02T09:00:00Z", to: "2026-03-02T11:00:00Z", bucket: HOUR) { total buckets { start count } } }"#,
        json!({"eventCount": {"total": 3, "buckets": [
            {"start": "2026-03-02T10:00:00Z", "count": 1},
            {"start": "2026-03-02T09:00:00Z", "count": 2},
        ]}}),
    )
    .await;
    // A range that starts inside a day: its first bucket starts at `from`;
    // 23:59:59 is the 2nd, midnight the 3rd.
    assert_answer(
        api,
        r#"{ eventCount(from: "2026-03-02T10:00:00Z", to: "2026-03-03T01:00:00Z") { total buckets { start count } } }"#,
        json!({"eventCount": {"total": 3, "buckets": [
            {"start": "2026-03-03T00:00:00Z", "count": 1},
            {"start": "2026-03-02T10:00:00Z", "count": 2},
        ]}}),
    )
    .await;
    assert_answer(
        api,
        r#"{ eventCount(from: "2026-03-02T00:00:00+01:00", to: "2026-03-11T00:00:00Z", eventType: "page_view") { total buckets { start count } } }"#,
        json!({"eventCount": {"total": 7, "buckets": [
            {"start": "2026-03-10T00:00:00Z", "count": 2},
            {"start": "2026-03-09T00:00:00Z", "count": 0},
            {"start": "2026-03-08T00:00:00Z", "count": 0},
            {"start": "2026-03-07T00:00:00Z", "count": 0},
            {"start": "2026-03-06T00:00:00Z", "count": 0},
            {"start": "2026-03-05T00:00:00Z", "count": 0},
            {"start": "2026-03-04T00:00:00Z", "count": 1},
            {"start": "2026-03-03T00:00:00Z", "count": 2},
            {"start": "2026-03-02T00:00:00Z", "count": 2},
            {"start": "2026-03-01T23:00:00Z", "count": 0},
        ]}}),
    )
    .await;

    // Daily active users: every day of the closed range, newest first.
    assert_answer(
        api,
        r#"{ dailyActiveUsers(from: "2026-03-01", to: "2026-03-04") { date count } }"#,
        json!({"dailyActiveUsers": [
            {"date": "2026-03-04", "count": 1},
            {"date": "2026-03-03", "count": 2},
            {"date": "2026-03-02", "count": 2},
            {"date": "2026-03-01", "count": 0},
        ]}),
    )
    .await;

    // Top events: most frequent first, ties by name.
    assert_answer(
        api,
        r#"{ topEvents(from: "2026-03-02", to: "2026-03-10") { eventType count } }"#,
        json!({"topEvents": [
            {"eventType": "page_view", "count": 7},
            {"eventType": "click", "count": 3},
            {"eventType": "purchase", "count": 2},
        ]}),
    )
    .await;
    assert_answer(
        api,
        r#"{ topEvents(from: "2026-03-02", to: "2026-03-02", limit: 2) { eventType count } }"#,
        json!({"topEvents": [
            {"eventType": "page_view", "count": 2},
            {"eventType": "click", "count": 1},
        ]}),
    )
    .await;

    // Retention, newest cohort first.
    assert_answer(
        api,
        r#"{ retention(startDate: "2026-03-02", windows: 3) { cohortDate size retained rates } }"#,
        json!({"retention": [
            {"cohortDate": "2026-03-04", "size": 0, "retained": [0, 0, 0], "rates": [0.0, 0.0, 0.0]},
            {"cohortDate": "2026-03-03", "size": 1, "retained": [1, 0, 0], "rates": [1.0, 0.0, 0.0]},
            {"cohortDate": "2026-03-02", "size": 2, "retained": [2, 1, 1], "rates": [1.0, 0.5, 0.5]},
        ]}),
    )
    .await;
    assert_answer(
        api,
        r#"{ retention(startDate: "2026-03-04", windows: 2, windowType: WEEKLY) { cohortDate size retained rates } }"#,
        json!({"retention": [
            {"cohortDate": "2026-03-09", "size": 1, "retained": [1, 0], "rates": [1.0, 0.0]},
            {"cohortDate": "2026-03-02", "size": 3, "retained": [3, 1], "rates": [1.0, 1.0 / 3.0]},
        ]}),
    )
    .await;
}

#[tokio::test]
async fn every_query_answers_the_crafted_dataset_exactly_on_the_embedded_store() {
    let (store, _dir) = sqlite_store().expect("sqlite");
    let api = pipeline_into(Arc::new(store)).await;
    assert_crafted_answers(&api).await;
}

#[tokio::test]
async fn every_query_answers_the_crafted_dataset_exactly_on_dynamodb() {
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let store = dynamodb_store_with(&sdk, 2).await.expect("table");
    let api = pipeline_into(Arc::new(store)).await;
    assert_crafted_answers(&api).await;
}
