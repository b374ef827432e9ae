//! A rule of a listener: requests whose path matches its patterns go to a
//! target group, or get a fixed status. Its id and `arn` output are its ARN.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, PathPatternConditionConfig, Rule,
    RuleCondition,
};
use serde::{Deserialize, Serialize};

use super::{
    all_listeners, created, find_ours, forward, forward_target, in_stack_only, observed, of_each,
    path_patterns, prop_elb_tags, read_tagged, retag, rules_of, with_tags, GONE,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{absent, deleted, fit_i32, from_props, required, sent, sent_ok};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// A listener rule's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerRuleProps {
    /// The status it answers itself; `None` when it forwards.
    pub fixed_status: Option<i64>,
    /// The listener it belongs to.
    pub listener_arn: Option<String>,
    /// The request paths it matches, sorted.
    pub path_patterns: Vec<String>,
    /// Its place among the listener's rules: lower is tried first.
    pub priority: Option<i64>,
    /// The target group it forwards to; `None` when it answers a fixed status.
    pub target_group_arn: Option<String>,
}

/// An ALB listener rule.
pub struct ListenerRule;

#[async_trait]
impl ResourceKind for ListenerRule {
    fn updatable(&self) -> &'static [&'static str] {
        &["path_patterns", "fixed_status", "target_group_arn", "tags"]
    }

    // Before its listener and the target group it forwards to.
    fn destroy_rank(&self) -> u8 {
        1
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: ListenerRuleProps = from_props(props)?;
        let listener = required(p.listener_arn, "listener_arn")?;
        find_ours(cloud, address, rules_of(cloud, &listener).await).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let ids = [id.to_string()];
        Ok(read_tagged(cloud, &ids, observe).await?.pop().flatten())
    }

    /// One DescribeRules for all (one each if some rule is gone: the call
    /// then fails whole), and their tags in one call.
    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        let request = cloud.elb.describe_rules().set_rule_arns(Some(ids.to_vec()));
        let described = sent("DescribeRules", request.send()).await;
        let Some(out) = absent(described, GONE)? else {
            return read_tagged(cloud, ids, observe).await;
        };
        let untagged = ids
            .iter()
            .map(|id| {
                let rule = out
                    .rules()
                    .iter()
                    .find(|r| r.rule_arn() == Some(id.as_str()));
                rule.map(|rule| observed_rule(rule, id))
            })
            .collect();
        with_tags(cloud, ids, untagged).await
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: ListenerRuleProps = from_props(props)?;
        let request = cloud
            .elb
            .create_rule()
            .listener_arn(required(p.listener_arn.as_deref(), "listener_arn")?)
            .priority(fit_i32(required(p.priority, "priority")?, "priority")?)
            .conditions(path_condition(&p))
            .actions(rule_action(&p)?)
            .set_tags(prop_elb_tags(props)?);
        let out = sent("CreateRule", request.send()).await?;
        let arn = out.rules().first().and_then(|r| r.rule_arn());
        created("CreateRule", "rule", arn)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: ListenerRuleProps = from_props(props)?;
        if change.has("path_patterns")
            || change.has("target_group_arn")
            || change.has("fixed_status")
        {
            let mut request = cloud.elb.modify_rule().rule_arn(id);
            if change.has("path_patterns") {
                request = request.conditions(path_condition(&p));
            }
            if change.has("target_group_arn") || change.has("fixed_status") {
                request = request.actions(rule_action(&p)?);
            }
            sent_ok("ModifyRule", request.send()).await?;
        }
        retag(cloud, id, props, changed).await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.elb.delete_rule().rule_arn(id);
        deleted("DeleteRule", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let listeners = all_listeners(cloud).await?;
        let rules = of_each(listeners, |listener| async move {
            rules_of(cloud, &listener).await
        });
        in_stack_only(cloud, rules.await?).await
    }
}

async fn observe(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let request = cloud.elb.describe_rules().rule_arns(id);
    let out = sent("DescribeRules", request.send()).await?;
    Ok(out.rules().first().map(|rule| observed_rule(rule, id)))
}

/// The rule as `read` answers it, but for its tags.
fn observed_rule(rule: &Rule, id: &str) -> Observed {
    let conditions = rule.conditions().iter();
    let paths = conditions.filter(|c| c.field() == Some("path-pattern"));
    let mut patterns: Vec<String> = paths.flat_map(path_patterns).collect();
    patterns.sort();
    let typed = ListenerRuleProps {
        fixed_status: fixed_status(rule.actions()),
        listener_arn: listener_of_rule(id),
        path_patterns: patterns,
        priority: rule.priority().and_then(|p| p.parse::<i64>().ok()),
        target_group_arn: forward_target(rule.actions()).map(str::to_string),
    };
    observed(id, &typed)
}

/// A rule's action: answer `fixed_status` itself, else forward.
fn rule_action(p: &ListenerRuleProps) -> Result<Action> {
    let Some(status) = p.fixed_status else {
        let target = p.target_group_arn.as_deref();
        return Ok(forward(required(target, "target_group_arn")?));
    };
    let response = FixedResponseActionConfig::builder()
        .status_code(status.to_string())
        .content_type("text/plain")
        .message_body("Not Found")
        .build();
    Ok(Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(response)
        .build())
}

/// The status a fixed-response action answers, `None` for a forward.
fn fixed_status(actions: &[Action]) -> Option<i64> {
    let action = actions
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::FixedResponse))?;
    action.fixed_response_config()?.status_code()?.parse().ok()
}

fn path_condition(p: &ListenerRuleProps) -> RuleCondition {
    let config = PathPatternConditionConfig::builder()
        .set_values(Some(p.path_patterns.clone()))
        .build();
    RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(config)
        .build()
}

/// `…:listener-rule/app/LB/ID/LISTENER/RULE` belongs to `…:listener/app/LB/ID/LISTENER`.
fn listener_of_rule(rule_arn: &str) -> Option<String> {
    let (prefix, _) = rule_arn.rsplit_once('/')?;
    Some(prefix.replacen(":listener-rule/", ":listener/", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_arn_names_its_listener() {
        assert_eq!(
            listener_of_rule("arn:aws:elasticloadbalancing:r:1:listener-rule/app/lb/ab/cd/ef")
                .as_deref(),
            Some("arn:aws:elasticloadbalancing:r:1:listener/app/lb/ab/cd")
        );
    }
}
