//! S3 buckets with their configuration: tags, public access block, default
//! encryption, versioning, a TLS-only policy and one lifecycle rule. The id
//! is the bucket name.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging, Transition,
    TransitionStorageClass, VersioningConfiguration,
};
use serde_json::{json, Value};

use super::resource::ResourceKind;
use super::support::{
    absent, gone_ok, in_stack, ours, prop_bool, prop_i64, prop_str, prop_tags, tags_value,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// The id of the bucket's one lifecycle rule.
const LIFECYCLE_RULE: &str = "archive-then-expire";
/// Most keys `DeleteObjects` takes at once.
const DELETE_BATCH: usize = 1000;
/// What S3 answers for a bucket that is not there.
const GONE: &[&str] = &["NoSuchBucket"];

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
        let name = prop_str(props, "name")?;
        // Someone else's bucket of that name answers AccessDenied, one in another
        // region a redirect: not ours either (create says so).
        let not_ours = [
            &["NoSuchBucket", "NoSuchTagSet", "AccessDenied"][..],
            &IN_ANOTHER_REGION[..],
        ]
        .concat();
        let Some(tags) = absent(tags_of(cloud, name).await, &not_ours)? else {
            return Ok(None);
        };
        Ok(ours(cloud, &tags, address).then(|| name.to_string()))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        // Tags first: NoSuchBucket here means the bucket is gone.
        let tags = match tags_of(cloud, id).await {
            Err(e) if e.code == "NoSuchTagSet" => Ok(BTreeMap::new()),
            other => other,
        };
        let Some(tags) = absent(tags, GONE)? else {
            return Ok(None);
        };
        let Some(config) = read_config(cloud, id).await? else {
            return Ok(None);
        };
        let mut props = config;
        props.insert("name".into(), json!(id));
        props.insert("tags".into(), tags_value(tags));
        let outputs = Props::from([
            ("name".to_string(), json!(id)),
            ("arn".to_string(), json!(arn(id))),
        ]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<String> {
        let name = prop_str(props, "name")?;
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
        match request.send().await {
            Ok(_) => {}
            Err(e) => match CloudError::from_sdk("CreateBucket", e) {
                e if e.code == "BucketAlreadyOwnedByYou" && ours => {}
                e if e.code == "BucketAlreadyOwnedByYou" => return Err(taken(NOT_OURS)),
                e if e.code == "BucketAlreadyExists" => return Err(taken(OTHER_ACCOUNT)),
                e => return Err(e),
            },
        }
        // Tagged first, so a crash after this point leaves a bucket `find` adopts.
        put_tags(cloud, name, props).await?;
        put_public_access_block(cloud, name, props).await?;
        put_encryption(cloud, name, props).await?;
        if prop_bool(props, "versioning")? {
            put_versioning(cloud, name, true).await?;
        }
        put_tls_policy(cloud, name, props).await?;
        put_lifecycle(cloud, name, props).await?;
        Ok(name.to_string())
    }

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        let mut lifecycle = false;
        for attribute in changed {
            match attribute.as_str() {
                "versioning" => put_versioning(cloud, id, prop_bool(props, "versioning")?).await?,
                // One rule holds these; it is written once below.
                "archive_after_days" | "expire_after_days" | "archive_storage_class" => {
                    lifecycle = true
                }
                // Not in place for the planner (a change replaces the bucket), but
                // a create found half-made is completed with them.
                "block_public_access" => put_public_access_block(cloud, id, props).await?,
                "encryption" => put_encryption(cloud, id, props).await?,
                "tls_only" => put_tls_policy(cloud, id, props).await?,
                "tags" => put_tags(cloud, id, props).await?,
                other => {
                    return Err(CloudError::invalid(
                        "UpdateBucket",
                        format!("`{other}` cannot change in place"),
                    ))
                }
            }
        }
        if lifecycle {
            put_lifecycle(cloud, id, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        // A bucket must be empty of every version and delete marker first.
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let listed = cloud
                .s3
                .list_object_versions()
                .bucket(id)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("ListObjectVersions", e));
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
                        .map_err(|e| CloudError::invalid("DeleteObjects", e.to_string()))?,
                );
            }
            for batch in objects.chunks(DELETE_BATCH) {
                let deleted = cloud
                    .s3
                    .delete_objects()
                    .bucket(id)
                    .delete(
                        Delete::builder()
                            .set_objects(Some(batch.to_vec()))
                            .quiet(true)
                            .build()
                            .map_err(|e| CloudError::invalid("DeleteObjects", e.to_string()))?,
                    )
                    .send()
                    .await
                    .map_err(|e| CloudError::from_sdk("DeleteObjects", e))?;
                if let Some(error) = deleted.errors().first() {
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
        let deleted = cloud
            .s3
            .delete_bucket()
            .bucket(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("DeleteBucket", e));
        gone_ok(deleted, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = cloud
                .s3
                .list_buckets()
                // Buckets elsewhere answer their tags only in their own region.
                .bucket_region(&cloud.region)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("ListBuckets", e))?;
            for bucket in out.buckets() {
                let Some(name) = bucket.name() else { continue };
                let skip = [
                    "NoSuchBucket",
                    "NoSuchTagSet",
                    "AccessDenied",
                    "PermanentRedirect",
                ];
                if let Some(tags) = absent(tags_of(cloud, name).await, &skip)? {
                    if in_stack(cloud, &tags) {
                        found.push(name.to_string());
                    }
                }
            }
            match out.continuation_token() {
                Some(next) => token = Some(next.to_string()),
                None => return Ok(found),
            }
        }
    }
}

