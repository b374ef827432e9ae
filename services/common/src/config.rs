//! Configuration from the environment, with the reference platform's variable
//! names and typed defaults. Services read an [`Env`] snapshot, so tests pass
//! their own values and never mutate the process environment.

use std::collections::HashMap;
use std::str::FromStr;

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value}: {reason}")]
pub struct ConfigError {
    name: String,
    value: String,
    reason: String,
}

impl ConfigError {
    /// `name` had `value`, which is wrong because of `reason`.
    pub fn invalid(name: &str, value: &str, reason: &str) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The current process environment.
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    /// An environment made of the given pairs (for tests and `provision dev`).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// Sets one variable, returning the changed snapshot.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }

    /// The value of `key` if set and not empty.
    pub fn optional(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.is_empty()).cloned()
    }

    /// The value of `key`, or `default`.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.optional(key).unwrap_or_else(|| default.to_string())
    }

    /// The value of `key` parsed as `T`, or `default`; a value that does not
    /// parse is an error naming the variable.
    pub fn parse<T: FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        match self.optional(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                ConfigError::invalid(key, &v, &format!("expected {}", std::any::type_name::<T>()))
            }),
        }
    }

    /// A comma-separated list; empty when unset.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.string(key, "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// `ENVIRONMENT` (default `production`, as in the reference platform).
    pub fn environment(&self) -> String {
        self.string("ENVIRONMENT", "production")
    }

    /// True when `ENVIRONMENT` names a development setting, where the
    /// well-known JWT secret and pretty logs are allowed.
    pub fn dev_mode(&self) -> bool {
        matches!(
            self.environment().as_str(),
            "development" | "dev" | "local" | "test"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_variable_on_error() {
        let env = Env::from_pairs([("PORT", "eighty")]);
        let err = env.parse::<u16>("PORT", 1).expect_err("not a number");
        assert_eq!(err.to_string(), "PORT=eighty: expected u16");
        assert_eq!(env.parse::<u16>("OTHER", 7).ok(), Some(7));
        assert!(!env.dev_mode());
    }
}
