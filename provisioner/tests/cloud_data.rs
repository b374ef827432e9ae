//! Round trips of the data families (ECR, DynamoDB, S3, CloudWatch Logs,
//! SSM) against an AWS emulator: create, read back exactly what was asked,
//! find by tags, update in place, list by stack tag, delete twice.

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use event_store::aws::{sdk_config, AwsSettings};
use provisioner::cloud::Cloud;
use provisioner::model::{stack_tags, Kind, Props};
use serde_json::{json, Value};
use test_support::backend::AwsEmulator;

const STACK: &str = "rt-stack";

async fn cloud(emulator: &AwsEmulator) -> Cloud {
    let config = sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    Cloud::new(&config, STACK)
}

fn props(address: &str, fields: Value) -> Props {
    let mut props: Props = match fields {
        Value::Object(map) => map.into_iter().collect(),
        _ => Props::new(),
    };
    let extra = BTreeMap::from([("team".to_string(), "data".to_string())]);
    props.insert("tags".into(), stack_tags(STACK, address, &extra));
    props
}

/// Creates, reads back, finds, updates `change` (if any) and the tags, reads the
/// change back and finds the resource by its stack tag. Returns its id.
async fn create_and_update(
    cloud: &Cloud,
    kind: Kind,
    address: &str,
    desired: &Props,
    change: Option<(&str, Value)>,
) -> anyhow::Result<(String, Props)> {
    let id = cloud.create(kind, address, desired).await?;
    let observed = cloud.read(kind, &id).await?.context("read after create")?;
    assert_eq!(&observed.props, desired, "{kind} reads back as created");
    assert_eq!(observed.outputs["name"], json!(id));
    assert_eq!(cloud.find(kind, address, desired).await?, Some(id.clone()));
    assert_eq!(cloud.find(kind, "s3_bucket.other", desired).await?, None);

    let mut updated = desired.clone();
    let mut changed = vec!["tags".to_string()];
    if let Some((name, value)) = change {
        updated.insert(name.into(), value);
        changed.push(name.to_string());
    }
    // Tags: one added, one removed, the stack's own kept.
    let mut tags = stack_tags(STACK, address, &BTreeMap::new());
    tags["owner"] = json!("platform");
    updated.insert("tags".into(), tags);
    cloud.update(kind, &id, &updated, &changed).await?;
    let observed = cloud.read(kind, &id).await?.context("read after update")?;
    assert_eq!(observed.props, updated, "{kind} reads back as updated");

    let listed = cloud.list_tagged().await?;
    ensure!(
        listed.contains(&(kind, id.clone())),
        "{kind} {id} not in {listed:?}"
    );
    Ok((id, observed.outputs))
}

