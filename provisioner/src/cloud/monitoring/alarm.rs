//! A CloudWatch metric alarm on one metric. Its id is its name (unique in
//! the account and region, so every name starts with the stack's).
//! PutMetricAlarm creates and rewrites alike, so every attribute but the
//! name changes in place.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{self, ComparisonOperator, Dimension, Statistic};
use serde::{Deserialize, Serialize};

use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{
    deleted, fit_i32, from_props, in_stack_ids, look_at, name_and_arn, ours_id, prop_tags,
    replace_tags, sent, sent_ok, tags_value, to_props, vanished, Tags,
};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What CloudWatch answers for an alarm that is not there.
const GONE: &[&str] = &["ResourceNotFound", "ResourceNotFoundException"];

/// An alarm's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmProps {
    /// Its name, its id.
    pub name: String,
    /// What firing means and what to look at, shown in the notification.
    pub description: String,
    /// The metric's namespace (`AWS/ApplicationELB`, `AWS/EC2`).
    pub namespace: String,
    /// The metric.
    pub metric_name: String,
    /// The metric's dimensions by name.
    pub dimensions: BTreeMap<String, String>,
    /// `Sum`, `Maximum`, `Minimum`, `Average` or `SampleCount`.
    pub statistic: String,
    /// Seconds each data point covers.
    pub period_seconds: i64,
    /// Data points looked at.
    pub evaluation_periods: i64,
    /// Of those, how many must breach.
    pub datapoints_to_alarm: i64,
    /// `GreaterThanOrEqualToThreshold`, `LessThanThreshold`, ...
    pub comparison: String,
    /// The value compared with.
    pub threshold: f64,
    /// What a missing data point counts as: `breaching`, `notBreaching`, ...
    pub treat_missing_data: String,
    /// Whom it tells when it fires and when it clears (SNS topic ARNs), sorted.
    pub actions: Vec<String>,
}

/// A CloudWatch metric alarm.
pub struct Alarm;

