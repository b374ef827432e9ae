//! Ingest configuration: the reference platform's variable names, typed
//! defaults, units in the names.

use event_common::auth::JwtConfig;
use event_common::config::{ConfigError, Env};
use event_common::event::Limits;

/// Everything `ingest` reads at start-up.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `PORT` (default 8000), used by the binary to bind.
    pub port: u16,
    /// `KAFKA_BOOTSTRAP_SERVERS` (default `localhost:9092`).
    pub kafka_bootstrap_servers: String,
    /// `KAFKA_TOPIC` (default `events.raw`).
    pub kafka_topic: String,
    /// `KAFKA_DELIVERY_TIMEOUT_MS` (default 5000): how long a request waits for
    /// the broker's acknowledgement before it is answered 503.
    pub kafka_delivery_timeout_ms: u64,
    /// `KAFKA_LINGER_MS` (default 0): producer batching delay, in
    /// milliseconds (fractions allowed, as librdkafka takes them). At 0 a
    /// lone request waits only for the broker; under load the producer still
    /// batches what queues while earlier requests are in flight.
    pub kafka_linger_ms: f64,
    /// `KAFKA_COMPRESSION` (default `lz4`).
    pub kafka_compression: String,
    /// Request, batch and event limits (`MAX_EVENT_BYTES`, `MAX_BODY_BYTES`,
    /// `MAX_BATCH_EVENTS`, `MAX_PAYLOAD_DEPTH`, `MAX_FUTURE_SKEW_SECS`).
    pub limits: Limits,
    /// JWT settings (`JWT_SECRET_KEY`, `JWT_ALGORITHM`, `JWT_AUDIENCE`, `JWT_KEYS`).
    pub jwt: JwtConfig,
    /// `RATE_LIMIT_EVENTS_PER_SECOND` per JWT subject (default 10000; 0 turns it off).
    pub rate_limit_events_per_second: u32,
    /// `RATE_LIMIT_BURST_EVENTS` (default twice the rate, at least one batch).
    pub rate_limit_burst_events: u32,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins, `*` for any; none by default.
    pub cors_allowed_origins: Vec<String>,
}

impl IngestConfig {
    /// Reads the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Limits::default();
        let limits = Limits {
            max_event_bytes: env.parse("MAX_EVENT_BYTES", defaults.max_event_bytes)?,
            max_body_bytes: env.parse("MAX_BODY_BYTES", defaults.max_body_bytes)?,
            max_batch_events: env.parse("MAX_BATCH_EVENTS", defaults.max_batch_events)?,
            max_payload_depth: env.parse("MAX_PAYLOAD_DEPTH", defaults.max_payload_depth)?,
            max_future_skew: chrono::Duration::seconds(env.parse(
                "MAX_FUTURE_SKEW_SECS",
                defaults.max_future_skew.num_seconds(),
            )?),
        };
        let rate: u32 = env.parse("RATE_LIMIT_EVENTS_PER_SECOND", 10_000)?;
        let burst_default = rate.saturating_mul(2).max(limits.max_batch_events as u32);
        let burst: u32 = env.parse("RATE_LIMIT_BURST_EVENTS", burst_default)?;
        if rate > 0 && (burst as usize) < limits.max_batch_events {
            return Err(ConfigError::invalid(
                "RATE_LIMIT_BURST_EVENTS",
                &burst.to_string(),
                "must be at least MAX_BATCH_EVENTS, or a full batch could never pass",
            ));
        }
        Ok(Self {
            port: env.parse("PORT", 8000)?,
            kafka_bootstrap_servers: env.string("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            kafka_topic: env.string("KAFKA_TOPIC", "events.raw"),
            kafka_delivery_timeout_ms: env.parse("KAFKA_DELIVERY_TIMEOUT_MS", 5_000)?,
            kafka_linger_ms: env.parse("KAFKA_LINGER_MS", 0.0)?,
            kafka_compression: env.string("KAFKA_COMPRESSION", "lz4"),
            limits,
            jwt: JwtConfig::from_env(env, env.dev_mode())?,
            rate_limit_events_per_second: rate,
            rate_limit_burst_events: burst,
            cors_allowed_origins: env.list("CORS_ALLOWED_ORIGINS"),
        })
    }

    /// Development defaults against `bootstrap_servers`, publishing to `topic`.
    pub fn for_dev(bootstrap_servers: &str, topic: &str) -> Self {
        Self {
            port: 8000,
            kafka_bootstrap_servers: bootstrap_servers.into(),
            kafka_topic: topic.into(),
            kafka_delivery_timeout_ms: 5_000,
            kafka_linger_ms: 0.0,
            kafka_compression: "lz4".into(),
            limits: Limits::default(),
            jwt: JwtConfig::for_dev(),
            rate_limit_events_per_second: 10_000,
            rate_limit_burst_events: 20_000,
            cors_allowed_origins: Vec::new(),
        }
    }
}
