//! The application load balancer: load balancer, target groups, listeners
//! and listener rules, one kind per file. Every id is the resource's ARN.
//! Here: what they share (tags read per batch of ARNs, retagging, the
//! not-found codes, actions) and the looks other code takes at them.

mod listener;
mod listener_rule;
mod load_balancer;
mod target_group;

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Rule, RuleCondition, Tag, TargetHealthStateEnum,
};

pub use listener::Listener;
pub use listener_rule::ListenerRule;
pub use load_balancer::LoadBalancer;
pub use target_group::TargetGroup;

use super::support::{absent, in_stack, opt_str, ours, prop_i32, prop_tags, replace_tags};
use super::{Cloud, CloudError, Result};
use crate::model::Props;

/// Error codes meaning the resource (or its parent) is already gone.
const GONE: &[&str] = &[
    "LoadBalancerNotFound",
    "TargetGroupNotFound",
    "ListenerNotFound",
    "RuleNotFound",
];

/// A resource's tags, by key.
type Tags = BTreeMap<String, String>;

/// The load balancer's state (`provisioning`, `active`, ...), `None` when it is gone.
pub async fn load_balancer_state(cloud: &Cloud, arn: &str) -> Result<Option<String>> {
    let described = cloud
        .elb
        .describe_load_balancers()
        .load_balancer_arns(arn)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeLoadBalancers", e));
    Ok(absent(described, GONE)?.and_then(|out| {
        out.load_balancers()
            .first()
            .and_then(|lb| lb.state())
            .and_then(|s| s.code())
            .map(|c| c.as_str().to_string())
    }))
}

/// How many of the target group's targets are healthy, and how many it has.
pub async fn target_health(cloud: &Cloud, target_group_arn: &str) -> Result<(usize, usize)> {
    let out = cloud
        .elb
        .describe_target_health()
        .target_group_arn(target_group_arn)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeTargetHealth", e))?;
    let targets = out.target_health_descriptions();
    let healthy = targets
        .iter()
        .filter(|t| {
            t.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy)
        })
        .count();
    Ok((healthy, targets.len()))
}

/// The patterns of a `path-pattern` condition: its config's, or the legacy
/// `Values` when the config is absent or empty.
pub(crate) fn path_patterns(condition: &RuleCondition) -> Vec<String> {
    match condition.path_pattern_config() {
        Some(config) if !config.values().is_empty() => config.values().to_vec(),
        _ => condition.values().to_vec(),
    }
}

/// The one of `candidates` this stack created at `address`.
async fn find_ours(
    cloud: &Cloud,
    address: &str,
    candidates: Vec<String>,
) -> Result<Option<String>> {
    let tags = tags_of(cloud, &candidates).await?;
    Ok(candidates
        .into_iter()
        .find(|arn| tags.get(arn).is_some_and(|t| ours(cloud, t, address))))
}

/// Those of `arns` carrying the stack's tag.
async fn in_stack_only(cloud: &Cloud, arns: Vec<String>) -> Result<Vec<String>> {
    let tags = tags_of(cloud, &arns).await?;
    Ok(arns
        .into_iter()
        .filter(|arn| tags.get(arn).is_some_and(|t| in_stack(cloud, t)))
        .collect())
}

/// Tags of every ARN (DescribeTags takes at most 20 at a time).
async fn tags_of(cloud: &Cloud, arns: &[String]) -> Result<BTreeMap<String, Tags>> {
    let mut all = BTreeMap::new();
    for chunk in arns.chunks(20) {
        let out = cloud
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeTags", e))?;
        for description in out.tag_descriptions() {
            let Some(arn) = description.resource_arn() else {
                continue;
            };
            let tags = description
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
                .collect();
            all.insert(arn.to_string(), tags);
        }
    }
    Ok(all)
}

async fn one_tags(cloud: &Cloud, arn: &str) -> Result<Tags> {
    Ok(tags_of(cloud, &[arn.to_string()])
        .await?
        .remove(arn)
        .unwrap_or_default())
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, arn: &str, props: &Props) -> Result<()> {
    let current = one_tags(cloud, arn).await?.into_keys();
    let tag = |desired: Vec<(String, String)>| async {
        cloud
            .elb
            .add_tags()
            .resource_arns(arn)
            .set_tags(Some(elb_tags(desired)))
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("AddTags", e))
    };
    let untag = |stale: Vec<String>| async {
        cloud
            .elb
            .remove_tags()
            .resource_arns(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("RemoveTags", e))
    };
    replace_tags(props, current, tag, untag).await
}

/// The desired tags of `props`, as the create calls take them.
fn prop_elb_tags(props: &Props) -> Result<Vec<Tag>> {
    Ok(elb_tags(prop_tags(props)?))
}

fn elb_tags(tags: Vec<(String, String)>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Every load balancer's ARN.
async fn load_balancers(cloud: &Cloud) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut pages = cloud
        .elb
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send();
    while let Some(lb) = pages.next().await {
        let lb = lb.map_err(|e| CloudError::from_sdk("DescribeLoadBalancers", e))?;
        if let Some(arn) = lb.load_balancer_arn() {
            arns.push(arn.to_string());
        }
    }
    Ok(arns)
}

/// Every listener of every load balancer.
async fn all_listeners(cloud: &Cloud) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    for lb in load_balancers(cloud).await? {
        // A load balancer deleted meanwhile has nothing left to list.
        arns.extend(absent(listeners_of(cloud, &lb).await, GONE)?.unwrap_or_default());
    }
    Ok(arns)
}

async fn listeners_of(cloud: &Cloud, load_balancer_arn: &str) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut pages = cloud
        .elb
        .describe_listeners()
        .load_balancer_arn(load_balancer_arn)
        .into_paginator()
        .items()
        .send();
    while let Some(listener) = pages.next().await {
        let listener = listener.map_err(|e| CloudError::from_sdk("DescribeListeners", e))?;
        if let Some(arn) = listener.listener_arn() {
            arns.push(arn.to_string());
        }
    }
    Ok(arns)
}

async fn rules_of(cloud: &Cloud, listener_arn: &str) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    let mut pages = cloud
        .elb
        .describe_rules()
        .listener_arn(listener_arn)
        .into_paginator()
        .items()
        .send();
    while let Some(rule) = pages.next().await {
        rules.push(rule.map_err(|e| CloudError::from_sdk("DescribeRules", e))?);
    }
    Ok(rules)
}

fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

/// The target group a forward action sends to.
fn forward_target(actions: &[Action]) -> Option<&str> {
    let action = actions
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))?;
    action.target_group_arn().or_else(|| {
        action
            .forward_config()?
            .target_groups()
            .first()?
            .target_group_arn()
    })
}