#[async_trait]
impl ResourceKind for Alarm {
    fn updatable(&self) -> &'static [&'static str] {
        &[
            "actions",
            "comparison",
            "datapoints_to_alarm",
            "description",
            "dimensions",
            "evaluation_periods",
            "metric_name",
            "namespace",
            "period_seconds",
            "statistic",
            "tags",
            "threshold",
            "treat_missing_data",
        ]
    }

    // First: it watches the others and notifies through the topic.
    fn destroy_rank(&self) -> u8 {
        0
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: AlarmProps = from_props(props)?;
        let alarm = alarms(cloud, Lookup::Name(&p.name))
            .await?
            .into_iter()
            .next();
        let tags = look_at(alarm, |a| async move { tags_of(cloud, arn_of(&a)?).await }).await?;
        Ok(ours_id(cloud, address, tags, p.name))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let ids = [id.to_string()];
        Ok(self.read_each(cloud, &ids).await?.pop().flatten())
    }

    /// One DescribeAlarms of the stack's alarms (their names share the
    /// stack's prefix), then each one's tags.
    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        let found = match ids {
            [one] => alarms(cloud, Lookup::Name(one)).await?,
            _ => alarms(cloud, Lookup::Prefix(&stack_prefix(cloud))).await?,
        };
        let mut each = Vec::with_capacity(ids.len());
        for id in ids {
            let alarm = found.iter().find(|a| a.alarm_name() == Some(id.as_str()));
            each.push(match alarm {
                Some(alarm) => Some(observe(cloud, alarm).await?),
                None => None,
            });
        }
        Ok(each)
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: AlarmProps = from_props(props)?;
        put(cloud, &p, prop_tags(props)?).await?;
        Ok(p.name)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: AlarmProps = from_props(props)?;
        if changed.iter().any(|attribute| attribute != "tags") {
            // Tags given to PutMetricAlarm for an existing alarm are ignored.
            put(cloud, &p, Vec::new()).await?;
        }
        if change.has("tags") {
            retag(cloud, id, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.cloudwatch.delete_alarms().alarm_names(id);
        deleted("DeleteAlarms", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut candidates = Vec::new();
        for alarm in alarms(cloud, Lookup::Prefix(&stack_prefix(cloud))).await? {
            if let Some(name) = alarm.alarm_name() {
                candidates.push((name.to_string(), arn_of(&alarm)?.to_string()));
            }
        }
        in_stack_ids(cloud, candidates, |arn| async move {
            tags_of(cloud, &arn).await.map(Some)
        })
        .await
    }
}

/// Which alarms to describe.
enum Lookup<'a> {
    Name(&'a str),
    Prefix(&'a str),
}

/// The start of every alarm name of the stack.
fn stack_prefix(cloud: &Cloud) -> String {
    format!("{}-", cloud.stack)
}

/// The metric alarms `lookup` names.
async fn alarms(cloud: &Cloud, lookup: Lookup<'_>) -> Result<Vec<types::MetricAlarm>> {
    let request = cloud
        .cloudwatch
        .describe_alarms()
        .alarm_types(types::AlarmType::MetricAlarm);
    let request = match lookup {
        Lookup::Name(name) => request.alarm_names(name),
        Lookup::Prefix(prefix) => request.alarm_name_prefix(prefix),
    };
    let pages: Vec<_> = sent(
        "DescribeAlarms",
        request.into_paginator().send().try_collect(),
    )
    .await?;
    Ok(pages
        .into_iter()
        .flat_map(|page| page.metric_alarms.unwrap_or_default())
        .collect())
}

/// Creates the alarm or rewrites all of it.
async fn put(cloud: &Cloud, p: &AlarmProps, tags: Vec<(String, String)>) -> Result<()> {
    let dimensions = p
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    let tags = tags
        .into_iter()
        .map(|(key, value)| types::Tag::builder().key(key).value(value).build())
        .collect::<Vec<_>>();
    let request = cloud
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&p.name)
        .alarm_description(&p.description)
        .namespace(&p.namespace)
        .metric_name(&p.metric_name)
        .set_dimensions(Some(dimensions))
        .statistic(Statistic::from(p.statistic.as_str()))
        .period(fit_i32(p.period_seconds, "period_seconds")?)
        .evaluation_periods(fit_i32(p.evaluation_periods, "evaluation_periods")?)
        .datapoints_to_alarm(fit_i32(p.datapoints_to_alarm, "datapoints_to_alarm")?)
        .comparison_operator(ComparisonOperator::from(p.comparison.as_str()))
        .threshold(p.threshold)
        .treat_missing_data(&p.treat_missing_data)
        .actions_enabled(true)
        .set_alarm_actions(Some(p.actions.clone()))
        .set_ok_actions(Some(p.actions.clone()))
        .set_tags(Some(tags).filter(|t| !t.is_empty()));
    sent_ok("PutMetricAlarm", request.send()).await
}

/// The alarm as `read` answers it.
async fn observe(cloud: &Cloud, alarm: &types::MetricAlarm) -> Result<Observed> {
    let arn = arn_of(alarm)?;
    let name = alarm.alarm_name().unwrap_or_default();
    let mut actions = alarm.alarm_actions().to_vec();
    actions.sort();
    let typed = AlarmProps {
        name: name.to_string(),
        description: alarm.alarm_description().unwrap_or_default().to_string(),
        namespace: alarm.namespace().unwrap_or_default().to_string(),
        metric_name: alarm.metric_name().unwrap_or_default().to_string(),
        dimensions: alarm
            .dimensions()
            .iter()
            .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
            .collect(),
        statistic: alarm
            .statistic()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        period_seconds: alarm.period().unwrap_or_default().into(),
        evaluation_periods: alarm.evaluation_periods().unwrap_or_default().into(),
        // Unset means all the evaluated periods.
        datapoints_to_alarm: alarm
            .datapoints_to_alarm()
            .or(alarm.evaluation_periods())
            .unwrap_or_default()
            .into(),
        comparison: alarm
            .comparison_operator()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        threshold: alarm.threshold().unwrap_or_default(),
        treat_missing_data: alarm.treat_missing_data().unwrap_or("missing").to_string(),
        actions,
    };
    let mut props = to_props(&typed);
    props.insert("tags".into(), tags_value(tags_of(cloud, arn).await?));
    Ok(Observed {
        props,
        outputs: name_and_arn(name, arn),
    })
}

fn arn_of(alarm: &types::MetricAlarm) -> Result<&str> {
    alarm
        .alarm_arn()
        .ok_or_else(|| CloudError::invalid("DescribeAlarms", "alarm without an ARN"))
}

async fn tags_of(cloud: &Cloud, arn: &str) -> Result<Tags> {
    let request = cloud.cloudwatch.list_tags_for_resource().resource_arn(arn);
    let out = sent("ListTagsForResource", request.send()).await?;
    Ok(out
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect())
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let alarm = alarms(cloud, Lookup::Name(name)).await?.into_iter().next();
    let alarm = alarm.ok_or_else(|| vanished("TagResource", "alarm", name))?;
    let arn = arn_of(&alarm)?;
    let current = tags_of(cloud, arn).await?.into_keys();
    let cloudwatch = &cloud.cloudwatch;
    let tag = |desired: Vec<(String, String)>| {
        let tags = desired
            .into_iter()
            .map(|(key, value)| types::Tag::builder().key(key).value(value).build());
        let request = cloudwatch.tag_resource().resource_arn(arn);
        sent_ok("TagResource", request.set_tags(Some(tags.collect())).send())
    };
    let untag = |stale: Vec<String>| {
        let request = cloudwatch.untag_resource().resource_arn(arn);
        sent_ok("UntagResource", request.set_tag_keys(Some(stale)).send())
    };
    replace_tags(props, current, tag, untag).await
}
