//! Health, metrics, request ids, CORS, the OpenAPI document and gzip bodies,
//! through a running ingest against a real broker.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use test_support::harness::{ingest_with_broker, IngestSetup};

#[tokio::test]
async fn operational_endpoints_answer_as_documented() {
    let IngestSetup {
        broker: _broker, // kept alive for the whole test
        topic: _,
        server,
    } = ingest_with_broker(1, |c| {
        c.cors_allowed_origins = vec!["https://app.example".into()];
    })
    .await
    .expect("broker, topic and ingest");
    let client = reqwest::Client::new();

    assert_eq!(
        client
            .get(format!("{}/health/live", server.url))
            .send()
            .await
            .expect("live")
            .status(),
        200
    );
    let ready = client
        .get(format!("{}/health/ready", server.url))
        .send()
        .await
        .expect("ready");
    assert_eq!(
        ready.status(),
        200,
        "ready with the broker up and the topic present"
    );
    assert_eq!(
        client
            .get(format!("{}/health", server.url))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );

    // gzip bodies are accepted; the request id is kept and echoed.
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(
        br#"{"events":[{"event_type":"gz","user_id":"u1"},{"event_type":"gz","user_id":"u2"}]}"#,
    )
    .expect("gzip");
    let accepted = client
        .post(format!("{}/v1/events", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("x-request-id", "req-123")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("post");
    assert_eq!(accepted.status(), 202);
    assert_eq!(accepted.headers()["x-request-id"], "req-123");
    let reply: Value = accepted.json().await.expect("json");
    assert_eq!(reply["accepted"], 2);

    // A request id is generated when the client sent none.
    let generated = client
        .get(format!("{}/health/live", server.url))
        .send()
        .await
        .expect("live");
    assert!(generated
        .headers()
        .get("x-request-id")
        .is_some_and(|v| !v.is_empty()));

    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "events_accepted_total",
        "kafka_produce_ack_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(
        metrics.contains(r#"path="/v1/events""#),
        "requests labelled by route template"
    );

    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{}/events", server.url))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    let openapi: Value = client
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    for path in ["/events", "/v1/events", "/health/ready", "/metrics"] {
        assert!(openapi["paths"][path].is_object(), "{path} documented");
    }

    let missing = client
        .get(format!("{}/nope", server.url))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    server.stop().await.expect("clean stop");
}
