//! S3 buckets with their configuration: tags, public access block, default
//! encryption, versioning, a TLS-only policy and one lifecycle rule. The id
//! is the bucket name.

use std::future::Future;

use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging, Transition,
    TransitionStorageClass, VersioningConfiguration,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::resource::{ResourceKind, Update};
use super::support::{
    absent, deleted, fit_i32, from_props, in_stack_ids, name_and_arn, not_in_place, ours, ours_id,
    prop_tags, required, sdk_tags, sent, sent_ok, tag_map, tags_value, to_props, unbuilt, Tags,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// The id of the bucket's one lifecycle rule.
const LIFECYCLE_RULE: &str = "archive-then-expire";
/// Most keys `DeleteObjects` takes at once.
const DELETE_BATCH: usize = 1000;
/// What S3 answers for a bucket that is not there.
const GONE: &[&str] = &["NoSuchBucket"];

/// A bucket's attributes, in the order a plan lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketProps {
    /// Days after which objects move to `archive_storage_class`.
    pub archive_after_days: Option<i64>,
    /// The storage class objects are archived in (`GLACIER_IR`).
    pub archive_storage_class: Option<String>,
    /// Whether all four public access blocks are on.
    pub block_public_access: bool,
    /// The default encryption's algorithm (`AES256`); `None` without one.
    pub encryption: Option<String>,
    /// Days after which objects (and noncurrent versions) expire.
    pub expire_after_days: Option<i64>,
    /// The bucket's name, its id.
    pub name: String,
    /// Whether the bucket policy denies requests without TLS.
    pub tls_only: bool,
    /// Whether versioning is on.
    pub versioning: bool,
}

/// An S3 bucket.
pub struct S3Bucket;

