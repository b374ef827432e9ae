//! Traces across the deployed services: the ingest, processor and graphql
//! binaries, exporting to an OTLP/HTTP receiver in the test (it decodes the
//! export requests as a collector would), with a real Kafka-protocol broker
//! between ingest and the processor. One event makes one trace: ingest's
//! request and produce spans, and the processor's span for that event,
//! linked to its batch write, all under the trace id the client sent.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use event_common::auth::{mint, JwtConfig};
use event_common::config::Env;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{json, Value};
use test_support::backend::Broker;
use test_support::free_port;
use test_support::harness::ProcessorTopics;

const SECRET: &str = "trace-test-secret-of-at-least-32-bytes!!";

/// A span as the receiver decoded it.
#[derive(Debug, Clone)]
struct SeenSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    links: Vec<String>,
    attributes: HashMap<String, String>,
}

type Seen = Arc<Mutex<Vec<SeenSpan>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

async fn export(State(seen): State<Seen>, body: Bytes) -> Vec<u8> {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(SeenSpan {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                links: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                    .collect(),
            });
        }
    }
    if let Ok(mut all) = seen.lock() {
        all.extend(spans);
    }
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

/// The OTLP/HTTP receiver: its endpoint and what it has seen.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), seen)
}

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &str, env: &[(&str, String)]) -> Service {
    let binary = support::service_binaries()
        .expect("the services' binaries")
        .join(name);
    let child = Command::new(binary)
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} starts: {e}"));
    Service(child)
}

/// A token the services (signed with [`SECRET`]) accept.
fn token(subject: &str) -> String {
    let jwt = JwtConfig::from_env(&Env::from_pairs([("JWT_SECRET_KEY", SECRET)]), true)
        .expect("jwt config");
    mint(&jwt, subject, Duration::from_secs(600), None).expect("token")
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the receiver until `found` picks what the test waits for.
async fn wait_for<T>(seen: &Seen, what: &str, found: impl Fn(&[SeenSpan]) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = seen.lock().ok().and_then(|all| found(&all)) {
            return t;
        }
        if Instant::now() > deadline {
            let all = seen.lock().map(|a| a.clone()).unwrap_or_default();
            panic!("no {what} within 30 s; spans seen: {all:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_event_is_one_trace_from_the_ingest_request_to_the_processor_write() {
    let (endpoint, seen) = receiver().await;
    let broker = Broker::start().await.expect("broker");
    let topics = ProcessorTopics::create(&broker, 2).await.expect("topics");
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = dir.path().join("hot.sqlite3").display().to_string();
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("deployment.environment.name=test,service.namespace={service}-ns"),
            ),
            ("ENVIRONMENT", "development".to_string()),
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers()),
            ("KAFKA_TOPIC", topics.events.clone()),
        ]
    };
    let (ingest_port, graphql_port) = (free_port().expect("port"), free_port().expect("port"));
    let mut ingest_env = otel("ingest");
    ingest_env.extend([
        ("PORT", ingest_port.to_string()),
        ("JWT_SECRET_KEY", SECRET.to_string()),
    ]);
    let mut processor_env = otel("processor");
    processor_env.extend([
        ("KAFKA_DLQ_TOPIC", topics.dlq.clone()),
        ("KAFKA_CONSUMER_GROUP", topics.group.clone()),
        ("BATCH_FLUSH_INTERVAL_MS", "100".to_string()),
        ("HOT_STORE", "sqlite".to_string()),
        ("SQLITE_PATH", sqlite.clone()),
        ("COLD_STORE", "directory".to_string()),
        (
            "COLD_STORE_DIR",
            dir.path().join("archive").display().to_string(),
        ),
        ("METRICS_PORT", free_port().expect("port").to_string()),
    ]);
    let mut graphql_env = otel("graphql");
    graphql_env.extend([
        ("PORT", graphql_port.to_string()),
        ("JWT_SECRET_KEY", SECRET.to_string()),
        ("HOT_STORE", "sqlite".to_string()),
        ("SQLITE_PATH", sqlite),
    ]);
    let _processor = spawn("processor", &processor_env);
    let _ingest = spawn("ingest", &ingest_env);
    let client = reqwest::Client::new();
    let ingest = format!("http://127.0.0.1:{ingest_port}");
    wait_ready(&client, &format!("{ingest}/health/ready")).await;

    let token = token("tracer");
    // The client's own trace: ingest continues it.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply: Value = client
        .post(format!("{ingest}/events"))
        .bearer_auth(&token)
        .header(
            "traceparent",
            format!("00-{client_trace}-00f067aa0ba902b7-01"),
        )
        .json(&json!({"event_type": "page_view", "user_id": "u-1", "payload": {"p": 1}}))
        .send()
        .await
        .expect("POST /events")
        .json()
        .await
        .expect("a JSON reply");
    let event_id = reply["event_ids"][0]
        .as_str()
        .expect("an event id")
        .to_string();

    let request = wait_for(&seen, "ingest request span", |all| {
        all.iter()
            .find(|s| s.service == "ingest" && s.name == "request" && s.trace_id == client_trace)
            .cloned()
    })
    .await;
    assert_eq!(
        request.parent_span_id, "00f067aa0ba902b7",
        "ingest's request span continues the caller's span"
    );
    let produce = wait_for(&seen, "ingest produce span", |all| {
        all.iter()
            .find(|s| s.service == "ingest" && s.name == "produce" && s.trace_id == client_trace)
            .cloned()
    })
    .await;
    assert_eq!(produce.parent_span_id, request.span_id);
    let processed = wait_for(&seen, "processor span for the event", |all| {
        all.iter()
            .find(|s| {
                s.service == "processor"
                    && s.attributes.get("event.id") == Some(&event_id)
                    && s.trace_id == client_trace
            })
            .cloned()
    })
    .await;
    assert_eq!(
        processed.parent_span_id, produce.span_id,
        "the processor's span is a child of the produce that carried the event"
    );
    assert_eq!(processed.links.len(), 1, "linked to its batch write");
    let batch = wait_for(&seen, "processor batch span", |all| {
        all.iter()
            .find(|s| s.service == "processor" && s.span_id == processed.links[0])
            .cloned()
    })
    .await;
    assert_eq!(batch.name, "batch write");
    assert_ne!(
        batch.trace_id, client_trace,
        "a batch has a trace of its own"
    );

    // graphql: its resolvers are spans inside its request's trace.
    let _graphql = spawn("graphql", &graphql_env);
    let graphql = format!("http://127.0.0.1:{graphql_port}");
    wait_ready(&client, &format!("{graphql}/health/ready")).await;
    let answer: Value = client
        .post(format!("{graphql}/graphql"))
        .bearer_auth(&token)
        .json(&json!({"query": "{ latestEvents(limit: 5) { eventId } }"}))
        .send()
        .await
        .expect("POST /graphql")
        .json()
        .await
        .expect("a JSON answer");
    assert_eq!(answer["data"]["latestEvents"][0]["eventId"], event_id);
    let field = wait_for(&seen, "graphql resolver span", |all| {
        all.iter()
            .find(|s| {
                s.service == "graphql"
                    && s.name == "field"
                    && s.attributes.get("path").map(String::as_str) == Some("latestEvents")
            })
            .cloned()
    })
    .await;
    let in_request = seen
        .lock()
        .map(|all| {
            all.iter().any(|s| {
                s.service == "graphql" && s.name == "request" && s.trace_id == field.trace_id
            })
        })
        .unwrap_or(false);
    assert!(
        in_request,
        "the resolver span is inside graphql's request trace"
    );
}

