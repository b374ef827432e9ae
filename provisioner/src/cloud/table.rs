//! The DynamoDB table of the hot store, with the keys and indexes the store
//! defines ([`event_store::hot::dynamodb::DynamoHotStore::create_table_request`]),
//! on-demand billing, encryption at rest, TTL and point-in-time recovery.
//! The id is the table name.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, SseSpecification,
    TableDescription, TableStatus, Tag, TimeToLiveSpecification, TimeToLiveStatus,
};
use event_store::hot::dynamodb::DynamoHotStore;
use serde_json::{json, Value};

use super::resource::ResourceKind;
use super::support::{
    absent, in_stack, ours, poll, prop_bool, prop_str, prop_tags, replace_tags, tags_value,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What DynamoDB answers for a table that is not there.
const GONE: &[&str] = &["ResourceNotFoundException"];

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
        let name = prop_str(props, "name")?;
        let Some(table) = describe(cloud, name).await? else {
            return Ok(None);
        };
        let tags = tags_of(cloud, arn_of(&table)?).await?;
        Ok(ours(cloud, &tags, address).then(|| name.to_string()))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(table) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let arn = arn_of(&table)?;
        let ttl = cloud
            .dynamodb
            .describe_time_to_live()
            .table_name(id)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeTimeToLive", e))?;
        let ttl_attribute = ttl
            .time_to_live_description()
            .filter(|d| {
                matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
            })
            .and_then(|d| d.attribute_name())
            .map_or(Value::Null, |a| json!(a));
        let backups = cloud
            .dynamodb
            .describe_continuous_backups()
            .table_name(id)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeContinuousBackups", e))?;
        let point_in_time_recovery = backups
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|d| d.point_in_time_recovery_status())
            == Some(&PointInTimeRecoveryStatus::Enabled);
        let tags = tags_of(cloud, arn).await?;
        let props = Props::from([
            ("name".to_string(), json!(id)),
            (
                "deletion_protection".to_string(),
                json!(table.deletion_protection_enabled().unwrap_or(false)),
            ),
            (
                "point_in_time_recovery".to_string(),
                json!(point_in_time_recovery),
            ),
            ("ttl_attribute".to_string(), ttl_attribute),
            ("tags".to_string(), tags_value(tags)),
        ]);
        let outputs = Props::from([
            ("name".to_string(), json!(id)),
            ("arn".to_string(), json!(arn)),
        ]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<String> {
        let name = prop_str(props, "name")?;
        let tags = prop_tags(props)?
            .into_iter()
            .map(|(k, v)| tag(k, v))
            .collect::<Result<Vec<_>>>()?;
        let created = DynamoHotStore::create_table_request(&cloud.dynamodb, name)
            .map_err(|e| CloudError::invalid("CreateTable", e.to_string()))?
            .sse_specification(SseSpecification::builder().enabled(true).build())
            .deletion_protection_enabled(prop_bool(props, "deletion_protection")?)
            .set_tags(Some(tags).filter(|t| !t.is_empty()))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateTable", e));
        match created {
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
        let active = poll(cloud, || async {
            let status = describe(cloud, name)
                .await?
                .and_then(|t| t.table_status().cloned());
            Ok((status == Some(TableStatus::Active)).then_some(()))
        })
        .await?;
        if active.is_none() {
            return Err(CloudError::invalid(
                "DescribeTable",
                format!(
                    "table {name} never became active within {:?}",
                    cloud.poll.timeout
                ),
            ));
        }
        set_ttl(cloud, name, prop_str(props, "ttl_attribute")?).await?;
        set_point_in_time_recovery(cloud, name, prop_bool(props, "point_in_time_recovery")?)
            .await?;
        Ok(name.to_string())
    }

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        for attribute in changed {
            match attribute.as_str() {
                "point_in_time_recovery" => {
                    set_point_in_time_recovery(
                        cloud,
                        id,
                        prop_bool(props, "point_in_time_recovery")?,
                    )
                    .await?
                }
                "tags" => retag(cloud, id, props).await?,
                "ttl_attribute" => set_ttl(cloud, id, prop_str(props, "ttl_attribute")?).await?,
                "deletion_protection" => {
                    set_deletion_protection(cloud, id, prop_bool(props, "deletion_protection")?)
                        .await?
                }
                other => {
                    return Err(CloudError::invalid(
                        "UpdateTable",
                        format!("`{other}` cannot change in place"),
                    ))
                }
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
        let deleted = cloud
            .dynamodb
            .delete_table()
            .table_name(id)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DeleteTable", e));
        if absent(deleted, GONE)?.is_none() {
            return Ok(());
        }
        // A table of the same name cannot be created until this one is gone.
        let gone = poll(cloud, || async {
            Ok(describe_any(cloud, id).await?.is_none().then_some(()))
        })
        .await?;
        if gone.is_none() {
            return Err(CloudError::invalid(
                "DescribeTable",
                format!(
                    "table {id} is still being deleted after {:?}",
                    cloud.poll.timeout
                ),
            ));
        }
        Ok(())
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = cloud
                .dynamodb
                .list_tables()
                .set_exclusive_start_table_name(start.take())
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("ListTables", e))?;
            for name in out.table_names() {
                let Some(table) = describe(cloud, name).await? else {
                    continue;
                };
                if in_stack(cloud, &tags_of(cloud, arn_of(&table)?).await?) {
                    found.push(name.clone());
                }
            }
            match out.last_evaluated_table_name() {
                Some(last) => start = Some(last.to_string()),
                None => return Ok(found),
            }
        }
    }
}

