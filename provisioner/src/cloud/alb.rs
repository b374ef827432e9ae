//! The application load balancer: load balancer, target groups, listeners
//! and listener rules. Every id is the resource's ARN.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, IpAddressType,
    LoadBalancerSchemeEnum, LoadBalancerTypeEnum, PathPatternConditionConfig, ProtocolEnum,
    RedirectActionConfig, RedirectActionStatusCodeEnum, Rule, RuleCondition, Tag,
    TargetGroupAttribute, TargetHealthStateEnum, TargetTypeEnum,
};
use serde_json::Value;

use super::support::{prop_i64, prop_str, prop_strings, prop_tags, stale_tag_keys, tags_value};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props, ADDRESS_TAG, STACK_TAG};

/// Target group attribute holding the deregistration delay.
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// How long `delete` waits for a load balancer to disappear.
const LB_DELETE_TIMEOUT: Duration = Duration::from_secs(300);

/// A resource's tags, by key.
type Tags = BTreeMap<String, String>;

/// See the module contract in [`super`].
pub async fn find(
    cloud: &Cloud,
    kind: Kind,
    address: &str,
    props: &Props,
) -> Result<Option<String>> {
    let candidates: Vec<String> = match kind {
        Kind::LoadBalancer => {
            let name = prop_str(props, "name")?;
            match cloud.elb.describe_load_balancers().names(name).send().await {
                Ok(out) => out
                    .load_balancers()
                    .iter()
                    .filter_map(|lb| lb.load_balancer_arn().map(str::to_string))
                    .collect(),
                Err(e) => return none_if_gone(CloudError::from_sdk("DescribeLoadBalancers", e)),
            }
        }
        Kind::TargetGroup => {
            let name = prop_str(props, "name")?;
            match cloud.elb.describe_target_groups().names(name).send().await {
                Ok(out) => out
                    .target_groups()
                    .iter()
                    .filter_map(|tg| tg.target_group_arn().map(str::to_string))
                    .collect(),
                Err(e) => return none_if_gone(CloudError::from_sdk("DescribeTargetGroups", e)),
            }
        }
        Kind::Listener => match listeners_of(cloud, prop_str(props, "load_balancer_arn")?).await {
            Ok(arns) => arns,
            Err(e) => return none_if_gone(e),
        },
        Kind::ListenerRule => match rules_of(cloud, prop_str(props, "listener_arn")?).await {
            Ok(rules) => rules
                .iter()
                .filter(|r| r.is_default() != Some(true))
                .filter_map(|r| r.rule_arn().map(str::to_string))
                .collect(),
            Err(e) => return none_if_gone(e),
        },
        other => return Err(not_ours(other)),
    };
    let tags = tags_of(cloud, &candidates).await?;
    Ok(candidates.into_iter().find(|arn| {
        tags.get(arn).is_some_and(|t| {
            t.get(STACK_TAG) == Some(&cloud.stack)
                && t.get(ADDRESS_TAG).map(String::as_str) == Some(address)
        })
    }))
}

/// See the module contract in [`super`].
pub async fn read(cloud: &Cloud, kind: Kind, id: &str) -> Result<Option<Observed>> {
    let observed = match kind {
        Kind::LoadBalancer => read_load_balancer(cloud, id).await,
        Kind::TargetGroup => read_target_group(cloud, id).await,
        Kind::Listener => read_listener(cloud, id).await,
        Kind::ListenerRule => read_rule(cloud, id).await,
        other => return Err(not_ours(other)),
    };
    match observed {
        Err(e) if is_gone(&e) => Ok(None),
        other => other,
    }
}

