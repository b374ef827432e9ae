//! A target group the services register their tasks in (by IP), with its
//! health check and deregistration delay. Its id and `arn` output are its ARN.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetGroupAttribute, TargetTypeEnum};
use serde_json::Value;

use super::{find_ours, in_stack_only, one_tags, opt_str, prop_elb_tags, prop_i32, retag, GONE};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::{absent, gone_ok, prop_i64, prop_str, tags_value};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// Target group attribute holding the deregistration delay.
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

/// An ALB target group.
pub struct TargetGroup;

#[async_trait]
impl ResourceKind for TargetGroup {
    fn updatable(&self) -> &'static [&'static str] {
        &["health_check_path", "deregistration_delay_seconds", "tags"]
    }

    // After the listeners, rules and services that send to it.
    fn destroy_rank(&self) -> u8 {
        3
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let name = prop_str(props, "name")?;
        let described = cloud
            .elb
            .describe_target_groups()
            .names(name)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeTargetGroups", e));
        let Some(out) = absent(described, GONE)? else {
            return Ok(None);
        };
        let candidates = out
            .target_groups()
            .iter()
            .filter_map(|tg| tg.target_group_arn().map(str::to_string))
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

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        let has = |name: &str| changed.iter().any(|c| c == name);
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
        if has("tags") {
            retag(cloud, id, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .elb
            .delete_target_group()
            .target_group_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteTargetGroup", e));
        gone_ok(deleted, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut arns = Vec::new();
        let mut pages = cloud
            .elb
            .describe_target_groups()
            .into_paginator()
            .items()
            .send();
        while let Some(tg) = pages.next().await {
            let tg = tg.map_err(|e| CloudError::from_sdk("DescribeTargetGroups", e))?;
            if let Some(arn) = tg.target_group_arn() {
                arns.push(arn.to_string());
            }
        }
        in_stack_only(cloud, arns).await
    }
}

async fn observe(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
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