async fn set_deletion_protection(cloud: &Cloud, name: &str, enabled: bool) -> Result<()> {
    cloud
        .dynamodb
        .update_table()
        .table_name(name)
        .deletion_protection_enabled(enabled)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("UpdateTable", e))?;
    Ok(())
}

async fn set_ttl(cloud: &Cloud, name: &str, attribute: &str) -> Result<()> {
    cloud
        .dynamodb
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(attribute)
                .build()
                .map_err(|e| CloudError::invalid("UpdateTimeToLive", e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("UpdateTimeToLive", e))?;
    Ok(())
}

/// The table named `name` in any state, `None` when there is none.
async fn describe_any(cloud: &Cloud, name: &str) -> Result<Option<TableDescription>> {
    let out = cloud
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeTable", e));
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

async fn tags_of(cloud: &Cloud, arn: &str) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let out = cloud
            .dynamodb
            .list_tags_of_resource()
            .resource_arn(arn)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("ListTagsOfResource", e))?;
        tags.extend(
            out.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string())),
        );
        match out.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(tags),
        }
    }
}

fn tag(key: String, value: String) -> Result<Tag> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| CloudError::invalid("Tag", e.to_string()))
}

async fn set_point_in_time_recovery(cloud: &Cloud, name: &str, enabled: bool) -> Result<()> {
    cloud
        .dynamodb
        .update_continuous_backups()
        .table_name(name)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(enabled)
                .build()
                .map_err(|e| CloudError::invalid("UpdateContinuousBackups", e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("UpdateContinuousBackups", e))?;
    Ok(())
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let Some(table) = describe(cloud, name).await? else {
        return Err(CloudError::invalid(
            "TagResource",
            format!("table {name} is gone"),
        ));
    };
    let arn = arn_of(&table)?;
    let current = tags_of(cloud, arn).await?.into_keys();
    let add = |desired: Vec<(String, String)>| async {
        let tags = desired
            .into_iter()
            .map(|(k, v)| tag(k, v))
            .collect::<Result<Vec<_>>>()?;
        cloud
            .dynamodb
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("TagResource", e))
    };
    let remove = |stale: Vec<String>| async {
        cloud
            .dynamodb
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("UntagResource", e))
    };
    replace_tags(props, current, add, remove).await
}