/// See the module contract in [`super`].
pub async fn create(cloud: &Cloud, kind: Kind, _address: &str, props: &Props) -> Result<String> {
    let tags = Some(elb_tags(props)?);
    match kind {
        Kind::LoadBalancer => {
            let out = cloud
                .elb
                .create_load_balancer()
                .name(prop_str(props, "name")?)
                .set_subnets(Some(prop_strings(props, "subnet_ids")?))
                .set_security_groups(Some(prop_strings(props, "security_group_ids")?))
                .scheme(LoadBalancerSchemeEnum::from(prop_str(props, "scheme")?))
                .r#type(LoadBalancerTypeEnum::Application)
                .ip_address_type(IpAddressType::Ipv4)
                .set_tags(tags)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateLoadBalancer", e))?;
            out.load_balancers()
                .first()
                .and_then(|lb| lb.load_balancer_arn())
                .map(str::to_string)
                .ok_or_else(|| CloudError::invalid("CreateLoadBalancer", "no load balancer ARN"))
        }
        Kind::TargetGroup => {
            let out = cloud
                .elb
                .create_target_group()
                .name(prop_str(props, "name")?)
                .protocol(ProtocolEnum::Http)
                .port(prop_i32(props, "port")?)
                .vpc_id(prop_str(props, "vpc_id")?)
                .target_type(TargetTypeEnum::Ip)
                .health_check_enabled(true)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_port("traffic-port")
                .health_check_path(prop_str(props, "health_check_path")?)
                .set_tags(tags)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateTargetGroup", e))?;
            let arn = out
                .target_groups()
                .first()
                .and_then(|tg| tg.target_group_arn())
                .map(str::to_string)
                .ok_or_else(|| CloudError::invalid("CreateTargetGroup", "no target group ARN"))?;
            set_deregistration_delay(cloud, &arn, props).await?;
            Ok(arn)
        }
        Kind::Listener => {
            let certificates = match props.get("certificate_arn") {
                Some(Value::String(arn)) => {
                    Some(vec![Certificate::builder().certificate_arn(arn).build()])
                }
                _ => None,
            };
            let out = cloud
                .elb
                .create_listener()
                .load_balancer_arn(prop_str(props, "load_balancer_arn")?)
                .port(prop_i32(props, "port")?)
                .protocol(ProtocolEnum::from(prop_str(props, "protocol")?))
                .set_certificates(certificates)
                .set_ssl_policy(ssl_policy(props))
                .default_actions(listener_action(props)?)
                .set_tags(tags)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateListener", e))?;
            out.listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .map(str::to_string)
                .ok_or_else(|| CloudError::invalid("CreateListener", "no listener ARN"))
        }
        Kind::ListenerRule => {
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
        other => Err(not_ours(other)),
    }
}

/// See the module contract in [`super`].
pub async fn update(
    cloud: &Cloud,
    kind: Kind,
    id: &str,
    props: &Props,
    changed: &[String],
) -> Result<()> {
    let has = |name: &str| changed.iter().any(|c| c == name);
    match kind {
        Kind::LoadBalancer if has("security_group_ids") => {
            cloud
                .elb
                .set_security_groups()
                .load_balancer_arn(id)
                .set_security_groups(Some(prop_strings(props, "security_group_ids")?))
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("SetSecurityGroups", e))?;
        }
        Kind::TargetGroup => {
            if has("health_check_path") {
                cloud
                    .elb
                    .modify_target_group()
                    .target_group_arn(id)
                    .health_check_path(prop_str(props, "health_check_path")?)
                    .send()
                    .await
                    .map_err(|e| CloudError::from_sdk("ModifyTargetGroup", e))?;
            }
            if has("deregistration_delay_seconds") {
                set_deregistration_delay(cloud, id, props).await?;
            }
        }
        Kind::Listener
            if has("default_target_group_arn") || has("redirect_to_https") || has("ssl_policy") =>
        {
            let mut request = cloud.elb.modify_listener().listener_arn(id);
            if has("default_target_group_arn") || has("redirect_to_https") {
                request = request.default_actions(listener_action(props)?);
            }
            if has("ssl_policy") {
                request = request.set_ssl_policy(ssl_policy(props));
            }
            request
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("ModifyListener", e))?;
        }
        Kind::ListenerRule
            if has("path_patterns") || has("target_group_arn") || has("fixed_status") =>
        {
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
        Kind::LoadBalancer | Kind::Listener | Kind::ListenerRule => {}
        other => return Err(not_ours(other)),
    }
    if has("tags") {
        update_tags(cloud, id, props).await?;
    }
    Ok(())
}

