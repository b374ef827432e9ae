//! Processor configuration: the reference platform's variable names, plus
//! batching, backoff and store selection.

use event_common::config::{ConfigError, Env};
use event_store::aws::AwsSettings;
pub use event_store::cold::ColdStoreKind;
pub use event_store::hot::HotStoreKind;

/// Everything the processor reads at start-up.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`.
    pub kafka_bootstrap_servers: String,
    /// `KAFKA_TOPIC` (default `events.raw`).
    pub kafka_topic: String,
    /// `KAFKA_DLQ_TOPIC` (default `events.dlq`).
    pub kafka_dlq_topic: String,
    /// `KAFKA_CONSUMER_GROUP` (default `event-processors`).
    pub kafka_consumer_group: String,
    /// `KAFKA_SESSION_TIMEOUT_MS` (default 10000): how soon the group gives a
    /// crashed member's partitions to another.
    pub kafka_session_timeout_ms: u64,
    /// `KAFKA_MAX_POLL_INTERVAL_MS` (default 600000): how long a batch may
    /// be retried (consumption paused) before this member leaves the group
    /// and its partitions go to another.
    pub kafka_max_poll_interval_ms: u64,
    /// `KAFKA_FETCH_WAIT_MAX_MS` (default 500): longest a fetch waits at
    /// the broker for data. Kafka and Redpanda answer as soon as data comes;
    /// the embedded broker of `provision dev` waits it out, so dev sets it low.
    pub kafka_fetch_wait_max_ms: u32,
    /// `DYNAMODB_TABLE` (default `EventsHot`).
    pub dynamodb_table: String,
    /// `S3_BUCKET` (default `event-platform-raw-events`).
    pub s3_bucket: String,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`.
    pub aws: AwsSettings,
    /// `METRICS_PORT` (default 8002): health and metrics.
    pub metrics_port: u16,
    /// `BATCH_MAX_EVENTS` (default 500): a partition's batch is written at this size...
    pub batch_max_events: usize,
    /// `BATCH_FLUSH_INTERVAL_MS` (default 1000): ...or when its oldest message is this old.
    pub batch_flush_interval_ms: u64,
    /// `STORE_BACKOFF_MAX_MS` (default 30000): longest wait between retries of a failed write.
    pub store_backoff_max_ms: u64,
    /// `HOT_TTL_DAYS` (default 30): how long event items stay in the hot store.
    pub hot_ttl_days: u32,
    /// `HOT_WRITE_SHARDS` (default 1): write sharding of hot index keys.
    pub hot_write_shards: u32,
    /// `HOT_STORE` (`dynamodb`, or `sqlite` with `SQLITE_PATH`).
    pub hot_store: HotStoreKind,
    /// `COLD_STORE` (`s3`, or `directory` with `COLD_STORE_DIR`).
    pub cold_store: ColdStoreKind,
    /// `provision dev` only: this run of its embedded broker, added to the
    /// broker's cluster id. That id (`mockCluster` and a memory address) may
    /// repeat across restarts, and a restarted broker counts offsets from 0
    /// again: taken for the same cluster, its events would look replayed.
    pub broker_run: Option<String>,
}

impl ProcessorConfig {
    /// Reads the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let hot_store = HotStoreKind::from_env(env)?;
        let cold_store = ColdStoreKind::from_env(env)?;
        let batch_max_events: usize = env.parse("BATCH_MAX_EVENTS", 500)?;
        if batch_max_events == 0 {
            return Err(ConfigError::invalid(
                "BATCH_MAX_EVENTS",
                "0",
                "must be at least 1",
            ));
        }
        Ok(Self {
            kafka_bootstrap_servers: env.string("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            kafka_topic: env.string("KAFKA_TOPIC", "events.raw"),
            kafka_dlq_topic: env.string("KAFKA_DLQ_TOPIC", "events.dlq"),
            kafka_consumer_group: env.string("KAFKA_CONSUMER_GROUP", "event-processors"),
            kafka_session_timeout_ms: env.parse("KAFKA_SESSION_TIMEOUT_MS", 10_000)?,
            kafka_max_poll_interval_ms: env.parse("KAFKA_MAX_POLL_INTERVAL_MS", 600_000)?,
            kafka_fetch_wait_max_ms: env.parse("KAFKA_FETCH_WAIT_MAX_MS", 500)?,
            dynamodb_table: env.string("DYNAMODB_TABLE", "EventsHot"),
            s3_bucket: env.string("S3_BUCKET", "event-platform-raw-events"),
            aws: AwsSettings {
                region: env.string("AWS_REGION", "us-east-1"),
                endpoint_url: env.optional("AWS_ENDPOINT_URL"),
                static_credentials: None,
            },
            metrics_port: env.parse("METRICS_PORT", 8002)?,
            batch_max_events,
            batch_flush_interval_ms: env.parse("BATCH_FLUSH_INTERVAL_MS", 1_000)?,
            store_backoff_max_ms: env.parse("STORE_BACKOFF_MAX_MS", 30_000)?,
            hot_ttl_days: env.parse("HOT_TTL_DAYS", 30)?,
            hot_write_shards: env.parse("HOT_WRITE_SHARDS", 1)?,
            hot_store,
            cold_store,
            broker_run: None,
        })
    }

    /// Settings for tests and `provision dev`: the given broker and topic,
    /// short flushes, and the stores given separately.
    pub fn for_dev(bootstrap_servers: &str, topic: &str, dlq_topic: &str, group: &str) -> Self {
        Self {
            kafka_bootstrap_servers: bootstrap_servers.into(),
            kafka_topic: topic.into(),
            kafka_dlq_topic: dlq_topic.into(),
            kafka_consumer_group: group.into(),
            kafka_session_timeout_ms: 6_000,
            kafka_max_poll_interval_ms: 600_000,
            kafka_fetch_wait_max_ms: 10,
            dynamodb_table: "EventsHot".into(),
            s3_bucket: "event-platform-raw-events".into(),
            aws: AwsSettings {
                region: "us-east-1".into(),
                endpoint_url: None,
                static_credentials: None,
            },
            metrics_port: 0,
            batch_max_events: 500,
            // An event shows in queries within about this long (a few more archive files).
            batch_flush_interval_ms: 100,
            store_backoff_max_ms: 2_000,
            hot_ttl_days: 30,
            hot_write_shards: 1,
            hot_store: HotStoreKind::Sqlite("events-hot.sqlite3".into()),
            cold_store: ColdStoreKind::Directory("raw-events".into()),
            broker_run: None,
        }
    }
}
