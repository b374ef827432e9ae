//! The `events` connection walked page by page over a 10,000-event user
//! history and a 10,000-event type history: every event once, none
//! skipped, newest first, also while new events arrive during the walk.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use event_common::event::Event;
use event_store::aws::{self, AwsSettings};
use event_store::hot::HotStore;
use serde_json::json;
use test_support::backend::AwsEmulator;
use test_support::harness::GraphqlServer;
use test_support::stores::{at, batch, dynamodb_store_with, event, sqlite_store};

/// (timestamp, event id) as the API returns them.
type Position = (String, String);

struct Store {
    hot: Arc<dyn HotStore>,
    next_offset: i64,
}

impl Store {
    async fn apply(&mut self, events: Vec<Event>) {
        for chunk in events.chunks(500) {
            let batch = batch("events", 0, self.next_offset, chunk);
            self.hot.apply(&batch).await.expect("apply");
            self.next_offset += chunk.len() as i64;
        }
    }
}

/// `n` events of `user`/`event_type` (a function of the index), four per
/// second so that many share a timestamp and only the id breaks the tie.
fn history(
    n: usize,
    offset_secs: i64,
    user: impl Fn(usize) -> String,
    event_type: impl Fn(usize) -> &'static str,
) -> Vec<Event> {
    let start = at("2026-10-01T00:00:00Z") + Duration::seconds(offset_secs);
    (0..n)
        .map(|i| {
            event(
                event_type(i),
                &user(i),
                start + Duration::seconds((i / 4) as i64),
                i,
            )
        })
        .collect()
}

fn positions(events: &[Event]) -> BTreeSet<Position> {
    events
        .iter()
        .map(|e| {
            (
                e.timestamp
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                e.event_id.to_string(),
            )
        })
        .collect()
}

/// Walks `events(<filter>, first: page)` to the end; runs `during` after the first page.
async fn walk(
    api: &GraphqlServer,
    filter: &str,
    page: usize,
    mut during: impl AsyncFnMut(),
) -> Vec<Position> {
    let query = format!(
        "query($after: String) {{ events({filter}, first: {page}, after: $after) {{ \
         nodes {{ eventId timestamp }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    let mut pages = 0;
    loop {
        let data = api
            .data(&query, json!({ "after": after }))
            .await
            .expect("page");
        let connection = &data["events"];
        let nodes = connection["nodes"].as_array().expect("nodes");
        let has_next = connection["pageInfo"]["hasNextPage"]
            .as_bool()
            .expect("hasNextPage");
        assert!(nodes.len() <= page);
        assert!(
            !nodes.is_empty() || pages == 0,
            "a page announced by hasNextPage is not empty"
        );
        assert!(
            !has_next || nodes.len() == page,
            "only the last page is short"
        );
        seen.extend(nodes.iter().map(|n| {
            (
                n["timestamp"].as_str().expect("timestamp").to_string(),
                n["eventId"].as_str().expect("id").to_string(),
            )
        }));
        pages += 1;
        if pages == 1 {
            during().await;
        }
        if !has_next {
            return seen;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
}

/// Asserts `walked` is exactly `expected`, each once, strictly newest first.
fn assert_exact_walk(walked: &[Position], expected: &BTreeSet<Position>, what: &str) {
    assert_eq!(
        walked.len(),
        expected.len(),
        "{what}: as many events as stored"
    );
    let unique: BTreeSet<Position> = walked.iter().cloned().collect();
    assert_eq!(unique.len(), walked.len(), "{what}: no event twice");
    assert_eq!(&unique, expected, "{what}: no event skipped");
    // Timestamps have one format, and v7 ids sort as text: text order is the order.
    assert!(
        walked.windows(2).all(|w| w[0] > w[1]),
        "{what}: newest first, ties by id descending"
    );
}

#[tokio::test]
async fn walking_10000_event_user_and_type_histories_repeats_and_skips_nothing() {
    let (sqlite, _dir) = sqlite_store().expect("sqlite");
    let mut store = Store {
        hot: Arc::new(sqlite),
        next_offset: 0,
    };
    // The heavy user: 10,000 events, half of them scrolls.
    let heavy = history(
        10_000,
        0,
        |_| "heavy".into(),
        |i| if i % 2 == 0 { "scroll" } else { "tap" },
    );
    // 5,000 more scrolls by other users make the scroll history 10,000 too,
    // and 1,000 taps by others are noise for both filters.
    let scrolls = history(5_000, 1, |i| format!("user-{}", i % 97), |_| "scroll");
    let noise = history(1_000, 2, |i| format!("user-{}", i % 13), |_| "tap");
    let mut all = heavy.clone();
    all.extend(scrolls.clone());
    all.extend(noise);
    store.apply(all).await;

    let api = GraphqlServer::start(store.hot.clone(), |_| {})
        .await
        .expect("graphql");
    let user_history = positions(&heavy);
    let type_history: BTreeSet<Position> = positions(
        &heavy
            .iter()
            .chain(&scrolls)
            .filter(|e| e.event_type == "scroll")
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!((user_history.len(), type_history.len()), (10_000, 10_000));

    let walked = walk(&api, r#"userId: "heavy""#, 333, async || {}).await;
    assert_exact_walk(&walked, &user_history, "user history");

    // New events arrive (newer than anything walked) after the first page.
    let late_arrivals = history(500, 100_000, |_| "heavy".into(), |_| "scroll");
    let hot = store.hot.clone();
    let walked = walk(&api, r#"eventType: "scroll""#, 1000, async || {
        let mut arriving = Store {
            hot: hot.clone(),
            next_offset: 1_000_000,
        };
        arriving.apply(late_arrivals.clone()).await;
    })
    .await;
    assert_exact_walk(&walked, &type_history, "type history, new events arriving");

    // A new walk sees them first.
    let mut with_new = positions(&late_arrivals);
    with_new.extend(user_history);
    let walked = walk(&api, r#"userId: "heavy""#, 1000, async || {}).await;
    assert_exact_walk(&walked, &with_new, "user history after arrivals");
    assert_eq!(
        walked[..500].iter().cloned().collect::<BTreeSet<_>>(),
        positions(&late_arrivals)
    );
}

#[tokio::test]
async fn walking_a_user_and_type_history_on_dynamodb_repeats_and_skips_nothing() {
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let table = dynamodb_store_with(&sdk, 2).await.expect("table");
    let mut store = Store {
        hot: Arc::new(table),
        next_offset: 0,
    };
    // Smaller than on SQLite: the emulator writes slowly. Sharded type keys
    // (2 shards) are merged by the adapter.
    let heavy = history(
        240,
        0,
        |_| "heavy".into(),
        |i| if i % 3 == 0 { "tap" } else { "scroll" },
    );
    let others = history(60, 1, |i| format!("user-{}", i % 7), |_| "scroll");
    let mut all = heavy.clone();
    all.extend(others.clone());
    store.apply(all).await;
    let api = GraphqlServer::start(store.hot.clone(), |_| {})
        .await
        .expect("graphql");

    let walked = walk(&api, r#"userId: "heavy""#, 9, async || {}).await;
    assert_exact_walk(&walked, &positions(&heavy), "user history");
    let scrolls: Vec<Event> = heavy
        .iter()
        .chain(&others)
        .filter(|e| e.event_type == "scroll")
        .cloned()
        .collect();
    let walked = walk(&api, r#"eventType: "scroll""#, 11, async || {}).await;
    assert_exact_walk(&walked, &positions(&scrolls), "type history");
}
