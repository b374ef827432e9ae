//! The DynamoDB table of the hot store, with the keys and indexes the store
//! defines ([`event_store::hot::dynamodb::DynamoHotStore::create_table_request`]),
//! on-demand billing, encryption at rest, TTL and point-in-time recovery.
//! The id is the table name.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, SseSpecification,
    TableDescription, TableStatus, Tag, TimeToLiveSpecification, TimeToLiveStatus,
};
use event_store::hot::dynamodb::DynamoHotStore;
use serde::{Deserialize, Serialize};

use super::resource::{ResourceKind, Update};
use super::support::{
    absent, from_props, in_stack_ids, look_at, name_and_arn, not_in_place, ours_id, prop_tags,
    replace_tags, required, sdk_tags, sent, sent_ok, tag_map, tags_value, to_props, unbuilt,
    vanished, wait_until, Tags,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What DynamoDB answers for a table that is not there.
const GONE: &[&str] = &["ResourceNotFoundException"];

/// The table's attributes, in the order a plan lists them (its keys and
/// indexes are the store's, not attributes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableProps {
    /// Whether deletion protection is on.
    pub deletion_protection: bool,
    /// The table's name, its id.
    pub name: String,
    /// Whether point-in-time recovery is on.
    pub point_in_time_recovery: bool,
    /// The attribute TTL expires items by; `None` when TTL is off.
    pub ttl_attribute: Option<String>,
}

/// The hot store's DynamoDB table.
pub struct DynamodbTable;

