//! The HTTP API: `POST /events` (and `/v1/events`), the OpenAPI document, and
//! the mapping of every failure to one problem response.

// A problem is built once per failed request and becomes its response at
// once: its size on the error path does not matter.
#![allow(clippy::result_large_err)]

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use event_common::auth::JwtVerifier;
use event_common::event::{parse_request, Limits};
use event_common::problem::{FieldError, Problem};
use serde_json::json;
use uuid::Uuid;

use crate::publisher::{KafkaPublisher, PublishError};
use crate::rate_limit::SubjectLimiter;

/// The OpenAPI 3.1 document of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the handlers share.
pub struct ApiState {
    /// Verifies bearer tokens.
    pub verifier: JwtVerifier,
    /// Request limits.
    pub limits: Limits,
    /// Per-subject rate limits.
    pub limiter: SubjectLimiter,
    /// Where accepted events go.
    pub publisher: Arc<KafkaPublisher>,
    /// Seconds a client should wait after a 503.
    pub retry_after_secs: u64,
}

/// The API routes (without health and metrics).
pub fn routes(state: Arc<ApiState>) -> Router {
    // Compressed bodies are also capped by the decompressed limit below.
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/events", post(post_events))
        .route("/v1/events", post(post_events))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn post_events(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match accept(&state, &headers, body).await {
        Ok(event_ids) => {
            metrics::counter!("events_accepted_total").increment(event_ids.len() as u64);
            (
                StatusCode::ACCEPTED,
                Json(json!({"accepted": event_ids.len(), "event_ids": event_ids})),
            )
                .into_response()
        }
        Err(problem) => {
            metrics::counter!("events_rejected_total", "status" => problem.status.to_string())
                .increment(1);
            problem.into_response()
        }
    }
}

/// Authenticates, decodes, validates, rate-limits and publishes; returns the
/// ids of the events the broker acknowledged (all of them, or an error).
async fn accept(
    state: &ApiState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<Uuid>, Problem> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let claims = state.verifier.verify_header(authorization)?;
    check_content_type(headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(vec![FieldError::new(
                "body",
                None,
                format!(
                    "body exceeds the limit of {} bytes",
                    state.limits.max_body_bytes
                ),
            )])
        } else {
            Problem::bad_request(
                "could not read the request body",
                vec![FieldError::new("body", None, rejection.body_text())],
            )
        }
    })?;
    let body = decode_body(headers, body, state.limits.max_body_bytes)?;
    let events = parse_request(&body, &state.limits, Utc::now(), Uuid::now_v7)?;
    metrics::histogram!("ingest_batch_size").record(events.len() as f64);
    state
        .limiter
        .check(&claims.sub, events.len())
        .map_err(Problem::rate_limited)?;

    let started = Instant::now();
    if let Err(e) = state.publisher.publish(&events).await {
        metrics::counter!("kafka_delivery_failures_total").increment(1);
        tracing::warn!(error = %e, events = events.len(), "publish failed; answering 503");
        let detail = match e {
            PublishError::QueueFull => {
                "the broker is slower than intake; retry with these event_ids, which are stored once".to_string()
            }
            other => format!(
                "{other}; some events may have reached the broker: retry with these event_ids, which are stored once"
            ),
        };
        let ids = events.iter().map(|e| e.event_id).collect();
        return Err(Problem::unavailable(detail, state.retry_after_secs).with_event_ids(ids));
    }
    metrics::histogram!("kafka_produce_ack_seconds").record(started.elapsed().as_secs_f64());
    Ok(events.into_iter().map(|e| e.event_id).collect())
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else if content_type.is_empty() {
        Err(Problem::unsupported_media_type(
            "missing Content-Type; send application/json".into(),
        ))
    } else {
        Err(Problem::unsupported_media_type(format!(
            "Content-Type {content_type} is not accepted; send application/json"
        )))
    }
}

/// Undoes `Content-Encoding: gzip`, reading at most `cap` bytes so that a
/// small bomb cannot expand into memory.
fn decode_body(headers: &HeaderMap, body: Bytes, cap: usize) -> Result<Bytes, Problem> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding.trim().to_ascii_lowercase().as_str() {
        "identity" | "" => Ok(body),
        "gzip" | "x-gzip" => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(cap));
            let read = flate2::read::GzDecoder::new(&body[..])
                .take(cap as u64 + 1)
                .read_to_end(&mut out);
            match read {
                Err(e) => Err(Problem::bad_request(
                    "invalid gzip",
                    vec![FieldError::new(
                        "body",
                        None,
                        format!("invalid gzip data: {e}"),
                    )],
                )),
                Ok(n) if n > cap => Err(Problem::too_large(vec![FieldError::new(
                    "body",
                    None,
                    format!("decompressed body exceeds the limit of {cap} bytes"),
                )])),
                Ok(_) => Ok(Bytes::from(out)),
            }
        }
        other => Err(Problem::unsupported_media_type(format!(
            "Content-Encoding {other} is not accepted; send gzip or no encoding"
        ))),
    }
}
