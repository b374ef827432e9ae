//! The application load balancer: load balancer, target groups, listeners
//! and listener rules, one kind per file. Every id is the resource's ARN.
//! Here: what they share (the not-found codes, finding and listing by the
//! tags read per batch of ARNs, retagging, the answer of `read`, actions)
//! and the looks other code takes at them.

mod listener;
mod listener_rule;
mod load_balancer;
mod target_group;

use std::collections::BTreeMap;
use std::future::Future;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Listener as ElbListener, LoadBalancer as ElbLoadBalancer, Rule,
    RuleCondition, Tag, TargetHealthStateEnum,
};
use serde::Serialize;
use serde_json::Value;

pub use listener::{Listener, ListenerProps};
pub use listener_rule::{ListenerRule, ListenerRuleProps};
pub use load_balancer::{LoadBalancer, LoadBalancerProps};
pub use target_group::{TargetGroup, TargetGroupProps};

use super::support::{
    absent, in_stack, ours, prop_tags, replace_tags, sent, sent_ok, tag_map, tags_value, to_props,
    Tags,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// Error codes meaning the resource (or its parent) is already gone.
const GONE: &[&str] = &[
    "LoadBalancerNotFound",
    "TargetGroupNotFound",
    "ListenerNotFound",
    "RuleNotFound",
];

/// The load balancer's state (`provisioning`, `active`, ...), `None` when it is gone.
pub async fn load_balancer_state(cloud: &Cloud, arn: &str) -> Result<Option<String>> {
    let lb = describe_load_balancer(cloud, arn).await?;
    let state = lb.as_ref().and_then(|lb| lb.state()?.code());
    Ok(state.map(|c| c.as_str().to_string()))
}

/// The load balancer at `arn`, `None` when it is gone.
async fn describe_load_balancer(cloud: &Cloud, arn: &str) -> Result<Option<ElbLoadBalancer>> {
    let request = cloud.elb.describe_load_balancers().load_balancer_arns(arn);
    let described = sent("DescribeLoadBalancers", request.send()).await;
    let out = absent(described, GONE)?;
    Ok(out.and_then(|out| out.load_balancers?.into_iter().next()))
}

/// How many of the target group's targets are healthy, and how many it has.
pub async fn target_health(cloud: &Cloud, target_group_arn: &str) -> Result<(usize, usize)> {
    let request = cloud.elb.describe_target_health();
    let request = request.target_group_arn(target_group_arn);
    let out = sent("DescribeTargetHealth", request.send()).await?;
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

/// What `find` answers: the one of the `listed` candidates (`Err` with a
/// gone code: their parent is gone, so there are none) this stack created
/// at `address`.
async fn find_ours(
    cloud: &Cloud,
    address: &str,
    listed: Result<Vec<String>>,
) -> Result<Option<String>> {
    let Some(candidates) = absent(listed, GONE)? else {
        return Ok(None);
    };
    let tags = tags_of(cloud, &candidates).await?;
    Ok(candidates
        .into_iter()
        .find(|arn| tags.get(arn).is_some_and(|t| ours(cloud, t, address))))
}

/// What `list_tagged` answers: those of `arns` carrying the stack's tag.
async fn in_stack_only(cloud: &Cloud, arns: Vec<String>) -> Result<Vec<String>> {
    let tags = tags_of(cloud, &arns).await?;
    Ok(arns
        .into_iter()
        .filter(|arn| tags.get(arn).is_some_and(|t| in_stack(cloud, t)))
        .collect())
}

/// What `observe` answers for the resource at `arn` with the attributes
/// `typed`: those, and its ARN as the output `arn` ([`read_tagged`] adds
/// its tags).
fn observed<T: Serialize>(arn: &str, typed: &T) -> Observed {
    let outputs = Props::from([("arn".into(), Value::String(arn.to_string()))]);
    Observed {
        props: to_props(typed),
        outputs,
    }
}

/// What CloudWatch's `LoadBalancer` and `TargetGroup` dimensions name a
/// load balancer or target group by: the resource part of its ARN
/// (`app/NAME/ID`, `targetgroup/NAME/ID`), the `metric_dimension` output.
pub fn metric_dimension(arn: &str) -> Value {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    let dimension = resource.strip_prefix("loadbalancer/").unwrap_or(resource);
    Value::String(dimension.to_string())
}

/// What `read_each` answers for every ALB kind: each of `ids` as its
/// kind's `observe` reads it (`None`: gone), with the tags of all of them
/// from one DescribeTags (20 ARNs a call).
async fn read_tagged<'a, F, Fut>(
    cloud: &'a Cloud,
    ids: &'a [String],
    observe: F,
) -> Result<Vec<Option<Observed>>>
where
    F: Fn(&'a Cloud, &'a str) -> Fut,
    Fut: Future<Output = Result<Option<Observed>>>,
{
    let each = ids
        .iter()
        .map(|id| async { Ok::<_, CloudError>(absent(observe(cloud, id).await, GONE)?.flatten()) });
    let untagged = futures::future::try_join_all(each).await?;
    with_tags(cloud, ids, untagged).await
}

/// The `untagged` reads of `ids` (in their order) with their tags, from
/// one DescribeTags (20 ARNs a call).
async fn with_tags(
    cloud: &Cloud,
    ids: &[String],
    untagged: Vec<Option<Observed>>,
) -> Result<Vec<Option<Observed>>> {
    let present: Vec<String> = ids
        .iter()
        .zip(&untagged)
        .filter(|(_, read)| read.is_some())
        .map(|(id, _)| id.clone())
        .collect();
    let mut tags = tags_of(cloud, &present).await?;
    Ok(ids
        .iter()
        .zip(untagged)
        .map(|(id, read)| {
            read.map(|mut read| {
                let tags = tags.remove(id).unwrap_or_default();
                read.props.insert("tags".into(), tags_value(tags));
                read
            })
        })
        .collect())
}

/// The ARN a create call answered (`None`: an error of `operation` saying
/// there was no `what` ARN).
fn created(operation: &str, what: &str, arn: Option<&str>) -> Result<String> {
    arn.map(str::to_string)
        .ok_or_else(|| CloudError::invalid(operation, format!("no {what} ARN")))
}

/// Tags of every ARN (DescribeTags takes at most 20 at a time).
async fn tags_of(cloud: &Cloud, arns: &[String]) -> Result<BTreeMap<String, Tags>> {
    let mut all = BTreeMap::new();
    for chunk in arns.chunks(20) {
        let request = cloud.elb.describe_tags();
        let request = request.set_resource_arns(Some(chunk.to_vec()));
        let out = sent("DescribeTags", request.send()).await?;
        for description in out.tag_descriptions() {
            let Some(arn) = description.resource_arn() else {
                continue;
            };
            let pairs = description.tags().iter();
            let tags = tag_map(pairs.filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))));
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

/// The last step of every kind's `update`: sets exactly the desired tags
/// when they are among the `changed` attributes.
async fn retag(cloud: &Cloud, arn: &str, props: &Props, changed: &[String]) -> Result<()> {
    if !changed.iter().any(|c| c == "tags") {
        return Ok(());
    }
    let current = one_tags(cloud, arn).await?.into_keys();
    let elb = &cloud.elb;
    let tag = |desired: Vec<(String, String)>| {
        let request = elb.add_tags().resource_arns(arn);
        sent_ok("AddTags", request.set_tags(Some(elb_tags(desired))).send())
    };
    let untag = |stale: Vec<String>| {
        let request = elb.remove_tags().resource_arns(arn);
        sent_ok("RemoveTags", request.set_tag_keys(Some(stale)).send())
    };
    replace_tags(props, current, tag, untag).await
}

/// The desired tags of `props`, as the create calls take them.
fn prop_elb_tags(props: &Props) -> Result<Option<Vec<Tag>>> {
    Ok(Some(elb_tags(prop_tags(props)?)))
}

fn elb_tags(tags: Vec<(String, String)>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Every load balancer's ARN.
async fn load_balancers(cloud: &Cloud) -> Result<Vec<String>> {
    let items = cloud.elb.describe_load_balancers().into_paginator().items();
    let all: Vec<_> = sent("DescribeLoadBalancers", items.send().try_collect()).await?;
    Ok(ids(&all, |lb| lb.load_balancer_arn()))
}

/// Every listener of every load balancer.
async fn all_listeners(cloud: &Cloud) -> Result<Vec<String>> {
    of_each(load_balancers(cloud).await?, |lb| async move {
        listeners_of(cloud, &lb).await
    })
    .await
}

async fn listeners_of(cloud: &Cloud, load_balancer_arn: &str) -> Result<Vec<String>> {
    let request = cloud
        .elb
        .describe_listeners()
        .load_balancer_arn(load_balancer_arn);
    let items = request.into_paginator().items();
    let all: Vec<ElbListener> = sent("DescribeListeners", items.send().try_collect()).await?;
    Ok(ids(&all, ElbListener::listener_arn))
}

/// The ARNs of the listener's rules but its default one (which comes and
/// goes with the listener).
async fn rules_of(cloud: &Cloud, listener_arn: &str) -> Result<Vec<String>> {
    let request = cloud.elb.describe_rules().listener_arn(listener_arn);
    let items = request.into_paginator().items();
    let all: Vec<Rule> = sent("DescribeRules", items.send().try_collect()).await?;
    let rules = all.into_iter().filter(|r| r.is_default() != Some(true));
    Ok(rules.filter_map(|r| r.rule_arn).collect())
}

/// What `list` answers for each of `parents`, together; nothing for a
/// parent deleted meanwhile.
async fn of_each<F, Fut>(parents: Vec<String>, mut list: F) -> Result<Vec<String>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Vec<String>>>,
{
    let mut all = Vec::new();
    for parent in parents {
        all.extend(absent(list(parent).await, GONE)?.unwrap_or_default());
    }
    Ok(all)
}

/// The ids (ARNs, mostly) `id_of` finds in `items`, an answer's list.
fn ids<T>(items: &[T], id_of: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| id_of(item).map(str::to_string))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::metric_dimension;

    #[test]
    fn the_metric_dimension_is_the_resource_part_of_the_arn() {
        let lb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/ep-alb/50dc6c495c0c9188";
        assert_eq!(metric_dimension(lb), "app/ep-alb/50dc6c495c0c9188");
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/ep-ingest/73e2d6bc24d8a067";
        assert_eq!(
            metric_dimension(tg),
            "targetgroup/ep-ingest/73e2d6bc24d8a067"
        );
    }
}
