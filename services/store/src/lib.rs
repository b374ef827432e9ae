//! Where the processor writes and the GraphQL API reads.
//!
//! - [`hot`]: the hot store port and its adapters, DynamoDB (`EventsHot`)
//!   and SQLite (embedded), with exact, redelivery-proof rollups.
//! - [`rollup`]: the pure computation of a batch's counter changes.
//! - [`cold`]: the archive port and its adapters, S3 and a local directory,
//!   writing Parquet under `raw/dt=YYYY-MM-DD/hour=HH/`.
//! - [`aws`]: SDK configuration shared by the AWS adapters.

pub mod aws;
pub mod cold;
pub mod hot;
pub mod rollup;

/// A store operation that did not succeed. Every kind is worth retrying
/// later except [`StoreError::Invalid`]; none means the data was bad.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store refused for capacity (DynamoDB throttling, S3 SlowDown).
    #[error("throttled: {0}")]
    Throttled(String),
    /// The store could not be reached or failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Another writer advanced the partition's watermark first.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data that cannot be read back; needs an operator.
    #[error("invalid stored data: {0}")]
    Invalid(String),
    /// The credentials may not make this call (AWS's message names the
    /// action and the resource); retrying changes nothing until an operator
    /// grants it.
    #[error("denied: {0}")]
    Denied(String),
}