#[async_trait]
impl ResourceKind for S3Bucket {
    fn updatable(&self) -> &'static [&'static str] {
        &[
            "versioning",
            "encryption",
            "block_public_access",
            "tls_only",
            "archive_after_days",
            "archive_storage_class",
            "expire_after_days",
            "tags",
        ]
    }

    fn holds_data(&self, _recorded: &Props) -> bool {
        true
    }

    // After the services that write to it.
    fn destroy_rank(&self) -> u8 {
        4
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: BucketProps = from_props(props)?;
        // Someone else's bucket of that name answers AccessDenied, one in another
        // region a redirect: not ours either (create says so).
        let not_ours = [
            &["NoSuchBucket", "NoSuchTagSet", "AccessDenied"][..],
            &IN_ANOTHER_REGION[..],
        ]
        .concat();
        let tags = absent(tags_of(cloud, &p.name).await, &not_ours)?;
        Ok(ours_id(cloud, address, tags, p.name))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        // Tags first: NoSuchBucket here means the bucket is gone.
        let tags = match tags_of(cloud, id).await {
            Err(e) if e.code == "NoSuchTagSet" => Ok(Tags::new()),
            other => other,
        };
        let Some(tags) = absent(tags, GONE)? else {
            return Ok(None);
        };
        let Some(config) = read_config(cloud, id).await? else {
            return Ok(None);
        };
        let mut props = to_props(&config);
        props.insert("tags".into(), tags_value(tags));
        let outputs = name_and_arn(id, &arn(id));
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<String> {
        let p: BucketProps = from_props(props)?;
        let name = p.name.as_str();
        // Bucket names are global: one already taken (by another account, in
        // another region, or in this account by something not this stack's)
        // is an error now, before any call could change someone's bucket.
        let taken = |what: &str| {
            CloudError::name_taken(
                "CreateBucket",
                &format!("bucket `{name}` {what}"),
                "bucket.name",
            )
        };
        const NOT_OURS: &str = "exists in this account and is not this stack's";
        const OTHER_ACCOUNT: &str = "belongs to another AWS account";
        let ours = match absent(tags_of(cloud, name).await, GONE) {
            Ok(None) => false,
            Ok(Some(tags)) if ours(cloud, &tags, address) => true,
            Ok(Some(_)) => return Err(taken(NOT_OURS)),
            // Untagged: a create of ours that failed before its tags (then it
            // is empty and is finished here), or someone's bucket with data.
            Err(e) if e.code == "NoSuchTagSet" => {
                if !is_empty(cloud, name).await? {
                    return Err(taken("exists in this account, untagged and not empty"));
                }
                true
            }
            Err(e) if e.code == "AccessDenied" => return Err(taken(OTHER_ACCOUNT)),
            Err(e) if IN_ANOTHER_REGION.contains(&e.code.as_str()) => {
                return Err(taken(&format!(
                    "exists in another region than {}",
                    cloud.region
                )))
            }
            Err(e) => return Err(e),
        };
        let mut request = cloud.s3.create_bucket().bucket(name);
        // us-east-1 is the default and must not be named.
        if cloud.region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(cloud.region.as_str()))
                    .build(),
            );
        }
        match sent("CreateBucket", request.send()).await {
            Ok(_) => {}
            Err(e) if e.code == "BucketAlreadyOwnedByYou" && ours => {}
            Err(e) if e.code == "BucketAlreadyOwnedByYou" => return Err(taken(NOT_OURS)),
            Err(e) if e.code == "BucketAlreadyExists" => return Err(taken(OTHER_ACCOUNT)),
            Err(e) => return Err(e),
        }
        // Tagged first, so a crash after this point leaves a bucket `find` adopts.
        put_tags(cloud, name, props).await?;
        put_public_access_block(cloud, name, p.block_public_access).await?;
        put_encryption(cloud, name, &p).await?;
        if p.versioning {
            put_versioning(cloud, name, true).await?;
        }
        put_tls_policy(cloud, name, p.tls_only).await?;
        put_lifecycle(cloud, name, &p).await?;
        Ok(p.name)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: BucketProps = from_props(props)?;
        let mut lifecycle = false;
        for attribute in changed {
            match attribute.as_str() {
                "versioning" => put_versioning(cloud, id, p.versioning).await?,
                // One rule holds these; it is written once below.
                "archive_after_days" | "expire_after_days" | "archive_storage_class" => {
                    lifecycle = true
                }
                // Not in place for the planner (a change replaces the bucket), but
                // a create found half-made is completed with them.
                "block_public_access" => {
                    put_public_access_block(cloud, id, p.block_public_access).await?
                }
                "encryption" => put_encryption(cloud, id, &p).await?,
                "tls_only" => put_tls_policy(cloud, id, p.tls_only).await?,
                "tags" => put_tags(cloud, id, props).await?,
                other => return Err(not_in_place("UpdateBucket", other)),
            }
        }
        if lifecycle {
            put_lifecycle(cloud, id, &p).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        // A bucket must be empty of every version and delete marker first.
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let request = cloud.s3.list_object_versions().bucket(id);
            let request = request
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take());
            let listed = sent("ListObjectVersions", request.send()).await;
            let Some(out) = absent(listed, GONE)? else {
                return Ok(());
            };
            let mut objects = Vec::new();
            let versions = out.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = out
                .delete_markers()
                .iter()
                .map(|m| (m.key(), m.version_id()));
            for (key, version) in versions.chain(markers) {
                let Some(key) = key else { continue };
                objects.push(
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.map(str::to_string))
                        .build()
                        .map_err(unbuilt("DeleteObjects"))?,
                );
            }
            for batch in objects.chunks(DELETE_BATCH) {
                let delete = Delete::builder()
                    .set_objects(Some(batch.to_vec()))
                    .quiet(true)
                    .build()
                    .map_err(unbuilt("DeleteObjects"))?;
                let request = cloud.s3.delete_objects().bucket(id).delete(delete);
                let answer = sent("DeleteObjects", request.send()).await?;
                if let Some(error) = answer.errors().first() {
                    return Err(CloudError {
                        operation: "DeleteObjects".into(),
                        code: error.code().unwrap_or_default().to_string(),
                        message: format!(
                            "{}: {}",
                            error.key().unwrap_or_default(),
                            error.message().unwrap_or_default()
                        ),
                    });
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_string);
            version_marker = out.next_version_id_marker().map(str::to_string);
        }
        let request = cloud.s3.delete_bucket().bucket(id);
        deleted("DeleteBucket", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        // Buckets elsewhere answer their tags only in their own region.
        let request = cloud.s3.list_buckets().bucket_region(&cloud.region);
        let buckets = request.into_paginator().items().send().try_collect();
        let buckets = sent("ListBuckets", buckets).await?;
        let names = buckets
            .iter()
            .filter_map(|bucket| bucket.name())
            .map(|name| (name.to_string(), name.to_string()));
        let skip = &[
            "NoSuchBucket",
            "NoSuchTagSet",
            "AccessDenied",
            "PermanentRedirect",
        ];
        in_stack_ids(cloud, names.collect::<Vec<_>>(), |name| async move {
            absent(tags_of(cloud, &name).await, skip)
        })
        .await
    }
}

/// What S3 answers for a bucket that lives in another region.
const IN_ANOTHER_REGION: [&str; 3] = [
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
];

async fn is_empty(cloud: &Cloud, name: &str) -> Result<bool> {
    let request = cloud.s3.list_object_versions().bucket(name).max_keys(1);
    let out = sent("ListObjectVersions", request.send()).await?;
    Ok(out.versions().is_empty() && out.delete_markers().is_empty())
}

