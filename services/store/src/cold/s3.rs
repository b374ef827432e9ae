//! The archive in the raw-events S3 bucket. A `PutObject` that returned is
//! durable; rewriting a key replaces it (a new version where versioning is on).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::{encode_objects, ColdStore};
use crate::hot::Batch;
use crate::StoreError;

/// Objects in one bucket.
#[derive(Debug, Clone)]
pub struct S3ColdStore {
    client: Client,
    bucket: String,
}

impl S3ColdStore {
    /// An archive in `bucket`. With a custom endpoint (an emulator) it uses
    /// path-style addresses, which need no DNS per bucket.
    pub fn new(config: &SdkConfig, bucket: &str) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(config);
        if config.endpoint_url().is_some() {
            builder = builder.force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: bucket.to_string(),
        }
    }

    /// The bucket it writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The SDK client, for tests and the provisioner.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn s3_err(what: &str, e: impl std::fmt::Display + std::fmt::Debug) -> StoreError {
    let text = format!("{e:?}");
    if text.contains("SlowDown") || text.contains("Throttl") {
        StoreError::Throttled(format!("s3 {what}: {e}"))
    } else if text.contains("AccessDenied") {
        StoreError::Denied(format!("s3 {what}: {e}"))
    } else {
        StoreError::Unavailable(format!("s3 {what}: {e}"))
    }
}

#[async_trait]
impl ColdStore for S3ColdStore {
    async fn write(&self, batch: &Batch) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        for (key, body) in encode_objects(batch)? {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/vnd.apache.parquet")
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| s3_err("PutObject", e))?;
            keys.push(key);
        }
        Ok(keys)
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_err("HeadBucket", e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_err("ListObjectsV2", e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err("GetObject", e))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| s3_err("GetObject body", e))?;
        Ok(bytes.into_bytes().to_vec())
    }
}
