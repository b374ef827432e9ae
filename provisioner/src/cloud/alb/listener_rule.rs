//! A rule of a listener: requests whose path matches its patterns go to a
//! target group, or get a fixed status. Its id and `arn` output are its ARN.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, PathPatternConditionConfig, RuleCondition,
};
use serde_json::Value;

use super::{
    all_listeners, find_ours, forward, forward_target, in_stack_only, one_tags, opt_str,
    path_patterns, prop_elb_tags, prop_i32, retag, rules_of, GONE,
};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::{absent, gone_ok, prop_str, prop_strings, tags_value};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

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
        let listed = rules_of(cloud, prop_str(props, "listener_arn")?).await;
        let Some(rules) = absent(listed, GONE)? else {
            return Ok(None);
        };
        let candidates = rules
            .iter()
            .filter(|r| r.is_default() != Some(true))
            .filter_map(|r| r.rule_arn().map(str::to_string))
            .collect();
        find_ours(cloud, address, candidates).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        Ok(absent(observe(cloud, id).await, GONE)?.flatten())
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let tags = Some(prop_elb_tags(props)?);
        let out = cloud
            .elb
            .create_rule()
            .listener_arn(prop_str(props, "listener_arn")?)
            .priority(prop_i32(props, "priority")?)
            .conditions(path_condition(props)?)
            .actions(rule_action(props)?)
            .set_tags(tags)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateRule", e))?;
        out.rules()
            .first()
            .and_then(|r| r.rule_arn())
            .map(str::to_string)
            .ok_or_else(|| CloudError::invalid("CreateRule", "no rule ARN"))
    }

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        let has = |name: &str| changed.iter().any(|c| c == name);
        if has("path_patterns") || has("target_group_arn") || has("fixed_status") {
            let mut request = cloud.elb.modify_rule().rule_arn(id);
            if has("path_patterns") {
                request = request.conditions(path_condition(props)?);
            }
            if has("target_group_arn") || has("fixed_status") {
                request = request.actions(rule_action(props)?);
            }
            request
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("ModifyRule", e))?;
        }
        if has("tags") {
            retag(cloud, id, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .elb
            .delete_rule()
            .rule_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteRule", e));
        gone_ok(deleted, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut arns = Vec::new();
        for listener in all_listeners(cloud).await? {
            // A listener deleted meanwhile has no rules left.
            let rules = absent(rules_of(cloud, &listener).await, GONE)?.unwrap_or_default();
            arns.extend(
                rules
                    .iter()
                    .filter(|r| r.is_default() != Some(true))
                    .filter_map(|r| r.rule_arn().map(str::to_string)),
            );
        }
        in_stack_only(cloud, arns).await
    }
}

async fn observe(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let out = cloud
        .elb
        .describe_rules()
        .rule_arns(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeRules", e))?;
    let Some(rule) = out.rules().first() else {
        return Ok(None);
    };
    let mut patterns: Vec<String> = rule
        .conditions()
        .iter()
        .filter(|c| c.field() == Some("path-pattern"))
        .flat_map(path_patterns)
        .collect();
    patterns.sort();
    let priority = rule
        .priority()
        .and_then(|p| p.parse::<i64>().ok())
        .map_or(Value::Null, Value::from);
    let props = Props::from([
        (
            "listener_arn".into(),
            opt_str(listener_of_rule(id).as_deref()),
        ),
        ("priority".into(), priority),
        ("path_patterns".into(), Value::from(patterns)),
        (
            "target_group_arn".into(),
            opt_str(forward_target(rule.actions())),
        ),
        (
            "fixed_status".into(),
            fixed_status(rule.actions()).map_or(Value::Null, Value::from),
        ),
        ("tags".into(), tags_value(one_tags(cloud, id).await?)),
    ]);
    let outputs = Props::from([("arn".into(), Value::String(id.to_string()))]);
    Ok(Some(Observed { props, outputs }))
}

/// A rule's action: answer `fixed_status` itself, else forward.
fn rule_action(props: &Props) -> Result<Action> {
    let Some(status) = props.get("fixed_status").and_then(Value::as_i64) else {
        return Ok(forward(prop_str(props, "target_group_arn")?));
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

fn path_condition(props: &Props) -> Result<RuleCondition> {
    let config = PathPatternConditionConfig::builder()
        .set_values(Some(prop_strings(props, "path_patterns")?))
        .build();
    Ok(RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(config)
        .build())
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