/// What S3 answers for a bucket that lives in another region.
const IN_ANOTHER_REGION: [&str; 3] = [
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
];

async fn is_empty(cloud: &Cloud, name: &str) -> Result<bool> {
    let out = cloud
        .s3
        .list_object_versions()
        .bucket(name)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ListObjectVersions", e))?;
    Ok(out.versions().is_empty() && out.delete_markers().is_empty())
}

async fn put_public_access_block(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let block = prop_bool(props, "block_public_access")?;
    cloud
        .s3
        .put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(block)
                .ignore_public_acls(block)
                .block_public_policy(block)
                .restrict_public_buckets(block)
                .build(),
        )
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("PutPublicAccessBlock", e))?;
    Ok(())
}

async fn put_encryption(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::from(prop_str(props, "encryption")?))
        .build()
        .map_err(|e| CloudError::invalid("PutBucketEncryption", e.to_string()))?;
    cloud
        .s3
        .put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(by_default)
                        .build(),
                )
                .build()
                .map_err(|e| CloudError::invalid("PutBucketEncryption", e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("PutBucketEncryption", e))?;
    Ok(())
}

/// The TLS-only bucket policy when `tls_only`, none otherwise.
async fn put_tls_policy(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    if prop_bool(props, "tls_only")? {
        cloud
            .s3
            .put_bucket_policy()
            .bucket(name)
            .policy(tls_only_policy(name))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("PutBucketPolicy", e))?;
    } else {
        cloud
            .s3
            .delete_bucket_policy()
            .bucket(name)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DeleteBucketPolicy", e))?;
    }
    Ok(())
}

/// The bucket's ARN.
fn arn(name: &str) -> String {
    format!("arn:aws:s3:::{name}")
}

/// The bucket's tags (GetBucketTagging answers NoSuchTagSet for none).
async fn tags_of(cloud: &Cloud, name: &str) -> Result<BTreeMap<String, String>> {
    let out = cloud
        .s3
        .get_bucket_tagging()
        .bucket(name)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("GetBucketTagging", e))?;
    Ok(out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect())
}

/// What a Get* call of one part of the configuration answered: `None` when
/// the bucket is gone, `Some(None)` when it answered `unset` (that part is
/// not configured).
fn configured<T>(answer: Result<T>, unset: &str) -> Result<Option<Option<T>>> {
    absent(absent(answer, &[unset]), GONE)
}