#[tokio::test]
async fn without_an_endpoint_messages_carry_no_traceparent() {
    let broker = Broker::start().await.expect("broker");
    let topics = ProcessorTopics::create(&broker, 1).await.expect("topics");
    let port = free_port().expect("port");
    let _ingest = spawn(
        "ingest",
        &[
            // Named, but no endpoint: traces stay off.
            ("OTEL_SERVICE_NAME", "ingest".to_string()),
            ("ENVIRONMENT", "development".to_string()),
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers()),
            ("KAFKA_TOPIC", topics.events.clone()),
            ("PORT", port.to_string()),
            ("JWT_SECRET_KEY", SECRET.to_string()),
        ],
    );
    let client = reqwest::Client::new();
    let ingest = format!("http://127.0.0.1:{port}");
    wait_ready(&client, &format!("{ingest}/health/ready")).await;
    let token = token("quiet");
    let status = client
        .post(format!("{ingest}/events"))
        .bearer_auth(&token)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&json!({"event_type": "page_view", "user_id": "u-1", "payload": {}}))
        .send()
        .await
        .expect("POST /events")
        .status();
    assert_eq!(status, 202);
    let records = test_support::kafka::read_topic(
        &broker.bootstrap_servers(),
        &topics.events,
        1,
        Duration::from_secs(10),
    )
    .expect("the event on the topic");
    assert_eq!(records.len(), 1);
    assert!(
        !records[0].headers.contains_key("traceparent"),
        "a trace header without export: {:?}",
        records[0].headers
    );
}
