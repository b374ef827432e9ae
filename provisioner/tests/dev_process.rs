//! `provision dev` as a user runs it: a real process that starts, takes an
//! event through its front door onto the embedded broker and into the
//! embedded stores, and exits 0 on SIGINT and on SIGTERM.

use std::time::{Duration, Instant};

use event_common::event::Event;
use event_store::cold::local::LocalColdStore;
use event_store::cold::ColdStore;
use event_store::hot::sqlite::SqliteHotStore;
use event_store::hot::HotReader;
use test_support::kafka::read_topic;

mod platform;

use platform::{start, start_in, stop, stop_keeping_data, Dev};

async fn post_event(dev: &Dev) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/events", dev.url))
        .bearer_auth(&dev.token)
        .header("content-type", "application/json")
        .body(r#"{"event_type":"page_view","user_id":"user-001","payload":{"page":"/home"}}"#)
        .send()
        .await
        .expect("front door answers");
    assert_eq!(response.status(), 202);
    let reply: serde_json::Value = response.json().await.expect("json");
    reply["event_ids"][0].as_str().expect("an id").to_string()
}

#[tokio::test]
async fn dev_accepts_an_event_on_port_8080_stores_it_and_exits_0_on_sigint() {
    let dev = start(&[]);
    assert_eq!(dev.url, "http://127.0.0.1:8080", "the default port is 8080");
    let id = post_event(&dev).await;
    let records = read_topic(&dev.broker, "events.raw", 1, Duration::from_secs(10))
        .expect("read the embedded broker");
    let event: Event = serde_json::from_slice(&records[0].value).expect("an event");
    assert_eq!(event.event_id.to_string(), id);
    let ready = reqwest::get(format!("{}/health/ready", dev.url))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);

    // The processor carries it into the embedded hot store and the archive.
    let hot = SqliteHotStore::open(&dev.data.path().join("hot.sqlite3"), 30)
        .expect("open the dev database");
    let id: uuid::Uuid = id.parse().expect("uuid");
    let deadline = Instant::now() + Duration::from_secs(15);
    while hot.event(id).await.expect("read").is_none() {
        assert!(
            Instant::now() < deadline,
            "event did not reach the hot store"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let archive = LocalColdStore::new(dev.data.path()).expect("archive");
    let deadline = Instant::now() + Duration::from_secs(15);
    while archive.list("raw/").await.expect("list").is_empty() {
        assert!(Instant::now() < deadline, "event did not reach the archive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stop(dev, "-INT").success(), "exit status 0 on SIGINT");
}

#[tokio::test]
async fn dev_on_a_chosen_port_exits_0_on_sigterm() {
    let port = test_support::free_port().expect("port").to_string();
    let dev = start(&["--port", &port]);
    assert!(dev.url.ends_with(&port));
    post_event(&dev).await;
    assert!(stop(dev, "-TERM").success(), "exit status 0 on SIGTERM");
}

/// `eventCount` from yesterday to tomorrow, whole days.
async fn total(dev: &Dev) -> i64 {
    let now = chrono::Utc::now();
    let day = |days: i64| {
        (now + chrono::Duration::days(days))
            .format("%Y-%m-%dT00:00:00Z")
            .to_string()
    };
    platform::event_total(dev, &day(-1), &day(2)).await
}

async fn wait_for_total(dev: &Dev, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = total(dev).await;
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "eventCount total {seen}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event id in the archive, once per copy.
async fn archived(data: &std::path::Path) -> Vec<uuid::Uuid> {
    let archive = LocalColdStore::new(data).expect("archive");
    let mut ids = Vec::new();
    for key in archive.list("raw/").await.expect("list") {
        let file = archive.get(&key).await.expect("read");
        ids.extend(event_store::cold::parquet::event_ids(file).expect("parquet"));
    }
    ids
}

#[tokio::test]
async fn dev_keeps_its_data_across_restarts_and_counts_each_event_once() {
    let port = test_support::free_port().expect("port").to_string();
    let dev = start(&["--port", &port]);
    let mut sent = Vec::new();
    for _ in 0..5 {
        sent.push(post_event(&dev).await);
    }
    wait_for_total(&dev, 5).await;
    let (status, data) = stop_keeping_data(dev, "-TERM");
    assert!(status.success());

    // A new broker counts offsets from 0 again; the stores must not take
    // its events for redeliveries of the first run's.
    let dev = start_in(data, &["--port", &port]);
    assert_eq!(
        total(&dev).await,
        5,
        "the first run's events are still there"
    );
    for _ in 0..3 {
        sent.push(post_event(&dev).await);
    }
    wait_for_total(&dev, 8).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ids = archived(dev.data.path()).await;
    while ids.len() < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ids = archived(dev.data.path()).await;
    }
    ids.sort();
    let mut expected: Vec<uuid::Uuid> = sent.iter().map(|s| s.parse().expect("uuid")).collect();
    expected.sort();
    assert_eq!(ids, expected, "every event archived once, none overwritten");
    let (status, data) = stop_keeping_data(dev, "-TERM");
    assert!(status.success());

    let dev = start_in(data, &["--port", &port, "--fresh"]);
    assert_eq!(total(&dev).await, 0, "--fresh starts empty");
    assert!(archived(dev.data.path()).await.is_empty());
    assert!(stop(dev, "-TERM").success());
}
