//! Guard rails: argument bounds, error codes in `extensions`, and the
//! extension that gives every error a code and times every query field.
//!
//! Codes: `UNAUTHENTICATED`, `BAD_REQUEST` (not a GraphQL request),
//! `GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED` (unknown fields and
//! the like), `QUERY_TOO_DEEP`, `QUERY_TOO_COMPLEX`, `BAD_USER_INPUT` (an
//! argument out of range, with `field` naming it), `STORE_UNAVAILABLE` and
//! `INTERNAL_SERVER_ERROR`. Store failures are logged in full and answered
//! without internals.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextResolve, NextValidation,
    ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    ErrorExtensions, ServerError, ServerResult, ValidationResult, Value, Variables,
};
use event_store::StoreError;

/// The most items a list or page returns.
pub const MAX_LIST: i32 = 1000;
/// The most cohorts (and periods) `retention` computes.
pub const MAX_RETENTION_WINDOWS: i32 = 90;
/// The longest range `eventCount` answers in hourly buckets.
pub const MAX_HOUR_BUCKET_DAYS: i64 = 31;
/// The longest event type or user id the event contract accepts.
pub const MAX_KEY_CHARS: usize = 256;

/// An argument the caller must change: code `BAD_USER_INPUT`, naming it.
pub fn bad_input(field: &str, reason: impl std::fmt::Display) -> async_graphql::Error {
    let field = field.to_string();
    async_graphql::Error::new(format!("{field}: {reason}")).extend_with(move |_, ext| {
        ext.set("code", "BAD_USER_INPUT");
        ext.set("field", field.as_str());
    })
}

/// `value` within `1..=max`, else a `BAD_USER_INPUT` naming `field`.
pub fn bounded(field: &str, value: i32, max: i32) -> async_graphql::Result<usize> {
    if (1..=max).contains(&value) {
        Ok(value as usize)
    } else {
        Err(bad_input(
            field,
            format!("must be between 1 and {max}, got {value}"),
        ))
    }
}

/// A non-empty key of at most [`MAX_KEY_CHARS`] characters.
pub fn key(field: &str, value: String) -> async_graphql::Result<String> {
    if value.is_empty() {
        Err(bad_input(field, "must not be empty"))
    } else if value.chars().count() > MAX_KEY_CHARS {
        Err(bad_input(
            field,
            format!("must be at most {MAX_KEY_CHARS} characters"),
        ))
    } else {
        Ok(value)
    }
}

/// A store failure as the client sees it: no internals, a retryable code.
pub fn store_failure(err: StoreError) -> async_graphql::Error {
    tracing::error!(error = %err, "hot store read failed");
    let (code, message) = match err {
        StoreError::Throttled(_)
        | StoreError::Unavailable(_)
        | StoreError::Conflict(_)
        | StoreError::Denied(_) => (
            "STORE_UNAVAILABLE",
            "the event store is unavailable; retry shortly",
        ),
        StoreError::Invalid(_) => (
            "INTERNAL_SERVER_ERROR",
            "stored data could not be read; the operators were told",
        ),
    };
    async_graphql::Error::new(message).extend_with(move |_, ext| ext.set("code", code))
}

fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        Value::String(code) => Some(code),
        _ => None,
    }
}

/// Gives `error` `code` unless it has one; counts it.
fn with_code(mut error: ServerError, code: &str) -> ServerError {
    if code_of(&error).is_none() {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
    let code = code_of(&error).unwrap_or(code).to_string();
    metrics::counter!("graphql_errors_total", "code" => code).increment(1);
    error
}

/// The code of a validation error, from async-graphql's messages (pinned by tests).
fn validation_code(message: &str) -> &'static str {
    if message.starts_with("Query is nested too deep") {
        "QUERY_TOO_DEEP"
    } else if message.starts_with("Query is too complex") {
        "QUERY_TOO_COMPLEX"
    } else if message.starts_with("Invalid value for argument")
        || message.starts_with("Expected input type")
    {
        "BAD_USER_INPUT"
    } else {
        "GRAPHQL_VALIDATION_FAILED"
    }
}

/// Codes every error and records `graphql_resolver_duration_seconds{field}`
/// for each query field.
pub struct Observe;

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Observe)
    }
}

#[async_trait::async_trait]
impl Extension for Observe {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, "GRAPHQL_PARSE_FAILED"))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let code = validation_code(&e.message);
                    with_code(e, code)
                })
                .collect()
        })
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.parent_type != "Query" {
            return next.run(ctx, info).await;
        }
        let field = info.name.to_string();
        let start = Instant::now();
        let result = next.run(ctx, info).await;
        metrics::histogram!("graphql_resolver_duration_seconds", "field" => field)
            .record(start.elapsed().as_secs_f64());
        result.map_err(|e| {
            // Argument values that did not parse (async-graphql's own message).
            let code = if e.message.starts_with("Failed to parse") {
                "BAD_USER_INPUT"
            } else {
                "INTERNAL_SERVER_ERROR"
            };
            with_code(e, code)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_argument() {
        assert_eq!(bounded("limit", 1, MAX_LIST).ok(), Some(1));
        assert_eq!(bounded("limit", 1000, MAX_LIST).ok(), Some(1000));
        for bad in [0, -5, 1001] {
            let err = bounded("limit", bad, MAX_LIST).expect_err("out of range");
            assert!(err.message.starts_with("limit: must be between 1 and 1000"));
        }
        assert!(key("userId", String::new()).is_err());
        assert!(key("userId", "u".repeat(257)).is_err());
        assert_eq!(key("userId", "u-1".into()).ok(), Some("u-1".into()));
    }

    #[test]
    fn store_failures_do_not_leak_internals() {
        let err = store_failure(StoreError::Unavailable(
            "dispatch failure: http://10.0.0.5:8000 connection refused".into(),
        ));
        assert!(!err.message.contains("10.0.0.5"));
        let ext = err.extensions.expect("extensions");
        assert_eq!(ext.get("code"), Some(&Value::from("STORE_UNAVAILABLE")));
    }
}
