//! Logs, metrics and request ids, shared by every service: `tracing` (pretty
//! in development, JSON in production), one process-wide Prometheus recorder,
//! and the HTTP layers that put a request id on every response and log line.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::Env;
use crate::traces::TraceExport;

/// Latency buckets in seconds, fine-grained below 10 ms where ingest lives.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global `tracing` subscriber: JSON with the current span (and
/// so the request id) on every line when `ENVIRONMENT=production`, pretty
/// otherwise. Level from `RUST_LOG`, else `LOG_LEVEL`, else `info`. Spans
/// also go to an OTLP endpoint when one is configured ([`crate::traces`]);
/// keep the returned guard until exit, it sends the last ones.
/// A second call is a no-op, so tests may call it freely.
#[must_use = "dropping it stops the export of traces"]
pub fn init_tracing(env: &Env, service: &'static str) -> TraceExport {
    let filter = env
        .optional("RUST_LOG")
        .or_else(|| env.optional("LOG_LEVEL"))
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if env.environment() == "production" {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt::layer().compact().boxed()
    };
    #[cfg(feature = "otel")]
    let (spans, export) = crate::traces::layer(env, service);
    #[cfg(not(feature = "otel"))]
    let (spans, export) = {
        let _ = service;
        (
            None::<tracing_subscriber::layer::Identity>,
            TraceExport::default(),
        )
    };
    let _already_set = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init();
    export
}

/// The process-wide Prometheus handle; the recorder is installed on first use.
/// One process may run several services (`provision dev`); they share it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Suffix("_size".into()),
                    &[1.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                )
            });
        match builder {
            Ok(b) => {
                let recorder = b.build_recorder();
                let handle = recorder.handle();
                // Fails only if another recorder is installed; then ours stays empty.
                let _ = metrics::set_global_recorder(recorder);
                handle
            }
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics_handler() -> Response {
    let body = prometheus().render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}

/// Wraps a service's router with request ids (kept from `x-request-id` or
/// generated, echoed on the response), a span per request carrying that id,
/// and the reference platform's HTTP metrics labelled by route template.
pub fn instrument(router: Router, service: &'static str) -> Router {
    router
        .layer(middleware::from_fn_with_state(service, track_http))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(move |req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            let span = tracing::info_span!("request", service, request_id = %id, method = %req.method(), path = %req.uri().path());
            crate::traces::continue_from(&span, req.headers().get(crate::traces::TRACEPARENT).and_then(|v| v.to_str().ok()));
            span
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn track_http(State(service): State<&'static str>, req: Request, next: Next) -> Response {
    // Label by the route template, never the raw path, to keep labels bounded.
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_string()),
        ("method", method),
        ("path", path),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..3])
        .record(start.elapsed().as_secs_f64());
    response
}