async fn delete_twice(cloud: &Cloud, kind: Kind, id: &str) -> anyhow::Result<()> {
    cloud.delete(kind, id).await?;
    assert_eq!(
        cloud.read(kind, id).await?,
        None,
        "{kind} gone after delete"
    );
    cloud.delete(kind, id).await?;
    let listed = cloud.list_tagged().await?;
    ensure!(
        !listed.iter().any(|(_, i)| i == id),
        "{kind} {id} still listed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_repository_round_trip() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let cloud = cloud(&emulator).await;
    let address = "ecr_repository.processor";
    let desired = props(
        address,
        json!({"name": "rt/processor", "scan_on_push": false, "tag_mutability": "IMMUTABLE", "keep_images": 10}),
    );
    let (id, outputs) = create_and_update(
        &cloud,
        Kind::EcrRepository,
        address,
        &desired,
        Some(("keep_images", json!(3))),
    )
    .await?;
    assert_eq!(id, "rt/processor");
    ensure!(outputs["url"]
        .as_str()
        .is_some_and(|u| u.ends_with("/rt/processor")));
    ensure!(outputs["arn"]
        .as_str()
        .is_some_and(|a| a.starts_with("arn:aws:ecr:")));
    // Turned on: moto ignores turning it off (the SDK leaves `false` out).
    let mut scan = desired.clone();
    scan.insert("scan_on_push".into(), json!(true));
    cloud
        .update(Kind::EcrRepository, &id, &scan, &["scan_on_push".into()])
        .await?;
    let observed = cloud
        .read(Kind::EcrRepository, &id)
        .await?
        .context("read")?;
    assert_eq!(observed.props["scan_on_push"], json!(true));
    assert_eq!(
        outputs["registry"],
        json!(outputs["url"].as_str().and_then(|u| u.split('/').next()))
    );
    // Repositories made IMMUTABLE by an earlier version become MUTABLE in place.
    let mut mutable = scan.clone();
    mutable.insert("tag_mutability".into(), json!("MUTABLE"));
    cloud
        .update(
            Kind::EcrRepository,
            &id,
            &mutable,
            &["tag_mutability".into()],
        )
        .await?;
    let observed = cloud
        .read(Kind::EcrRepository, &id)
        .await?
        .context("read")?;
    assert_eq!(observed.props["tag_mutability"], json!("MUTABLE"));
    delete_twice(&cloud, Kind::EcrRepository, &id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_table_round_trip() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let cloud = cloud(&emulator).await;
    let address = "dynamodb_table.events";
    let desired = props(
        address,
        json!({"name": "rt-EventsHot", "point_in_time_recovery": false, "ttl_attribute": "expires_at", "deletion_protection": true}),
    );
    let (id, outputs) = create_and_update(
        &cloud,
        Kind::DynamodbTable,
        address,
        &desired,
        Some(("point_in_time_recovery", json!(true))),
    )
    .await?;
    ensure!(outputs["arn"]
        .as_str()
        .is_some_and(|a| a.ends_with(":table/rt-EventsHot")));
    // The store's own definition: keys and the three indexes.
    let table = cloud
        .dynamodb
        .describe_table()
        .table_name(&id)
        .send()
        .await?;
    let table = table.table().context("table")?;
    assert_eq!(table.global_secondary_indexes().len(), 3);
    assert_eq!(table.key_schema().len(), 2);
    ensure!(table.sse_description().is_some(), "encrypted at rest");
    delete_twice(&cloud, Kind::DynamodbTable, &id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bucket_round_trip_deletes_every_version() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let cloud = cloud(&emulator).await;
    let address = "s3_bucket.cold";
    let desired = props(
        address,
        json!({
            "name": "rt-stack-cold",
            "versioning": true,
            "encryption": "AES256",
            "block_public_access": true,
            "tls_only": true,
            "archive_after_days": 30,
            "archive_storage_class": "GLACIER_IR",
            "expire_after_days": 365,
        }),
    );
    let (id, outputs) = create_and_update(
        &cloud,
        Kind::S3Bucket,
        address,
        &desired,
        Some(("expire_after_days", json!(400))),
    )
    .await?;
    assert_eq!(outputs["arn"], json!("arn:aws:s3:::rt-stack-cold"));

    // Suspended and enabled again (moto fails to delete versions in a
    // suspended bucket, so the objects come after).
    for on in [false, true] {
        let mut versioning = desired.clone();
        versioning.insert("versioning".into(), json!(on));
        cloud
            .update(Kind::S3Bucket, &id, &versioning, &["versioning".into()])
            .await?;
        let observed = cloud.read(Kind::S3Bucket, &id).await?.context("read")?;
        assert_eq!(observed.props["versioning"], json!(on));
    }

    // moto enforces the TLS-only policy, and it listens on plain HTTP.
    cloud.s3.delete_bucket_policy().bucket(&id).send().await?;
    // Three versions of one object and a delete marker on top.
    for body in ["one", "two", "three"] {
        cloud
            .s3
            .put_object()
            .bucket(&id)
            .key("raw/a.json")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await?;
    }
    cloud
        .s3
        .delete_object()
        .bucket(&id)
        .key("raw/a.json")
        .send()
        .await?;
    let versions = cloud.s3.list_object_versions().bucket(&id).send().await?;
    assert_eq!(versions.versions().len(), 3);
    assert_eq!(versions.delete_markers().len(), 1);

    delete_twice(&cloud, Kind::S3Bucket, &id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_group_round_trip() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let cloud = cloud(&emulator).await;
    let address = "log_group.processor";
    let desired = props(
        address,
        json!({"name": "/rt-stack/processor", "retention_days": 14}),
    );
    // A group whose name extends ours must not be mistaken for it.
    cloud
        .logs
        .create_log_group()
        .log_group_name("/rt-stack/processor-old")
        .send()
        .await?;
    let (id, outputs) = create_and_update(
        &cloud,
        Kind::LogGroup,
        address,
        &desired,
        Some(("retention_days", json!(30))),
    )
    .await?;
    ensure!(outputs["arn"]
        .as_str()
        .is_some_and(|a| a.ends_with(":log-group:/rt-stack/processor")));
    delete_twice(&cloud, Kind::LogGroup, &id).await?;
    assert_eq!(
        cloud
            .logs
            .describe_log_groups()
            .send()
            .await?
            .log_groups()
            .len(),
        1,
        "only the other group is left"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_parameter_round_trip_never_reveals_the_value() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let cloud = cloud(&emulator).await;
    let address = "ssm_parameter.api_token";
    let desired = props(
        address,
        json!({"name": "/rt-stack/api-token", "description": "bearer token of the front door"}),
    );
    let (id, outputs) = create_and_update(
        &cloud,
        Kind::SsmParameter,
        address,
        &desired,
        // Only the tags of a parameter change in place.
        None,
    )
    .await?;
    ensure!(outputs["arn"].as_str().is_some_and(
        |a| a.starts_with("arn:aws:ssm:") && a.ends_with(":parameter/rt-stack/api-token")
    ));

    let secret = cloud
        .ssm
        .get_parameter()
        .name(&id)
        .with_decryption(true)
        .send()
        .await?
        .parameter()
        .and_then(|p| p.value())
        .context("a value")?
        .to_string();
    ensure!(secret.len() >= 43, "the secret has at least 256 bits");
    let observed = cloud.read(Kind::SsmParameter, &id).await?.context("read")?;
    let shown = format!("{:?}", observed);
    ensure!(!shown.contains(&secret), "read never holds the value");
    delete_twice(&cloud, Kind::SsmParameter, &id).await
}
