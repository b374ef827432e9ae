//! The platform in one process, for a newcomer's first run and for tests.
//!
//! The broker is librdkafka's mock cluster: a Kafka-protocol broker that
//! listens on loopback, so `kcat` or any Kafka client can connect to it.
//! The services run in-process behind one port, routed by the same path
//! rules the load balancer has in AWS. The processor writes to the embedded
//! stores: SQLite for hot data and a directory of Parquet files for the
//! archive, under the data directory; `graphql` reads the same SQLite store
//! and serves the dashboard at `/`. The stores are kept across restarts
//! (`fresh` empties them); the broker keeps nothing, so each start's broker
//! is a new cluster to the stores (see `ProcessorConfig::broker_run`): its
//! offsets start at 0 again without being taken for redeliveries.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use event_common::auth::{self, JwtConfig};
use event_common::lifecycle::{self, Health};
use event_common::platform::{
    PathPattern, CONSUMER_GROUP, DLQ_TOPIC, EVENTS_TOPIC, GRAPHQL_PATHS, INGEST_PATHS, TOPICS,
};
use event_common::telemetry;
use event_store::cold::local::LocalColdStore;
use event_store::hot::sqlite::SqliteHotStore;
use event_store::hot::HotStoreKind;
use graphql::{Graphql, GraphqlConfig};
use ingest::{Ingest, IngestConfig};
use processor::{Processor, ProcessorConfig, Stores};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tower::ServiceExt;

/// Options of the local platform.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Front door port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// Partitions of the events topic.
    pub partitions: i32,
    /// Where the embedded stores live, kept across restarts.
    pub data_dir: PathBuf,
    /// Empty the stores first.
    pub fresh: bool,
}

/// A running local platform. Not `Send`: the embedded broker lives on the
/// task that started it.
pub struct DevPlatform {
    broker: MockCluster<'static, DefaultProducerContext>,
    listener: tokio::net::TcpListener,
    ingest: Ingest,
    processor: Processor,
    graphql: Graphql,
    data_dir: PathBuf,
    token: String,
}

impl DevPlatform {
    /// Starts the broker and the services; the front door listens when this
    /// returns, and serves once [`DevPlatform::serve`] is called.
    pub async fn start(options: DevOptions) -> anyhow::Result<Self> {
        let broker = MockCluster::new(1).context("starting the embedded broker")?;
        for (topic, partitions) in TOPICS {
            // The events topic's partitions are the user's choice here.
            let partitions = if topic == EVENTS_TOPIC {
                options.partitions
            } else {
                i32::try_from(partitions).unwrap_or(1)
            };
            broker
                .create_topic(topic, partitions, 1)
                .with_context(|| format!("creating {topic}"))?;
        }
        let bootstrap = broker.bootstrap_servers();

        let ingest = Ingest::new(&IngestConfig::for_dev(&bootstrap, EVENTS_TOPIC))
            .context("starting ingest")?;
        let mut processor_config =
            ProcessorConfig::for_dev(&bootstrap, EVENTS_TOPIC, DLQ_TOPIC, CONSUMER_GROUP);
        // Each start's broker is a new cluster to the stores (offsets from 0 again).
        processor_config.broker_run = Some(uuid::Uuid::now_v7().simple().to_string());
        let hot = open_hot_store(
            &options.data_dir,
            processor_config.hot_ttl_days,
            options.fresh,
        )?;
        let stores = Stores {
            hot: hot.clone(),
            cold: Arc::new(LocalColdStore::new(&options.data_dir)?),
        };
        let processor =
            Processor::new(processor_config, stores).context("starting the processor")?;
        let graphql = Graphql::new(
            &GraphqlConfig::for_dev(HotStoreKind::Sqlite(options.data_dir.join(HOT_STORE_FILE))),
            hot,
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .with_context(|| {
                format!(
                    "binding 127.0.0.1:{} (choose another with --port)",
                    options.port
                )
            })?;
        let token = auth::mint(
            &JwtConfig::for_dev(),
            "dev-user",
            Duration::from_secs(24 * 3600),
            None,
        )?;
        Ok(Self {
            broker,
            listener,
            ingest,
            processor,
            graphql,
            data_dir: options.data_dir,
            token,
        })
    }

    /// The front door's URL.
    pub fn url(&self) -> String {
        match self.listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(_) => "http://127.0.0.1".into(),
        }
    }

    /// The embedded broker's bootstrap address.
    pub fn bootstrap_servers(&self) -> String {
        self.broker.bootstrap_servers()
    }

    /// A development JWT, valid for a day.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// What a newcomer needs to start sending events.
    pub fn banner(&self) -> String {
        let url = self.url();
        format!(
            "event platform running\n\
             \x20 front door:  {url}  (/events, /v1/events, /graphql, /health/ready, /metrics, /openapi.json)\n\
             \x20 dashboard:   {url}/#token={token}\n\
             \x20 broker:      {broker}  (topics {EVENTS_TOPIC}, {DLQ_TOPIC}; try: kcat -b {broker} -t {EVENTS_TOPIC} -C)\n\
             \x20 data:        {data}  (hot.sqlite3, and raw/dt=.../hour=.../*.parquet; kept, --fresh empties)\n\
             \x20 dev JWT:     {token}\n\
             \x20 try:         curl -s -X POST {url}/events -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n\
             \x20                -d '{{\"event_type\":\"page_view\",\"user_id\":\"user-001\",\"payload\":{{\"page\":\"/home\"}}}}'\n\
             Ctrl-C drains and stops.",
            broker = self.bootstrap_servers(),
            data = self.data_dir.display(),
            token = self.token,
        )
    }

