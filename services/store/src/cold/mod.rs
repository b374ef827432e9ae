//! The cold store port: the raw-events archive.
//!
//! A batch is written as one Parquet object per UTC hour of its events'
//! timestamps, under `raw/dt=YYYY-MM-DD/hour=HH/`, named from (topic,
//! partition, Kafka cluster id, first offset, last offset): a new broker's
//! offsets start again from 0, and its cluster id keeps its names apart. The processor cuts a redelivered
//! range at the same boundaries as the first delivery (the hot store's
//! watermark says where), so a redelivered batch overwrites the same
//! objects instead of duplicating them. Parquet (Snappy) is read as it is by
//! Athena, DuckDB and Spark.

pub mod local;
pub mod parquet;
#[cfg(feature = "aws")]
pub mod s3;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use event_common::config::{ConfigError, Env};

use crate::hot::{Batch, Delivered};
use crate::rollup::hour_of;
use crate::StoreError;

/// Which cold store a service writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColdStoreKind {
    /// S3 bucket `S3_BUCKET`.
    S3,
    /// A local directory (`provision dev`).
    Directory(PathBuf),
}

impl ColdStoreKind {
    /// `COLD_STORE`: `s3` (default), or `directory` with `COLD_STORE_DIR`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.string("COLD_STORE", "s3").as_str() {
            "s3" if crate::aws::SUPPORTED => Ok(Self::S3),
            "s3" => Err(ConfigError::invalid(
                "COLD_STORE",
                "s3",
                "this build has no AWS support (built without the `aws` feature)",
            )),
            "directory" => Ok(Self::Directory(
                env.string("COLD_STORE_DIR", "raw-events").into(),
            )),
            other => Err(ConfigError::invalid(
                "COLD_STORE",
                other,
                "expected s3 or directory",
            )),
        }
    }
}

/// Opens the cold store `kind` names; S3 needs `sdk` and writes to `bucket`.
pub fn open(
    kind: &ColdStoreKind,
    sdk: Option<&crate::aws::SdkConfig>,
    bucket: &str,
) -> Result<Arc<dyn ColdStore>, StoreError> {
    Ok(match (kind, sdk) {
        (ColdStoreKind::Directory(dir), _) => Arc::new(local::LocalColdStore::new(dir)?),
        #[cfg(feature = "aws")]
        (ColdStoreKind::S3, Some(sdk)) => Arc::new(s3::S3ColdStore::new(sdk, bucket)),
        #[cfg(not(feature = "aws"))]
        (ColdStoreKind::S3, Some(sdk)) => match *sdk {},
        (ColdStoreKind::S3, None) => {
            let _ = bucket;
            return Err(StoreError::Unavailable("S3 needs AWS settings".into()));
        }
    })
}

/// The archive port.
#[async_trait]
pub trait ColdStore: Send + Sync {
    /// Writes the batch's objects durably; returns their keys.
    async fn write(&self, batch: &Batch) -> Result<Vec<String>, StoreError>;

    /// Answers when the archive is reachable (readiness).
    async fn check(&self) -> Result<(), StoreError>;

    /// Keys under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// The bytes of one object.
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
}

/// The objects of a batch, encoded: (key, Parquet bytes), one per hour of
/// the events' timestamps.
pub fn encode_objects(batch: &Batch) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    objects_of(batch)
        .into_iter()
        .map(|(key, events)| Ok((key, parquet::encode(&events, batch.partition)?)))
        .collect()
}

/// The events of a batch by object key, grouped by the hour of their timestamp.
fn objects_of(batch: &Batch) -> BTreeMap<String, Vec<&Delivered>> {
    let mut objects: BTreeMap<String, Vec<&Delivered>> = BTreeMap::new();
    for delivered in &batch.events {
        objects
            .entry(object_key(batch, hour_of(delivered.event.timestamp)))
            .or_default()
            .push(delivered);
    }
    objects
}

/// `raw/dt=YYYY-MM-DD/hour=HH/<topic>-p<partition>-<cluster>-<first>-<last>.parquet`,
/// offsets zero-padded, the cluster id with anything but `[A-Za-z0-9._-]` as `_`.
pub fn object_key(batch: &Batch, hour: DateTime<Utc>) -> String {
    let cluster: String = batch
        .cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "raw/dt={}/hour={}/{}-p{}-{}-{:020}-{:020}.parquet",
        hour.format("%Y-%m-%d"),
        hour.format("%H"),
        batch.topic,
        batch.partition,
        cluster,
        batch.first_offset,
        batch.last_offset
    )
}
