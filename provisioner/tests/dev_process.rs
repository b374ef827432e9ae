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

use platform::{start, stop, Dev};

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