    /// Serves until `shutdown` resolves, then drains and stops every part.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let platform_health = platform_health(vec![
            self.ingest.health(),
            self.processor.health(),
            self.graphql.health(),
        ]);
        let front = front_door(
            self.ingest.router(),
            self.graphql.router(),
            platform_health.clone(),
        )?;
        // One signal stops everything: the front door first, then the processor.
        let (stop_processor, processor_stopped) = tokio::sync::oneshot::channel::<()>();
        let processor = tokio::spawn(self.processor.run(async move {
            let _ = processor_stopped.await;
        }));
        lifecycle::serve(self.listener, front, platform_health, shutdown).await?;
        self.ingest.close().await;
        let _ = stop_processor.send(());
        processor.await.context("processor task")?;
        drop(self.broker);
        Ok(())
    }
}

/// The hot store's file under the data directory.
const HOT_STORE_FILE: &str = "hot.sqlite3";

/// Opens the hot store under `data_dir`, emptying the stores first if `fresh`.
fn open_hot_store(
    data_dir: &std::path::Path,
    ttl_days: u32,
    fresh: bool,
) -> anyhow::Result<Arc<SqliteHotStore>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    if fresh {
        // Remove only what the stores own, never anything else in a directory the user named.
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{HOT_STORE_FILE}{suffix}");
            gone(std::fs::remove_file(data_dir.join(&file)), &file)?;
        }
        gone(std::fs::remove_dir_all(data_dir.join("raw")), "raw/")?;
    }
    Ok(Arc::new(SqliteHotStore::open(
        &data_dir.join(HOT_STORE_FILE),
        ttl_days,
    )?))
}

/// A removal's result, where "it was not there" is success too.
fn gone(removed: std::io::Result<()>, what: &str) -> anyhow::Result<()> {
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {what}"))
        }
        _ => Ok(()),
    }
}

/// Readiness of the whole platform: every service ready.
fn platform_health(services: Vec<Health>) -> Health {
    let services = Arc::new(services);
    Health::new(
        "platform",
        Arc::new(move || {
            let services = services.clone();
            Box::pin(async move {
                for service in services.iter() {
                    service.ready().await?;
                }
                Ok(())
            })
        }),
    )
}

/// The load balancer's path rules, from the same definitions `provision`
/// gives the load balancer: ingest's and graphql's paths, and graphql for
/// everything else (the dashboard at `/`); `/health*` answers the whole
/// platform's readiness and `/metrics` the shared registry.
fn front_door(ingest: Router, graphql: Router, health: Health) -> anyhow::Result<Router> {
    let mut rules: Vec<(PathPattern, Router)> = Vec::new();
    for (patterns, router) in [(&INGEST_PATHS[..], &ingest), (&GRAPHQL_PATHS[..], &graphql)] {
        for pattern in patterns {
            let pattern = PathPattern::new(pattern).map_err(anyhow::Error::msg)?;
            rules.push((pattern, router.clone()));
        }
    }
    let rules = Arc::new(rules);
    Ok(Router::new()
        .merge(health.router())
        .route("/metrics", get(telemetry::metrics_handler))
        .fallback(move |req: Request| {
            let (rules, graphql) = (rules.clone(), graphql.clone());
            async move { route(&rules, graphql, req).await }
        }))
}

async fn route(rules: &[(PathPattern, Router)], default: Router, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let target = rules
        .iter()
        .find(|(pattern, _)| pattern.matches(&path))
        .map_or(default, |(_, target)| target.clone());
    match target.oneshot(req).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;

    use super::*;

    /// A service that answers every path with its own name.
    fn named(name: &'static str) -> Router {
        Router::new().fallback(move || async move { name })
    }

    async fn answer(front: &Router, path: &str) -> anyhow::Result<String> {
        let request = Request::builder().uri(path).body(Body::empty())?;
        let response = front.clone().oneshot(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_front_door_routes_by_the_load_balancers_rules() -> anyhow::Result<()> {
        let health = Health::new("platform", Arc::new(|| Box::pin(async { Ok(()) })));
        let front = front_door(named("ingest"), named("graphql"), health)?;
        for (path, service) in [
            ("/events", "ingest"),
            ("/events/batch", "ingest"),
            ("/v1/events", "ingest"),
            ("/openapi.json", "ingest"),
            ("/graphql", "graphql"),
            ("/", "graphql"),
            ("/openapi.json/x", "graphql"),
            ("/anything", "graphql"),
        ] {
            assert_eq!(answer(&front, path).await?, service, "{path}");
        }
        Ok(())
    }
}
