//! CloudWatch Logs log groups with a retention period. The id is the group
//! name; the `arn` output is the group's ARN without the trailing `:*`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::types;
use serde::{Deserialize, Serialize};

use super::resource::{ResourceKind, Update};
use super::support::{
    deleted, fit_i32, from_props, in_stack_ids, look_at, name_and_arn, not_in_place, ours_id,
    prop_tags, replace_tags, required, sent, sent_ok, tag_map, tags_value, to_props, vanished,
    Tags,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What CloudWatch Logs answers for a group that is not there.
const GONE: &[&str] = &["ResourceNotFoundException"];

/// A log group's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogGroupProps {
    /// The group's name, its id.
    pub name: String,
    /// Days its events are kept; `None` when they never expire.
    pub retention_days: Option<i64>,
}

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
        let p: LogGroupProps = from_props(props)?;
        let group = describe(cloud, &p.name).await?;
        let tags = look_at(group, |g| async move { tags_of(cloud, &arn_of(&g)?).await }).await?;
        Ok(ours_id(cloud, address, tags, p.name))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        match describe(cloud, id).await? {
            Some(group) => observe(cloud, &group, id).await.map(Some),
            None => Ok(None),
        }
    }

    /// One listing of the groups under the names' common prefix (the
    /// stack's `/ecs/STACK/`), where reading each group lists it alone.
    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        // The API takes no empty prefix: with none in common, list them all.
        let prefix = common_prefix(ids);
        let found = groups(cloud, (!prefix.is_empty()).then_some(prefix)).await?;
        let mut each = Vec::with_capacity(ids.len());
        for id in ids {
            let group = found
                .iter()
                .find(|g| g.log_group_name() == Some(id.as_str()));
            each.push(match group {
                Some(group) => Some(observe(cloud, group, id).await?),
                None => None,
            });
        }
        Ok(each)
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: LogGroupProps = from_props(props)?;
        let tags: HashMap<String, String> = prop_tags(props)?.into_iter().collect();
        let request = cloud.logs.create_log_group().log_group_name(&p.name);
        let request = request.set_tags(Some(tags).filter(|t| !t.is_empty()));
        sent_ok("CreateLogGroup", request.send()).await?;
        put_retention(cloud, &p.name, p.retention_days).await?;
        Ok(p.name)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: LogGroupProps = from_props(props)?;
        for attribute in changed {
            match attribute.as_str() {
                "retention_days" => put_retention(cloud, id, p.retention_days).await?,
                "tags" => retag(cloud, id, props).await?,
                other => return Err(not_in_place("UpdateLogGroup", other)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.logs.delete_log_group().log_group_name(id);
        deleted("DeleteLogGroup", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut candidates = Vec::new();
        for group in groups(cloud, None).await? {
            if let Some(name) = group.log_group_name() {
                candidates.push((name.to_string(), arn_of(&group)?));
            }
        }
        in_stack_ids(cloud, candidates, |arn| async move {
            tags_of(cloud, &arn).await.map(Some)
        })
        .await
    }
}

/// Every log group whose name starts with `prefix` (all without one).
async fn groups(cloud: &Cloud, prefix: Option<&str>) -> Result<Vec<types::LogGroup>> {
    let prefix = prefix.map(str::to_string);
    let request = cloud
        .logs
        .describe_log_groups()
        .set_log_group_name_prefix(prefix);
    let items = request.into_paginator().items().send();
    sent("DescribeLogGroups", items.try_collect()).await
}

/// The group named exactly `name` (the API only matches by prefix).
async fn describe(cloud: &Cloud, name: &str) -> Result<Option<types::LogGroup>> {
    Ok(groups(cloud, Some(name))
        .await?
        .into_iter()
        .find(|g| g.log_group_name() == Some(name)))
}

/// The group as `read` answers it.
async fn observe(cloud: &Cloud, group: &types::LogGroup, id: &str) -> Result<Observed> {
    let arn = arn_of(group)?;
    let mut props = to_props(&LogGroupProps {
        name: id.to_string(),
        retention_days: group.retention_in_days().map(i64::from),
    });
    props.insert("tags".into(), tags_value(tags_of(cloud, &arn).await?));
    let outputs = name_and_arn(id, &arn);
    Ok(Observed { props, outputs })
}

/// The longest prefix all of `names` share.
fn common_prefix(names: &[String]) -> &str {
    let Some((first, rest)) = names.split_first() else {
        return "";
    };
    let mut len = first.len();
    for name in rest {
        len = first
            .char_indices()
            .zip(name.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8())
            .min(len);
    }
    &first[..len]
}

/// The ARN the tagging calls take: without the `:*` of `arn`.
fn arn_of(group: &types::LogGroup) -> Result<String> {
    group
        .log_group_arn()
        .map(str::to_string)
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_string()))
        .ok_or_else(|| CloudError::invalid("DescribeLogGroups", "log group without an ARN"))
}

async fn tags_of(cloud: &Cloud, arn: &str) -> Result<Tags> {
    let request = cloud.logs.list_tags_for_resource().resource_arn(arn);
    let out = sent("ListTagsForResource", request.send()).await?;
    Ok(out.tags().map(tag_map).unwrap_or_default())
}

async fn put_retention(cloud: &Cloud, name: &str, days: Option<i64>) -> Result<()> {
    let days = fit_i32(required(days, "retention_days")?, "retention_days")?;
    let request = cloud.logs.put_retention_policy().log_group_name(name);
    sent_ok("PutRetentionPolicy", request.retention_in_days(days).send()).await
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let group = describe(cloud, name).await?;
    let arn = arn_of(&group.ok_or_else(|| vanished("TagResource", "log group", name))?)?;
    let current = tags_of(cloud, &arn).await?.into_keys();
    let logs = &cloud.logs;
    let tag = |desired: Vec<(String, String)>| {
        let request = logs.tag_resource().resource_arn(&arn);
        let request = request.set_tags(Some(desired.into_iter().collect()));
        sent_ok("TagResource", request.send())
    };
    let untag = |stale: Vec<String>| {
        let request = logs.untag_resource().resource_arn(&arn);
        sent_ok("UntagResource", request.set_tag_keys(Some(stale)).send())
    };
    replace_tags(props, current, tag, untag).await
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn the_common_prefix_of_names_stops_at_their_first_difference() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let stack = names(&["/ecs/ep/ingest", "/ecs/ep/graphql", "/ecs/ep/processor"]);
        assert_eq!(common_prefix(&stack), "/ecs/ep/");
        assert_eq!(common_prefix(&names(&["/a/x"])), "/a/x");
        assert_eq!(common_prefix(&names(&["/a", "/b"])), "/");
        assert_eq!(common_prefix(&names(&["a", "b"])), "");
        assert_eq!(common_prefix(&names(&["/é/x", "/é/y"])), "/é/");
        assert_eq!(common_prefix(&[]), "");
    }
}