#[async_trait]
impl ResourceKind for DynamodbTable {
    // Everything AWS changes in place: a replace deletes the data.
    fn updatable(&self) -> &'static [&'static str] {
        &[
            "point_in_time_recovery",
            "ttl_attribute",
            "deletion_protection",
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
        let p: TableProps = from_props(props)?;
        let tags = tags_by_name(cloud, &p.name).await?;
        Ok(ours_id(cloud, address, tags, p.name))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(table) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let arn = arn_of(&table)?;
        let ttl = cloud.dynamodb.describe_time_to_live().table_name(id);
        let ttl = sent("DescribeTimeToLive", ttl.send()).await?;
        let ttl_attribute = ttl
            .time_to_live_description()
            .filter(|d| {
                matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
            })
            .and_then(|d| d.attribute_name());
        let backups = cloud.dynamodb.describe_continuous_backups().table_name(id);
        let backups = sent("DescribeContinuousBackups", backups.send()).await?;
        let point_in_time_recovery = backups
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|d| d.point_in_time_recovery_status())
            == Some(&PointInTimeRecoveryStatus::Enabled);
        let mut props = to_props(&TableProps {
            name: id.to_string(),
            deletion_protection: table.deletion_protection_enabled().unwrap_or(false),
            point_in_time_recovery,
            ttl_attribute: ttl_attribute.map(str::to_string),
        });
        props.insert("tags".into(), tags_value(tags_of(cloud, arn).await?));
        let outputs = name_and_arn(id, arn);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<String> {
        let p: TableProps = from_props(props)?;
        let name = p.name.as_str();
        let tags = dynamodb_tags(prop_tags(props)?)?;
        let request = DynamoHotStore::create_table_request(&cloud.dynamodb, name)
            .map_err(unbuilt("CreateTable"))?
            .sse_specification(SseSpecification::builder().enabled(true).build())
            .deletion_protection_enabled(p.deletion_protection)
            .set_tags(Some(tags).filter(|t| !t.is_empty()));
        match sent("CreateTable", request.send()).await {
            Ok(_) => {}
            // Table names are per account and region: another stack's (or
            // anyone's) table of that name is not going to go away.
            Err(e) if e.code == "ResourceInUseException" => {
                if self.find(cloud, address, props).await?.is_none() {
                    return Err(CloudError::name_taken(
                        "CreateTable",
                        &format!("table `{name}` already exists in this account and region and is not this stack's"),
                        "table.name",
                    ));
                }
            }
            Err(e) => return Err(e),
        }
        // TTL and backups can only be set on an active table.
        let active = || async {
            let table = describe(cloud, name).await?;
            Ok(table.and_then(|t| t.table_status().cloned()) == Some(TableStatus::Active))
        };
        wait_until(cloud, active, || {
            let timeout = cloud.poll.timeout;
            let message = format!("table {name} never became active within {timeout:?}");
            CloudError::invalid("DescribeTable", message)
        })
        .await?;
        set_ttl(cloud, name, &p).await?;
        set_point_in_time_recovery(cloud, name, p.point_in_time_recovery).await?;
        Ok(p.name)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: TableProps = from_props(props)?;
        for attribute in changed {
            match attribute.as_str() {
                "point_in_time_recovery" => {
                    set_point_in_time_recovery(cloud, id, p.point_in_time_recovery).await?
                }
                "tags" => retag(cloud, id, props).await?,
                "ttl_attribute" => set_ttl(cloud, id, &p).await?,
                "deletion_protection" => {
                    set_deletion_protection(cloud, id, p.deletion_protection).await?
                }
                other => return Err(not_in_place("UpdateTable", other)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        // Deletion protection guards against everyone but provision's own
        // delete, which only destroy (asked) or an apply allowed to lose data make.
        let protected = describe(cloud, id)
            .await?
            .and_then(|t| t.deletion_protection_enabled());
        if protected == Some(true) {
            set_deletion_protection(cloud, id, false).await?;
        }
        let request = cloud.dynamodb.delete_table().table_name(id);
        if absent(sent("DeleteTable", request.send()).await, GONE)?.is_none() {
            return Ok(());
        }
        // A table of the same name cannot be created until this one is gone.
        let gone = || async { Ok(describe_any(cloud, id).await?.is_none()) };
        wait_until(cloud, gone, || {
            let timeout = cloud.poll.timeout;
            let message = format!("table {id} is still being deleted after {timeout:?}");
            CloudError::invalid("DescribeTable", message)
        })
        .await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let items = cloud.dynamodb.list_tables().into_paginator().items();
        let names = sent("ListTables", items.send().try_collect()).await?;
        let candidates = names.into_iter().map(|name| (name.clone(), name));
        in_stack_ids(cloud, candidates, |name| async move {
            tags_by_name(cloud, &name).await
        })
        .await
    }
}

async fn set_deletion_protection(cloud: &Cloud, name: &str, enabled: bool) -> Result<()> {
    let request = cloud.dynamodb.update_table().table_name(name);
    let request = request.deletion_protection_enabled(enabled);
    sent_ok("UpdateTable", request.send()).await
}

/// Turns TTL on by the table's `ttl_attribute`.
async fn set_ttl(cloud: &Cloud, name: &str, p: &TableProps) -> Result<()> {
    let specification = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(required(p.ttl_attribute.as_deref(), "ttl_attribute")?)
        .build()
        .map_err(unbuilt("UpdateTimeToLive"))?;
    let request = cloud.dynamodb.update_time_to_live().table_name(name);
    let request = request.time_to_live_specification(specification);
    sent_ok("UpdateTimeToLive", request.send()).await
}

/// The table named `name` in any state, `None` when there is none.
async fn describe_any(cloud: &Cloud, name: &str) -> Result<Option<TableDescription>> {
    let request = cloud.dynamodb.describe_table().table_name(name);
    let out = sent("DescribeTable", request.send()).await;
    Ok(absent(out, GONE)?.and_then(|out| out.table))
}

/// The table named `name`, `None` when there is none or it is being deleted.
async fn describe(cloud: &Cloud, name: &str) -> Result<Option<TableDescription>> {
    Ok(describe_any(cloud, name)
        .await?
        .filter(|t| t.table_status() != Some(&TableStatus::Deleting)))
}

fn arn_of(table: &TableDescription) -> Result<&str> {
    table
        .table_arn()
        .ok_or_else(|| CloudError::invalid("DescribeTable", "table without an ARN"))
}

/// The tags of the table named `name`, `None` when there is no such table.
async fn tags_by_name(cloud: &Cloud, name: &str) -> Result<Option<Tags>> {
    let table = describe(cloud, name).await?;
    look_at(table, |t| async move { tags_of(cloud, arn_of(&t)?).await }).await
}

async fn tags_of(cloud: &Cloud, arn: &str) -> Result<Tags> {
    let mut tags = Tags::new();
    let mut token: Option<String> = None;
    loop {
        let request = cloud.dynamodb.list_tags_of_resource().resource_arn(arn);
        let request = request.set_next_token(token.take());
        let out = sent("ListTagsOfResource", request.send()).await?;
        tags.extend(tag_map(out.tags().iter().map(|t| (t.key(), t.value()))));
        match out.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(tags),
        }
    }
}

fn dynamodb_tags(tags: Vec<(String, String)>) -> Result<Vec<Tag>> {
    sdk_tags(tags, |k, v| Tag::builder().key(k).value(v).build())
}

async fn set_point_in_time_recovery(cloud: &Cloud, name: &str, enabled: bool) -> Result<()> {
    let specification = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(enabled)
        .build()
        .map_err(unbuilt("UpdateContinuousBackups"))?;
    let request = cloud.dynamodb.update_continuous_backups().table_name(name);
    let request = request.point_in_time_recovery_specification(specification);
    sent_ok("UpdateContinuousBackups", request.send()).await
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let table = describe(cloud, name).await?;
    let table = table.ok_or_else(|| vanished("TagResource", "table", name))?;
    let arn = arn_of(&table)?;
    let current = tags_of(cloud, arn).await?.into_keys();
    let db = &cloud.dynamodb;
    let add = |desired: Vec<(String, String)>| async move {
        let request = db.tag_resource().resource_arn(arn);
        let request = request.set_tags(Some(dynamodb_tags(desired)?));
        sent_ok("TagResource", request.send()).await
    };
    let remove = |stale: Vec<String>| {
        let request = db.untag_resource().resource_arn(arn);
        sent_ok("UntagResource", request.set_tag_keys(Some(stale)).send())
    };
    replace_tags(props, current, add, remove).await
}