async fn put_public_access_block(cloud: &Cloud, name: &str, block: bool) -> Result<()> {
    let configuration = PublicAccessBlockConfiguration::builder()
        .block_public_acls(block)
        .ignore_public_acls(block)
        .block_public_policy(block)
        .restrict_public_buckets(block)
        .build();
    let request = cloud.s3.put_public_access_block().bucket(name);
    let request = request.public_access_block_configuration(configuration);
    sent_ok("PutPublicAccessBlock", request.send()).await
}

async fn put_encryption(cloud: &Cloud, name: &str, p: &BucketProps) -> Result<()> {
    let algorithm = required(p.encryption.as_deref(), "encryption")?;
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::from(algorithm))
        .build()
        .map_err(unbuilt("PutBucketEncryption"))?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(by_default)
        .build();
    let configuration = ServerSideEncryptionConfiguration::builder()
        .rules(rule)
        .build()
        .map_err(unbuilt("PutBucketEncryption"))?;
    let request = cloud.s3.put_bucket_encryption().bucket(name);
    let request = request.server_side_encryption_configuration(configuration);
    sent_ok("PutBucketEncryption", request.send()).await
}

/// The TLS-only bucket policy when `tls_only`, none otherwise.
async fn put_tls_policy(cloud: &Cloud, name: &str, tls_only: bool) -> Result<()> {
    if tls_only {
        let request = cloud.s3.put_bucket_policy().bucket(name);
        let request = request.policy(tls_only_policy(name));
        sent_ok("PutBucketPolicy", request.send()).await
    } else {
        let request = cloud.s3.delete_bucket_policy().bucket(name);
        sent_ok("DeleteBucketPolicy", request.send()).await
    }
}

/// The bucket's ARN.
fn arn(name: &str) -> String {
    format!("arn:aws:s3:::{name}")
}

/// The bucket's tags (GetBucketTagging answers NoSuchTagSet for none).
async fn tags_of(cloud: &Cloud, name: &str) -> Result<Tags> {
    let request = cloud.s3.get_bucket_tagging().bucket(name);
    let out = sent("GetBucketTagging", request.send()).await?;
    Ok(tag_map(out.tag_set().iter().map(|t| (t.key(), t.value()))))
}

/// What a Get* call of one part of the configuration answered: `None` when
/// the bucket is gone, `Some(None)` when it answered `unset` (that part is
/// not configured).
async fn configured<T, E>(
    operation: &str,
    unset: &str,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<Option<Option<T>>>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    absent(absent(sent(operation, call).await, &[unset]), GONE)
}

/// Every property but `tags`, from the Get* calls; `None` when the bucket
/// vanished meanwhile.
async fn read_config(cloud: &Cloud, id: &str) -> Result<Option<BucketProps>> {
    let versioning = match cloud.s3.get_bucket_versioning().bucket(id).send().await {
        Ok(out) => Some(out.status() == Some(&BucketVersioningStatus::Enabled)),
        // moto names the answer's root element differently, which the SDK
        // rejects; the status in a successful answer is still plain to see.
        Err(e) if e.raw_response().is_some_and(|r| r.status().is_success()) => Some(
            e.raw_response()
                .and_then(|r| r.body().bytes())
                .is_some_and(|body| {
                    String::from_utf8_lossy(body).contains("<Status>Enabled</Status>")
                }),
        ),
        Err(e) => absent(Err(CloudError::from_sdk("GetBucketVersioning", e)), GONE)?,
    };
    let Some(versioning) = versioning else {
        return Ok(None);
    };
    let s3 = &cloud.s3;
    let encryption = s3.get_bucket_encryption().bucket(id).send();
    let unset = "ServerSideEncryptionConfigurationNotFoundError";
    let Some(encryption) = configured("GetBucketEncryption", unset, encryption).await? else {
        return Ok(None);
    };
    let encryption = encryption
        .as_ref()
        .and_then(|out| out.server_side_encryption_configuration())
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_string());
    let block = s3.get_public_access_block().bucket(id).send();
    let unset = "NoSuchPublicAccessBlockConfiguration";
    let Some(block) = configured("GetPublicAccessBlock", unset, block).await? else {
        return Ok(None);
    };
    let block_public_access = block
        .as_ref()
        .and_then(|out| out.public_access_block_configuration())
        .is_some_and(|c| {
            [
                c.block_public_acls(),
                c.ignore_public_acls(),
                c.block_public_policy(),
                c.restrict_public_buckets(),
            ]
            .iter()
            .all(|flag| *flag == Some(true))
        });
    let policy = s3.get_bucket_policy().bucket(id).send();
    let Some(policy) = configured("GetBucketPolicy", "NoSuchBucketPolicy", policy).await? else {
        return Ok(None);
    };
    let tls_only =
        policy.is_some_and(|out| denies_insecure_transport(out.policy().unwrap_or_default()));
    let lifecycle = s3.get_bucket_lifecycle_configuration().bucket(id).send();
    let (operation, unset) = (
        "GetBucketLifecycleConfiguration",
        "NoSuchLifecycleConfiguration",
    );
    let Some(lifecycle) = configured(operation, unset, lifecycle).await? else {
        return Ok(None);
    };
    let rule = lifecycle.as_ref().and_then(|out| {
        out.rules()
            .iter()
            .find(|r| r.status() == &ExpirationStatus::Enabled)
    });
    let transition = rule.and_then(|r| r.transitions().first());
    Ok(Some(BucketProps {
        name: id.to_string(),
        versioning,
        encryption,
        block_public_access,
        tls_only,
        archive_after_days: transition.and_then(|t| t.days()).map(i64::from),
        archive_storage_class: transition
            .and_then(|t| t.storage_class())
            .map(|c| c.as_str().to_string()),
        expire_after_days: rule
            .and_then(|r| r.expiration())
            .and_then(|e| e.days())
            .map(i64::from),
    }))
}

