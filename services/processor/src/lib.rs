//! `processor`: consumes `events.raw` and writes every event to the hot
//! store (DynamoDB or SQLite) and the cold store (S3 or a directory),
//! exactly once in effect: offsets are committed only after both writes are
//! durable, and the stores turn redelivery into a no-op. Messages that are
//! not valid events go to the dead-letter topic with headers saying why.
//!
//! - [`config`]: environment variables and defaults.
//! - [`pipeline`]: the consume -> write -> commit loop.

pub mod config;
pub mod pipeline;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use event_common::lifecycle::{self, Health};
use event_common::telemetry;
use event_store::aws;
use event_store::cold::{self, ColdStore};
use event_store::hot::{self, HotWriter};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

pub use config::{ColdStoreKind, HotStoreKind, ProcessorConfig};
use pipeline::{EventConsumer, Pipeline, RebalanceContext};

/// The stores a processor writes to.
#[derive(Clone)]
pub struct Stores {
    /// Events and rollups.
    pub hot: Arc<dyn HotWriter>,
    /// The raw archive.
    pub cold: Arc<dyn ColdStore>,
}

impl Stores {
    /// Opens the stores `config` names.
    pub async fn from_config(config: &ProcessorConfig) -> anyhow::Result<Self> {
        let needs_aws =
            config.hot_store == HotStoreKind::DynamoDb || config.cold_store == ColdStoreKind::S3;
        let sdk = aws::sdk_config_when(needs_aws, &config.aws).await;
        let hot = hot::open_writer(
            &config.hot_store,
            sdk.as_ref(),
            &config.dynamodb_table,
            config.hot_ttl_days,
            config.hot_write_shards,
        )?;
        let cold = cold::open(&config.cold_store, sdk.as_ref(), &config.s3_bucket)?;
        Ok(Self { hot, cold })
    }
}

/// A processor ready to run: its consumer, producer and stores.
pub struct Processor {
    pipeline: Pipeline,
    health: Health,
}

impl Processor {
    /// Connects to the broker (lazily) and subscribes to the topic.
    pub fn new(config: ProcessorConfig, stores: Stores) -> anyhow::Result<Self> {
        telemetry::prometheus();
        pipeline::zero_series();
        let consumer: EventConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_bootstrap_servers)
            .set("group.id", &config.kafka_consumer_group)
            .set("client.id", "processor")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                config.kafka_session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (config.kafka_session_timeout_ms / 5).max(100).to_string(),
            )
            // A store outage pauses consumption; stay in the group meanwhile.
            .set(
                "max.poll.interval.ms",
                config.kafka_max_poll_interval_ms.to_string(),
            )
            .set(
                "fetch.wait.max.ms",
                config.kafka_fetch_wait_max_ms.to_string(),
            )
            .create_with_context(RebalanceContext::default())
            .context("creating the Kafka consumer")?;
        consumer
            .subscribe(&[&config.kafka_topic])
            .context("subscribing")?;
        let dlq: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_bootstrap_servers)
            .set("client.id", "processor-dlq")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .context("creating the dead-letter producer")?;
        let consumer = Arc::new(consumer);
        let health = readiness(consumer.clone(), config.kafka_topic.clone(), stores.clone());
        let pipeline = Pipeline::new(
            consumer,
            dlq,
            stores.hot,
            stores.cold,
            config,
            health.clone(),
        );
        Ok(Self { pipeline, health })
    }

    /// The health state (broker, hot and cold store reachable; 503 while draining).
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The health and metrics routes.
    pub fn router(&self) -> Router {
        telemetry::instrument(
            Router::new()
                .merge(self.health.clone().router())
                .route("/metrics", get(telemetry::metrics_handler)),
            "processor",
        )
    }

    /// Consumes until `shutdown` resolves, then drains: writes and commits
    /// what is buffered, for at most [`pipeline::DRAIN_TIME`].
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (health, requested) = (self.health.clone(), self.pipeline.shutdown.clone());
        let signal = tokio::spawn(async move {
            shutdown.await;
            health.start_draining();
            requested.request();
        });
        let consumer = self.pipeline.consumer.clone();
        let leaving = consumer.clone();
        let lag = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let consumer = consumer.clone();
                let _ = tokio::task::spawn_blocking(move || pipeline::report_lag(&consumer)).await;
            }
        });
        self.pipeline.run().await;
        signal.abort();
        lag.abort();
        // Leave the group now, so its partitions move without waiting for the session to expire.
        leaving.unsubscribe();
    }
}

fn readiness(consumer: Arc<EventConsumer>, topic: String, stores: Stores) -> Health {
    Health::new(
        "processor",
        Arc::new(move || {
            let (consumer, topic, stores) = (consumer.clone(), topic.clone(), stores.clone());
            Box::pin(async move {
                tokio::task::spawn_blocking(move || {
                    consumer
                        .fetch_metadata(Some(&topic), Duration::from_secs(2))
                        .map(|_| ())
                        .map_err(|e| format!("broker unreachable: {e}"))
                })
                .await
                .map_err(|e| e.to_string())??;
                stores
                    .hot
                    .check()
                    .await
                    .map_err(|e| format!("hot store: {e}"))?;
                stores
                    .cold
                    .check()
                    .await
                    .map_err(|e| format!("cold store: {e}"))
            })
        }),
    )
}

/// Runs the processor with the stores `config` names, serving health and
/// metrics on `METRICS_PORT`, until `shutdown` resolves.
pub async fn run(
    config: ProcessorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stores = Stores::from_config(&config).await?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.metrics_port))
        .await
        .with_context(|| format!("binding METRICS_PORT {}", config.metrics_port))?;
    let processor = Processor::new(config, stores)?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(lifecycle::serve(
        listener,
        processor.router(),
        processor.health(),
        async move {
            let _ = http_stopped.await;
        },
    ));
    processor.run(shutdown).await;
    let _ = stop_http.send(());
    http.await??;
    tracing::info!("processor stopped");
    Ok(())
}