/// See the module contract in [`super`].
pub async fn delete(cloud: &Cloud, kind: Kind, id: &str) -> Result<()> {
    let result = match kind {
        Kind::LoadBalancer => delete_load_balancer(cloud, id).await,
        Kind::TargetGroup => cloud
            .elb
            .delete_target_group()
            .target_group_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteTargetGroup", e)),
        Kind::Listener => cloud
            .elb
            .delete_listener()
            .listener_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteListener", e)),
        Kind::ListenerRule => cloud
            .elb
            .delete_rule()
            .rule_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteRule", e)),
        other => return Err(not_ours(other)),
    };
    match result {
        Err(e) if is_gone(&e) => Ok(()),
        other => other,
    }
}

/// See the module contract in [`super`].
pub async fn list_tagged(cloud: &Cloud) -> Result<Vec<(Kind, String)>> {
    let mut arns = Vec::new();
    let mut load_balancers = Vec::new();
    let mut pages = cloud
        .elb
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send();
    while let Some(lb) = pages.next().await {
        let lb = lb.map_err(|e| CloudError::from_sdk("DescribeLoadBalancers", e))?;
        if let Some(arn) = lb.load_balancer_arn() {
            load_balancers.push(arn.to_string());
        }
    }
    let mut pages = cloud
        .elb
        .describe_target_groups()
        .into_paginator()
        .items()
        .send();
    while let Some(tg) = pages.next().await {
        let tg = tg.map_err(|e| CloudError::from_sdk("DescribeTargetGroups", e))?;
        if let Some(arn) = tg.target_group_arn() {
            arns.push((Kind::TargetGroup, arn.to_string()));
        }
    }
    for lb in &load_balancers {
        // A load balancer deleted meanwhile has nothing left to list.
        let listeners = match listeners_of(cloud, lb).await {
            Ok(listeners) => listeners,
            Err(e) if is_gone(&e) => continue,
            Err(e) => return Err(e),
        };
        for listener in listeners {
            let rules = match rules_of(cloud, &listener).await {
                Ok(rules) => rules,
                Err(e) if is_gone(&e) => Vec::new(),
                Err(e) => return Err(e),
            };
            for rule in rules.iter().filter(|r| r.is_default() != Some(true)) {
                if let Some(arn) = rule.rule_arn() {
                    arns.push((Kind::ListenerRule, arn.to_string()));
                }
            }
            arns.push((Kind::Listener, listener));
        }
        arns.push((Kind::LoadBalancer, lb.clone()));
    }
    let ids: Vec<String> = arns.iter().map(|(_, arn)| arn.clone()).collect();
    let tags = tags_of(cloud, &ids).await?;
    Ok(arns
        .into_iter()
        .filter(|(_, arn)| {
            tags.get(arn)
                .is_some_and(|t| t.get(STACK_TAG) == Some(&cloud.stack))
        })
        .collect())
}

/// The load balancer's state (`provisioning`, `active`, ...), `None` when it is gone.
pub async fn load_balancer_state(cloud: &Cloud, arn: &str) -> Result<Option<String>> {
    match cloud
        .elb
        .describe_load_balancers()
        .load_balancer_arns(arn)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .load_balancers()
            .first()
            .and_then(|lb| lb.state())
            .and_then(|s| s.code())
            .map(|c| c.as_str().to_string())),
        Err(e) => none_if_gone(CloudError::from_sdk("DescribeLoadBalancers", e)),
    }
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