/// Every property but `name` and `tags`, from the Get* calls; `None` when
/// the bucket vanished meanwhile.
async fn read_config(cloud: &Cloud, id: &str) -> Result<Option<Props>> {
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
    let encryption = cloud
        .s3
        .get_bucket_encryption()
        .bucket(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("GetBucketEncryption", e));
    let Some(encryption) =
        configured(encryption, "ServerSideEncryptionConfigurationNotFoundError")?
    else {
        return Ok(None);
    };
    let encryption = encryption
        .as_ref()
        .and_then(|out| out.server_side_encryption_configuration())
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map_or(Value::Null, |d| json!(d.sse_algorithm().as_str()));
    let block = cloud
        .s3
        .get_public_access_block()
        .bucket(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("GetPublicAccessBlock", e));
    let Some(block) = configured(block, "NoSuchPublicAccessBlockConfiguration")? else {
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
    let policy = cloud
        .s3
        .get_bucket_policy()
        .bucket(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("GetBucketPolicy", e));
    let Some(policy) = configured(policy, "NoSuchBucketPolicy")? else {
        return Ok(None);
    };
    let tls_only =
        policy.is_some_and(|out| denies_insecure_transport(out.policy().unwrap_or_default()));
    let lifecycle = cloud
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("GetBucketLifecycleConfiguration", e));
    let Some(lifecycle) = configured(lifecycle, "NoSuchLifecycleConfiguration")? else {
        return Ok(None);
    };
    let (mut archive_after_days, mut archive_storage_class, mut expire_after_days) =
        (Value::Null, Value::Null, Value::Null);
    let rule = lifecycle.as_ref().and_then(|out| {
        out.rules()
            .iter()
            .find(|r| r.status() == &ExpirationStatus::Enabled)
    });
    if let Some(rule) = rule {
        if let Some(transition) = rule.transitions().first() {
            archive_after_days = transition.days().map_or(Value::Null, |d| json!(d));
            archive_storage_class = transition
                .storage_class()
                .map_or(Value::Null, |c| json!(c.as_str()));
        }
        expire_after_days = rule
            .expiration()
            .and_then(|e| e.days())
            .map_or(Value::Null, |d| json!(d));
    }
    Ok(Some(Props::from([
        ("versioning".to_string(), json!(versioning)),
        ("encryption".to_string(), encryption),
        (
            "block_public_access".to_string(),
            json!(block_public_access),
        ),
        ("tls_only".to_string(), json!(tls_only)),
        ("archive_after_days".to_string(), archive_after_days),
        ("archive_storage_class".to_string(), archive_storage_class),
        ("expire_after_days".to_string(), expire_after_days),
    ])))
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
    let tags = prop_tags(props)?
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| CloudError::invalid("Tag", e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    cloud
        .s3
        .put_bucket_tagging()
        .bucket(name)
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .map_err(|e| CloudError::invalid("PutBucketTagging", e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("PutBucketTagging", e))?;
    Ok(())
}

async fn put_versioning(cloud: &Cloud, name: &str, enabled: bool) -> Result<()> {
    // A bucket once versioned can only be suspended, never unversioned.
    let status = if enabled {
        BucketVersioningStatus::Enabled
    } else {
        BucketVersioningStatus::Suspended
    };
    cloud
        .s3
        .put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("PutBucketVersioning", e))?;
    Ok(())
}

/// Writes the one rule: archive, then expire current and noncurrent versions.
async fn put_lifecycle(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let days = |prop: &str| {
        i32::try_from(prop_i64(props, prop)?)
            .map_err(|_| CloudError::invalid(prop, format!("property `{prop}` is out of range")))
    };
    let (archive, expire) = (days("archive_after_days")?, days("expire_after_days")?);
    let rule = LifecycleRule::builder()
        .id(LIFECYCLE_RULE)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .transitions(
            Transition::builder()
                .days(archive)
                .storage_class(TransitionStorageClass::from(prop_str(
                    props,
                    "archive_storage_class",
                )?))
                .build(),
        )
        .expiration(LifecycleExpiration::builder().days(expire).build())
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(expire)
                .build(),
        )
        .build()
        .map_err(|e| CloudError::invalid("PutBucketLifecycleConfiguration", e.to_string()))?;
    cloud
        .s3
        .put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| {
                    CloudError::invalid("PutBucketLifecycleConfiguration", e.to_string())
                })?,
        )
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("PutBucketLifecycleConfiguration", e))?;
    Ok(())
}
