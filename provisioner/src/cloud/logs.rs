//! CloudWatch Logs log groups with a retention period. The id is the group
//! name; the `arn` output is the group's ARN without the trailing `:*`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::types;
use serde_json::{json, Value};

use super::resource::ResourceKind;
use super::support::{
    gone_ok, in_stack, ours, prop_i64, prop_str, prop_tags, replace_tags, tags_value,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// A CloudWatch Logs log group.
pub struct LogGroup;

#[async_trait]
impl ResourceKind for LogGroup {
    fn updatable(&self) -> &'static [&'static str] {
        &["retention_days", "tags"]
    }

    // Last: the services log until they are gone.
    fn destroy_rank(&self) -> u8 {
        10
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let name = prop_str(props, "name")?;
        let Some(group) = describe(cloud, name).await? else {
            return Ok(None);
        };
        let tags = tags_of(cloud, &arn_of(&group)?).await?;
        Ok(ours(cloud, &tags, address).then(|| name.to_string()))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(group) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let arn = arn_of(&group)?;
        let tags = tags_of(cloud, &arn).await?;
        let props = Props::from([
            ("name".to_string(), json!(id)),
            (
                "retention_days".to_string(),
                group.retention_in_days().map_or(Value::Null, |d| json!(d)),
            ),
            ("tags".to_string(), tags_value(tags)),
        ]);
        let outputs = Props::from([
            ("name".to_string(), json!(id)),
            ("arn".to_string(), json!(arn)),
        ]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let name = prop_str(props, "name")?;
        let tags: HashMap<String, String> = prop_tags(props)?.into_iter().collect();
        cloud
            .logs
            .create_log_group()
            .log_group_name(name)
            .set_tags(Some(tags).filter(|t| !t.is_empty()))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateLogGroup", e))?;
        put_retention(cloud, name, props).await?;
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
                "retention_days" => put_retention(cloud, id, props).await?,
                "tags" => retag(cloud, id, props).await?,
                other => {
                    return Err(CloudError::invalid(
                        "UpdateLogGroup",
                        format!("`{other}` cannot change in place"),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .logs
            .delete_log_group()
            .log_group_name(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("DeleteLogGroup", e));
        gone_ok(deleted, &["ResourceNotFoundException"])
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for group in groups(cloud, None).await? {
            let Some(name) = group.log_group_name() else {
                continue;
            };
            if in_stack(cloud, &tags_of(cloud, &arn_of(&group)?).await?) {
                found.push(name.to_string());
            }
        }
        Ok(found)
    }
}

/// Every log group whose name starts with `prefix` (all without one).
async fn groups(cloud: &Cloud, prefix: Option<&str>) -> Result<Vec<types::LogGroup>> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = cloud
            .logs
            .describe_log_groups()
            .set_log_group_name_prefix(prefix.map(str::to_string))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeLogGroups", e))?;
        all.extend(out.log_groups().iter().cloned());
        match out.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(all),
        }
    }
}

/// The group named exactly `name` (the API only matches by prefix).
async fn describe(cloud: &Cloud, name: &str) -> Result<Option<types::LogGroup>> {
    Ok(groups(cloud, Some(name))
        .await?
        .into_iter()
        .find(|g| g.log_group_name() == Some(name)))
}

/// The ARN the tagging calls take: without the `:*` of `arn`.
fn arn_of(group: &types::LogGroup) -> Result<String> {
    group
        .log_group_arn()
        .map(str::to_string)
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_string()))
        .ok_or_else(|| CloudError::invalid("DescribeLogGroups", "log group without an ARN"))
}

async fn tags_of(cloud: &Cloud, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = cloud
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ListTagsForResource", e))?;
    Ok(out
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

async fn put_retention(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let days = i32::try_from(prop_i64(props, "retention_days")?).map_err(|_| {
        CloudError::invalid(
            "retention_days",
            "property `retention_days` is out of range",
        )
    })?;
    cloud
        .logs
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("PutRetentionPolicy", e))?;
    Ok(())
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let Some(group) = describe(cloud, name).await? else {
        return Err(CloudError::invalid(
            "TagResource",
            format!("log group {name} is gone"),
        ));
    };
    let arn = arn_of(&group)?;
    let current = tags_of(cloud, &arn).await?.into_keys();
    let tag = |desired: Vec<(String, String)>| async {
        cloud
            .logs
            .tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(desired.into_iter().collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("TagResource", e))
    };
    let untag = |stale: Vec<String>| async {
        cloud
            .logs
            .untag_resource()
            .resource_arn(&arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("UntagResource", e))
    };
    replace_tags(props, current, tag, untag).await
}
