//! `graphql`: the read API. Read-only GraphQL over the hot store (the
//! reference platform's queries and the analytics), GraphiQL, and a
//! dashboard page fed by the API.
//!
//! - [`config`]: environment variables and limits.
//! - [`schema`]: types and resolvers, reading only through the hot-store port.
//! - [`scalars`]: `DateTime`, `Date` and the page cursor.
//! - [`guard`]: argument bounds, error codes, resolver timings.
//!
//! Routes: `POST /graphql` (JWT required), `GET /graphql` (GraphiQL), `GET /`
//! (the dashboard; it asks for the token once and keeps it in the browser),
//! `/health/live`, `/health/ready` (store reachable), `/metrics`.

pub mod config;
pub mod guard;
pub mod scalars;
pub mod schema;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use event_common::auth::JwtVerifier;
use event_common::lifecycle::{self, Health};
use event_common::problem::Problem;
use event_common::telemetry;
use event_store::aws;
use event_store::hot::{self, HotReader, HotStoreKind};
use serde_json::json;

pub use config::{GraphqlConfig, QueryLimits};
use schema::EventSchema;

/// Largest request body: a GraphQL document with its variables.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// The dashboard: one self-contained page (inline script and SVG, no CDN).
const DASHBOARD: &str = include_str!("dashboard.html");

/// The dashboard may load nothing from elsewhere and talk only to this origin.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct ApiState {
    schema: EventSchema,
    verifier: JwtVerifier,
    /// The longest a query may run.
    max_execution: std::time::Duration,
}

/// A ready-to-serve GraphQL API: its router and health.
pub struct Graphql {
    router: Router,
    health: Health,
}

impl Graphql {
    /// The API over `hot`.
    pub fn new(config: &GraphqlConfig, hot: Arc<dyn HotReader>) -> Self {
        // Install the recorder now: anything counted before it exists is lost.
        telemetry::prometheus();
        let state = Arc::new(ApiState {
            schema: schema::build(hot.clone(), config.limits),
            verifier: JwtVerifier::new(&config.jwt),
            max_execution: config.limits.max_execution,
        });
        let health = Health::new(
            "graphql",
            Arc::new(move || {
                let hot = hot.clone();
                Box::pin(async move { hot.check().await.map_err(|e| e.to_string()) })
            }),
        );
        let mut router = Router::new()
            .route("/graphql", get(graphiql).post(execute))
            .route("/", get(dashboard))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(state)
            .merge(health.clone().router())
            .route("/metrics", get(telemetry::metrics_handler))
            .fallback(|uri: http::Uri| async move { Problem::not_found(uri.path()) });
        if let Some(cors) = lifecycle::cors_layer(&config.cors_allowed_origins) {
            router = router.layer(cors);
        }
        Self {
            router: telemetry::instrument(router, "graphql"),
            health,
        }
    }

    /// Opens the hot store `config` names, then builds the API.
    pub async fn from_config(config: &GraphqlConfig) -> anyhow::Result<Self> {
        let needs_aws = config.hot_store == HotStoreKind::DynamoDb;
        let sdk = aws::sdk_config_when(needs_aws, &config.aws).await;
        let hot = hot::open_reader(
            &config.hot_store,
            sdk.as_ref(),
            &config.dynamodb_table,
            config.hot_write_shards,
        )
        .context("opening the hot store")?;
        Ok(Self::new(config, hot))
    }

    /// The full router: API, dashboard, health, metrics.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The health state (readiness checks the hot store).
    pub fn health(&self) -> Health {
        self.health.clone()
    }
}

/// A response in GraphQL's error shape, for failures before execution.
fn request_error(status: StatusCode, code: &str, message: &str) -> Response {
    metrics::counter!("graphql_errors_total", "code" => code.to_string()).increment(1);
    let body = json!({"errors": [{"message": message, "extensions": {"code": code}}]});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

async fn execute(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(err) = state.verifier.verify_header(authorization) {
        return request_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            &err.to_string(),
        );
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_REQUEST",
            "send the request as Content-Type: application/json",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!(
                    "body is not a GraphQL request ({{\"query\": ..., \"variables\": ...}}): {e}"
                ),
            )
        }
    };
    if request.query.trim().is_empty() {
        return request_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the request has no query",
        );
    }
    // Dropping the execution at the bound cancels its store calls too. Like
    // a store outage, it is an execution error of a well-formed request (200).
    match tokio::time::timeout(state.max_execution, state.schema.execute(request)).await {
        Ok(response) => axum::Json(response).into_response(),
        Err(_) => request_error(
            StatusCode::OK,
            "QUERY_TIMEOUT",
            &format!(
                "the query ran longer than {} ms: ask for less (a shorter range, a smaller limit) or retry later",
                state.max_execution.as_millis()
            ),
        ),
    }
}

/// GraphiQL's page (the IDE loads from unpkg.com, as async-graphql's own
/// page does; kept here as a file so that no template engine is compiled).
const GRAPHIQL: &str = include_str!("graphiql.html");

async fn graphiql() -> Html<&'static str> {
    Html(GRAPHIQL)
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(DASHBOARD),
    )
        .into_response()
}

/// Serves the API on `listener` until `shutdown` resolves, then drains
/// (readiness 503, in-flight requests finish).
pub async fn run(
    config: GraphqlConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api = Graphql::from_config(&config).await?;
    tracing::info!(addr = %listener.local_addr()?, store = ?config.hot_store, "graphql listening");
    lifecycle::serve(listener, api.router(), api.health(), shutdown).await?;
    tracing::info!("graphql stopped");
    Ok(())
}
