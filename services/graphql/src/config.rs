//! GraphQL service configuration: the reference platform's variable names,
//! the hot store to read, and the guard rails' limits.

use event_common::auth::JwtConfig;
use event_common::config::{ConfigError, Env};
use event_store::aws::AwsSettings;
use event_store::hot::HotStoreKind;

/// The largest `MAX_RANGE_DAYS` accepted (ten years): ranges are computed
/// with date arithmetic that must stay far from its limits.
const MAX_RANGE_DAYS_CEILING: i64 = 3660;

/// The guard rails every query passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// `MAX_QUERY_DEPTH` (default 15: GraphiQL's introspection query fits,
    /// and no query of this schema comes near it).
    pub max_depth: usize,
    /// `MAX_QUERY_COMPLEXITY` (default 20000): a list field costs its
    /// `limit` (or `first`) times its selection, so one page of 1,000 full
    /// events (about 10,000) fits and a handful of them does not.
    pub max_complexity: usize,
    /// `MAX_RANGE_DAYS` (default 366): the longest time range a query may span.
    pub max_range_days: i64,
    /// `QUERY_TIMEOUT_MS` (default 10000): the longest a query may run
    /// before it is answered `QUERY_TIMEOUT`.
    pub max_execution: std::time::Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: 15,
            max_complexity: 20_000,
            max_range_days: 366,
            max_execution: std::time::Duration::from_secs(10),
        }
    }
}

/// Everything `graphql` reads at start-up.
#[derive(Debug, Clone)]
pub struct GraphqlConfig {
    /// `PORT` (default 8001), used by the binary to bind.
    pub port: u16,
    /// `HOT_STORE` (`dynamodb`, or `sqlite` with `SQLITE_PATH`).
    pub hot_store: HotStoreKind,
    /// `DYNAMODB_TABLE` (default `EventsHot`).
    pub dynamodb_table: String,
    /// `HOT_WRITE_SHARDS` (default 1): must match the processor's, so reads
    /// visit every shard of an index key.
    pub hot_write_shards: u32,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`.
    pub aws: AwsSettings,
    /// JWT settings (`JWT_SECRET_KEY`, `JWT_ALGORITHM`, `JWT_AUDIENCE`, `JWT_KEYS`).
    pub jwt: JwtConfig,
    /// Depth, complexity and range limits.
    pub limits: QueryLimits,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins, `*` for any; none by default.
    pub cors_allowed_origins: Vec<String>,
}

impl GraphqlConfig {
    /// Reads the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = QueryLimits::default();
        let limits = QueryLimits {
            max_depth: env.parse("MAX_QUERY_DEPTH", defaults.max_depth)?,
            max_complexity: env.parse("MAX_QUERY_COMPLEXITY", defaults.max_complexity)?,
            max_range_days: env.parse("MAX_RANGE_DAYS", defaults.max_range_days)?,
            max_execution: std::time::Duration::from_millis(env.parse(
                "QUERY_TIMEOUT_MS",
                defaults.max_execution.as_millis() as u64,
            )?),
        };
        if !(1..=MAX_RANGE_DAYS_CEILING).contains(&limits.max_range_days) {
            return Err(ConfigError::invalid(
                "MAX_RANGE_DAYS",
                &limits.max_range_days.to_string(),
                &format!("must be between 1 and {MAX_RANGE_DAYS_CEILING}"),
            ));
        }
        Ok(Self {
            port: env.parse("PORT", 8001)?,
            hot_store: HotStoreKind::from_env(env)?,
            dynamodb_table: env.string("DYNAMODB_TABLE", "EventsHot"),
            hot_write_shards: env.parse("HOT_WRITE_SHARDS", 1)?,
            aws: AwsSettings {
                region: env.string("AWS_REGION", "us-east-1"),
                endpoint_url: env.optional("AWS_ENDPOINT_URL"),
                static_credentials: None,
            },
            jwt: JwtConfig::from_env(env, env.dev_mode())?,
            limits,
            cors_allowed_origins: env.list("CORS_ALLOWED_ORIGINS"),
        })
    }

    /// Development defaults reading `hot_store`.
    pub fn for_dev(hot_store: HotStoreKind) -> Self {
        Self {
            port: 8001,
            hot_store,
            dynamodb_table: "EventsHot".into(),
            hot_write_shards: 1,
            aws: AwsSettings {
                region: "us-east-1".into(),
                endpoint_url: None,
                static_credentials: None,
            },
            jwt: JwtConfig::for_dev(),
            limits: QueryLimits::default(),
            cors_allowed_origins: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_limits_and_store_from_the_environment() {
        let env = Env::from_pairs([
            ("ENVIRONMENT", "development"),
            ("HOT_STORE", "sqlite"),
            ("SQLITE_PATH", "/tmp/x.sqlite3"),
            ("MAX_QUERY_DEPTH", "9"),
        ]);
        let config = GraphqlConfig::from_env(&env).expect("valid");
        assert_eq!(config.port, 8001);
        assert_eq!(
            config.hot_store,
            HotStoreKind::Sqlite("/tmp/x.sqlite3".into())
        );
        assert_eq!(config.limits.max_depth, 9);
        assert_eq!(config.limits.max_complexity, 20_000);
    }

    #[test]
    fn refuses_range_limits_out_of_bounds_by_name() {
        for bad in ["0", "100000000000000"] {
            let env = Env::from_pairs([("ENVIRONMENT", "development"), ("MAX_RANGE_DAYS", bad)]);
            let err = GraphqlConfig::from_env(&env).expect_err("invalid");
            assert!(err.to_string().contains("MAX_RANGE_DAYS"), "{err}");
        }
    }
}
