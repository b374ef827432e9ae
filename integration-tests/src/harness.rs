//! Services started in-process on `127.0.0.1:0` against the test backend.

use std::sync::Arc;
use std::time::Duration;

use event_common::auth::{self, JwtConfig};
use event_common::event::Event;
use event_store::hot::{HotReader, HotStoreKind};
use graphql::{Graphql, GraphqlConfig};
use ingest::IngestConfig;
use serde_json::Value;

use crate::stores::{at, event};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running ingest service; stops (draining) when dropped or on [`IngestServer::stop`].
pub struct IngestServer {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// A valid token for subject `test-user`.
    pub token: String,
    /// The configuration it runs with.
    pub config: IngestConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl IngestServer {
    /// Starts ingest publishing to `topic` on `bootstrap`, with development
    /// settings changed by `tweak`.
    pub async fn start(
        bootstrap: &str,
        topic: &str,
        tweak: impl FnOnce(&mut IngestConfig),
    ) -> anyhow::Result<Self> {
        let mut config = IngestConfig::for_dev(bootstrap, topic);
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let token = auth::mint(&config.jwt, "test-user", Duration::from_secs(3600), None)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ingest::run(config.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            url,
            token,
            config,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The development JWT settings the server verifies with.
    pub fn jwt(&self) -> &JwtConfig {
        &self.config.jwt
    }

    /// Stops the server: drains, flushes the producer, and returns how `run` ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for IngestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The usual start of an ingest test: a broker, a fresh topic on it, and an
/// ingest publishing there.
pub struct IngestSetup {
    /// The broker.
    pub broker: crate::backend::Broker,
    /// The test's own topic.
    pub topic: String,
    /// Ingest, publishing to `topic`.
    pub server: IngestServer,
}

/// Starts a broker, creates a topic with `partitions`, and starts ingest on
/// it with development settings changed by `tweak`.
pub async fn ingest_with_broker(
    partitions: i32,
    tweak: impl FnOnce(&mut IngestConfig),
) -> anyhow::Result<IngestSetup> {
    let broker = crate::backend::Broker::start().await?;
    let topic = crate::unique_name("events");
    broker.create_topic(&topic, partitions).await?;
    let server = IngestServer::start(&broker.bootstrap_servers(), &topic, tweak).await?;
    Ok(IngestSetup {
        broker,
        topic,
        server,
    })
}

/// The topics and group of a processor test, with unique names.
pub struct ProcessorTopics {
    /// The events topic.
    pub events: String,
    /// The dead-letter topic (one partition).
    pub dlq: String,
    /// The consumer group.
    pub group: String,
}

impl ProcessorTopics {
    /// Creates the events topic with `partitions` and the dead-letter topic on `broker`.
    pub async fn create(broker: &crate::backend::Broker, partitions: i32) -> anyhow::Result<Self> {
        let topics = Self {
            events: crate::unique_name("events"),
            dlq: crate::unique_name("dlq"),
            group: crate::unique_name("processors"),
        };
        broker.create_topic(&topics.events, partitions).await?;
        broker.create_topic(&topics.dlq, 1).await?;
        Ok(topics)
    }
}

/// The events ingest accepted: what was `sent` (client JSON), with the ids
/// ingest's `reply` gave them, in order.
pub fn accepted(sent: &[Value], reply: &Value) -> Vec<Event> {
    let ids = reply["event_ids"].as_array().expect("accepted event ids");
    sent.iter()
        .zip(ids)
        .map(|(item, id)| {
            let mut e = event(
                item["event_type"].as_str().unwrap_or_default(),
                item["user_id"].as_str().unwrap_or_default(),
                at(item["timestamp"].as_str().unwrap_or_default()),
                0,
            );
            e.event_id = id.as_str().and_then(|s| s.parse().ok()).expect("uuid");
            e
        })
        .collect()
}

/// A running processor (in this process); stops, draining, on
/// [`ProcessorServer::stop`] or [`ProcessorServer::drain`].
pub struct ProcessorServer {
    /// Bootstrap servers, group and topic, to know when it caught up.
    source: (String, String, String),
    /// Its readiness.
    pub health: event_common::lifecycle::Health,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ProcessorServer {
    /// Starts a processor with `config` writing to `stores`.
    pub fn start(
        config: processor::ProcessorConfig,
        stores: processor::Stores,
    ) -> anyhow::Result<Self> {
        // Logs are captured per test and shown when it fails.
        // No OTLP endpoint here, so there is no export to keep alive.
        let _no_export = event_common::telemetry::init_tracing(
            &event_common::config::Env::from_pairs([("ENVIRONMENT", "test")]),
            "test",
        );
        let source = (
            config.kafka_bootstrap_servers.clone(),
            config.kafka_consumer_group.clone(),
            config.kafka_topic.clone(),
        );
        let processor = processor::Processor::new(config, stores)?;
        let health = processor.health();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(processor.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            source,
            health,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Waits until readiness fails with a reason containing `text`, and
    /// until `timeout`; returns the reason.
    pub async fn unready_with(&self, text: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Err(reason) = self.health.ready().await {
                if reason.contains(text) {
                    return Ok(reason);
                }
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "not unready with {text:?} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its group's committed offsets on its topic, by partition.
    pub fn committed(&self) -> anyhow::Result<std::collections::HashMap<i32, i64>> {
        let (bootstrap, group, topic) = &self.source;
        crate::kafka::committed_offsets(bootstrap, group, topic)
    }

    /// Waits until its group has committed everything on its topic, then
    /// stops; fails when the group makes no progress for `stall_timeout`.
    pub async fn drain(self, stall_timeout: Duration) -> anyhow::Result<()> {
        let (bootstrap, group, topic) = &self.source;
        crate::kafka::wait_until_caught_up(bootstrap, group, topic, stall_timeout).await?;
        self.stop().await
    }

    /// Stops: writes and commits what is buffered, then returns.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await?;
        }
        Ok(())
    }
}

impl Drop for ProcessorServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A running graphql service over a given hot store; stops when dropped.
pub struct GraphqlServer {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// A valid token for subject `test-user`.
    pub token: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl GraphqlServer {
    /// Starts graphql over `hot` with development settings changed by `tweak`.
    pub async fn start(
        hot: Arc<dyn HotReader>,
        tweak: impl FnOnce(&mut GraphqlConfig),
    ) -> anyhow::Result<Self> {
        let mut config = GraphqlConfig::for_dev(HotStoreKind::DynamoDb);
        tweak(&mut config);
        let api = Graphql::new(&config, hot);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let token = auth::mint(&config.jwt, "test-user", Duration::from_secs(3600), None)?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(event_common::lifecycle::serve(
            listener,
            api.router(),
            api.health(),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            url,
            token,
            client: reqwest::Client::new(),
            stop: Some(stop),
        })
    }

    /// Posts `body` to `/graphql` with `token` (none: no header); the status and JSON body.
    pub async fn post(&self, body: &Value, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
        let mut request = self.client.post(format!("{}/graphql", self.url)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// Runs `query` with `variables` as `test-user`; the whole response (`data`, `errors`).
    pub async fn query(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = serde_json::json!({"query": query, "variables": variables});
        let (status, response) = self.post(&body, Some(&self.token)).await?;
        anyhow::ensure!(status == 200, "HTTP {status}: {response}");
        Ok(response)
    }

    /// Runs `query` and returns `data`, failing on any error.
    pub async fn data(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self.query(query, variables).await?;
        anyhow::ensure!(response.get("errors").is_none(), "errors: {response}");
        Ok(response["data"].clone())
    }
}

impl Drop for GraphqlServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