async fn read_load_balancer(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let out = cloud
        .elb
        .describe_load_balancers()
        .load_balancer_arns(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeLoadBalancers", e))?;
    let Some(lb) = out.load_balancers().first() else {
        return Ok(None);
    };
    let mut subnets: Vec<String> = lb
        .availability_zones()
        .iter()
        .filter_map(|az| az.subnet_id().map(str::to_string))
        .collect();
    subnets.sort();
    let mut groups = lb.security_groups().to_vec();
    groups.sort();
    let props = Props::from([
        ("name".into(), opt_str(lb.load_balancer_name())),
        ("subnet_ids".into(), Value::from(subnets)),
        ("security_group_ids".into(), Value::from(groups)),
        ("scheme".into(), opt_str(lb.scheme().map(|s| s.as_str()))),
        ("tags".into(), tags_value(one_tags(cloud, id).await?)),
    ]);
    let outputs = Props::from([
        ("arn".into(), Value::String(id.to_string())),
        ("dns_name".into(), opt_str(lb.dns_name())),
    ]);
    Ok(Some(Observed { props, outputs }))
}

async fn read_target_group(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let out = cloud
        .elb
        .describe_target_groups()
        .target_group_arns(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeTargetGroups", e))?;
    let Some(tg) = out.target_groups().first() else {
        return Ok(None);
    };
    let attributes = cloud
        .elb
        .describe_target_group_attributes()
        .target_group_arn(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeTargetGroupAttributes", e))?;
    let delay = attributes
        .attributes()
        .iter()
        .find(|a| a.key() == Some(DEREGISTRATION_DELAY))
        .and_then(|a| a.value())
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(Value::Null, Value::from);
    let props = Props::from([
        ("name".into(), opt_str(tg.target_group_name())),
        ("port".into(), tg.port().map_or(Value::Null, Value::from)),
        ("vpc_id".into(), opt_str(tg.vpc_id())),
        ("health_check_path".into(), opt_str(tg.health_check_path())),
        ("deregistration_delay_seconds".into(), delay),
        ("tags".into(), tags_value(one_tags(cloud, id).await?)),
    ]);
    let outputs = Props::from([("arn".into(), Value::String(id.to_string()))]);
    Ok(Some(Observed { props, outputs }))
}

/// `ssl_policy` of an HTTPS listener (`None` for HTTP).
fn ssl_policy(props: &Props) -> Option<String> {
    props
        .get("ssl_policy")
        .and_then(Value::as_str)
        .map(str::to_string)
}

async fn read_listener(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let out = cloud
        .elb
        .describe_listeners()
        .listener_arns(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeListeners", e))?;
    let Some(listener) = out.listeners().first() else {
        return Ok(None);
    };
    let certificate = listener
        .certificates()
        .first()
        .and_then(|c| c.certificate_arn());
    let props = Props::from([
        (
            "load_balancer_arn".into(),
            opt_str(listener.load_balancer_arn()),
        ),
        (
            "port".into(),
            listener.port().map_or(Value::Null, Value::from),
        ),
        (
            "protocol".into(),
            opt_str(listener.protocol().map(|p| p.as_str())),
        ),
        ("certificate_arn".into(), opt_str(certificate)),
        // moto reports a policy on HTTP listeners too; AWS has one only for HTTPS.
        (
            "ssl_policy".into(),
            opt_str(
                listener
                    .ssl_policy()
                    .filter(|_| listener.protocol() == Some(&ProtocolEnum::Https)),
            ),
        ),
        (
            "redirect_to_https".into(),
            Value::Bool(redirects_to_https(listener.default_actions())),
        ),
        (
            "default_target_group_arn".into(),
            opt_str(forward_target(listener.default_actions())),
        ),
        ("tags".into(), tags_value(one_tags(cloud, id).await?)),
    ]);
    let outputs = Props::from([("arn".into(), Value::String(id.to_string()))]);
    Ok(Some(Observed { props, outputs }))
}

async fn read_rule(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
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

async fn delete_load_balancer(cloud: &Cloud, id: &str) -> Result<()> {
    cloud
        .elb
        .delete_load_balancer()
        .load_balancer_arn(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DeleteLoadBalancer", e))?;
    // Its network interfaces hold the security groups until it is really gone.
    let deadline = Instant::now() + LB_DELETE_TIMEOUT;
    while load_balancer_state(cloud, id).await?.is_some() {
        if Instant::now() > deadline {
            return Err(CloudError {
                operation: "DeleteLoadBalancer".into(),
                code: "ResourceInUse".into(),
                message: format!("{id} still exists 5 minutes after its deletion"),
            });
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Ok(())
}

async fn set_deregistration_delay(cloud: &Cloud, arn: &str, props: &Props) -> Result<()> {
    let seconds = prop_i64(props, "deregistration_delay_seconds")?;
    cloud
        .elb
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key(DEREGISTRATION_DELAY)
                .value(seconds.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ModifyTargetGroupAttributes", e))?;
    Ok(())
}

async fn update_tags(cloud: &Cloud, arn: &str, props: &Props) -> Result<()> {
    let desired: Tags = prop_tags(props)?.into_iter().collect();
    let current = one_tags(cloud, arn).await?;
    let stale = stale_tag_keys(current.keys(), props)?;
    if !stale.is_empty() {
        cloud
            .elb
            .remove_tags()
            .resource_arns(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("RemoveTags", e))?;
    }
    if !desired.is_empty() {
        cloud
            .elb
            .add_tags()
            .resource_arns(arn)
            .set_tags(Some(elb_tags(props)?))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("AddTags", e))?;
    }
    Ok(())
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

fn elb_tags(props: &Props) -> Result<Vec<Tag>> {
    Ok(prop_tags(props)?
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect())
}

fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

/// A listener's default action: a permanent redirect to HTTPS on 443 with
/// `redirect_to_https`, else forward to `default_target_group_arn`.
fn listener_action(props: &Props) -> Result<Action> {
    if props.get("redirect_to_https").and_then(Value::as_bool) != Some(true) {
        return Ok(forward(prop_str(props, "default_target_group_arn")?));
    }
    let redirect = RedirectActionConfig::builder()
        .protocol("HTTPS")
        .port("443")
        .status_code(RedirectActionStatusCodeEnum::Http301)
        .build();
    Ok(Action::builder()
        .r#type(ActionTypeEnum::Redirect)
        .redirect_config(redirect)
        .build())
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

fn redirects_to_https(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        a.r#type() == Some(&ActionTypeEnum::Redirect)
            && a.redirect_config().and_then(|r| r.protocol()) == Some("HTTPS")
    })
}

/// The status a fixed-response action answers, `None` for a forward.
fn fixed_status(actions: &[Action]) -> Option<i64> {
    let action = actions
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::FixedResponse))?;
    action.fixed_response_config()?.status_code()?.parse().ok()
}

/// The patterns of a `path-pattern` condition: its config's, or the legacy
/// `Values` when the config is absent or empty.
pub(crate) fn path_patterns(condition: &RuleCondition) -> Vec<String> {
    match condition.path_pattern_config() {
        Some(config) if !config.values().is_empty() => config.values().to_vec(),
        _ => condition.values().to_vec(),
    }
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

/// `…:listener-rule/app/LB/ID/LISTENER/RULE` belongs to `…:listener/app/LB/ID/LISTENER`.
fn listener_of_rule(rule_arn: &str) -> Option<String> {
    let (prefix, _) = rule_arn.rsplit_once('/')?;
    Some(prefix.replacen(":listener-rule/", ":listener/", 1))
}

fn prop_i32(props: &Props, name: &str) -> Result<i32> {
    i32::try_from(prop_i64(props, name)?)
        .map_err(|_| CloudError::invalid(name, format!("property `{name}` is out of range")))
}

fn opt_str(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |s| Value::String(s.to_string()))
}

fn is_gone(e: &CloudError) -> bool {
    matches!(
        e.code.as_str(),
        "LoadBalancerNotFound" | "TargetGroupNotFound" | "ListenerNotFound" | "RuleNotFound"
    )
}

fn none_if_gone<T>(e: CloudError) -> Result<Option<T>> {
    if is_gone(&e) {
        Ok(None)
    } else {
        Err(e)
    }
}

fn not_ours(kind: Kind) -> CloudError {
    CloudError::invalid("alb", format!("{kind} is not a load balancer kind"))
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

super::legacy::legacy_family!();
