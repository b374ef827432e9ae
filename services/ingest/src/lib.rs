//! `ingest`: the platform's front door. `POST /events` authenticates (JWT),
//! validates against the event contract, and publishes to Kafka, answering
//! 202 only once the broker acknowledged every event.
//!
//! - [`config`]: environment variables and defaults.
//! - [`api`]: routes, body decoding, problem responses.
//! - [`publisher`]: the idempotent Kafka producer.
//! - [`rate_limit`]: per-subject token buckets.

pub mod api;
pub mod config;
pub mod publisher;
pub mod rate_limit;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use event_common::auth::JwtVerifier;
use event_common::lifecycle::{self, Health};
use event_common::problem::Problem;
use event_common::telemetry;

pub use config::IngestConfig;
use publisher::{KafkaPublisher, PublishError};

/// How long shutdown waits for queued messages to be acknowledged.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A ready-to-serve ingest: its router, health and producer.
pub struct Ingest {
    router: Router,
    health: Health,
    publisher: Arc<KafkaPublisher>,
    housekeeping: tokio::task::JoinHandle<()>,
}

impl Ingest {
    /// Builds the service from `config`; connects lazily.
    pub fn new(config: &IngestConfig) -> Result<Self, PublishError> {
        // Install the recorder now: anything counted before it exists is lost.
        telemetry::prometheus();
        // At 0 from the start, so that the first failure is a rate (see the shipped alerts).
        metrics::counter!("kafka_delivery_failures_total").increment(0);
        let publisher = Arc::new(KafkaPublisher::new(config)?);
        let limiter = rate_limit::SubjectLimiter::new(
            config.rate_limit_events_per_second,
            config.rate_limit_burst_events,
        );
        let state = Arc::new(api::ApiState {
            verifier: JwtVerifier::new(&config.jwt),
            limits: config.limits.clone(),
            limiter: limiter.clone(),
            publisher: publisher.clone(),
            retry_after_secs: 1 + config.kafka_delivery_timeout_ms / 1000,
        });
        let check_publisher = publisher.clone();
        let health = Health::new(
            "ingest",
            Arc::new(move || {
                let p = check_publisher.clone();
                Box::pin(async move { p.check_broker().await })
            }),
        );
        let mut router = Router::new()
            .merge(api::routes(state))
            .merge(health.clone().router())
            .route("/metrics", get(telemetry::metrics_handler))
            .fallback(|uri: http::Uri| async move { Problem::not_found(uri.path()) });
        if let Some(cors) = lifecycle::cors_layer(&config.cors_allowed_origins) {
            router = router.layer(cors);
        }
        let router = telemetry::instrument(router, "ingest");

        let gauge_publisher = publisher.clone();
        let housekeeping = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                metrics::gauge!("kafka_producer_queue_depth")
                    .set(f64::from(gauge_publisher.queue_depth()));
                limiter.forget_idle();
            }
        });
        Ok(Self {
            router,
            health,
            publisher,
            housekeeping,
        })
    }

    /// The full router: API, health, metrics.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The health state (readiness checks the broker).
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Flushes the producer so nothing acknowledged-pending is dropped.
    pub async fn close(self) {
        self.housekeeping.abort();
        let publisher = self.publisher;
        let flushed = tokio::task::spawn_blocking(move || publisher.flush(FLUSH_TIMEOUT)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("producer did not flush within {FLUSH_TIMEOUT:?}");
        }
    }
}

/// Serves ingest on `listener` until `shutdown` resolves, then drains
/// (readiness 503, in-flight requests finish) and flushes the producer.
pub async fn run(
    config: IngestConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ingest = Ingest::new(&config)?;
    tracing::info!(addr = %listener.local_addr()?, topic = %config.kafka_topic, "ingest listening");
    lifecycle::serve(listener, ingest.router(), ingest.health(), shutdown).await?;
    ingest.close().await;
    tracing::info!("ingest stopped");
    Ok(())
}