/// The policy denying every request not made over TLS.
fn tls_only_policy(name: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn(name), format!("{}/*", arn(name))],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
    .to_string()
}

/// Whether `policy` has a statement denying requests without TLS.
fn denies_insecure_transport(policy: &str) -> bool {
    let policy: Value = serde_json::from_str(policy).unwrap_or(Value::Null);
    let statements = match &policy["Statement"] {
        Value::Array(list) => list.clone(),
        single @ Value::Object(_) => vec![single.clone()],
        _ => Vec::new(),
    };
    statements.iter().any(|s| {
        let insecure = match &s["Condition"]["Bool"]["aws:SecureTransport"] {
            Value::String(v) => v == "false",
            Value::Bool(v) => !v,
            Value::Array(vs) => vs.iter().any(|v| v == "false" || *v == json!(false)),
            _ => false,
        };
        s["Effect"] == "Deny" && insecure
    })
}

/// Replaces the bucket's tag set with the desired tags.
async fn put_tags(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let tags = sdk_tags(prop_tags(props)?, |k, v| {
        Tag::builder().key(k).value(v).build()
    })?;
    let tagging = Tagging::builder()
        .set_tag_set(Some(tags))
        .build()
        .map_err(unbuilt("PutBucketTagging"))?;
    let request = cloud.s3.put_bucket_tagging().bucket(name).tagging(tagging);
    sent_ok("PutBucketTagging", request.send()).await
}

async fn put_versioning(cloud: &Cloud, name: &str, enabled: bool) -> Result<()> {
    // A bucket once versioned can only be suspended, never unversioned.
    let status = if enabled {
        BucketVersioningStatus::Enabled
    } else {
        BucketVersioningStatus::Suspended
    };
    let configuration = VersioningConfiguration::builder().status(status).build();
    let request = cloud.s3.put_bucket_versioning().bucket(name);
    let request = request.versioning_configuration(configuration);
    sent_ok("PutBucketVersioning", request.send()).await
}

/// Writes the one rule: archive, then expire current and noncurrent versions.
async fn put_lifecycle(cloud: &Cloud, name: &str, p: &BucketProps) -> Result<()> {
    let days = |value: Option<i64>, name: &str| fit_i32(required(value, name)?, name);
    let archive = days(p.archive_after_days, "archive_after_days")?;
    let expire = days(p.expire_after_days, "expire_after_days")?;
    let class = required(p.archive_storage_class.as_deref(), "archive_storage_class")?;
    let rule = LifecycleRule::builder()
        .id(LIFECYCLE_RULE)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .transitions(
            Transition::builder()
                .days(archive)
                .storage_class(TransitionStorageClass::from(class))
                .build(),
        )
        .expiration(LifecycleExpiration::builder().days(expire).build())
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(expire)
                .build(),
        )
        .build()
        .map_err(unbuilt("PutBucketLifecycleConfiguration"))?;
    let configuration = BucketLifecycleConfiguration::builder()
        .rules(rule)
        .build()
        .map_err(unbuilt("PutBucketLifecycleConfiguration"))?;
    let request = cloud.s3.put_bucket_lifecycle_configuration().bucket(name);
    let request = request.lifecycle_configuration(configuration);
    sent_ok("PutBucketLifecycleConfiguration", request.send()).await
}
