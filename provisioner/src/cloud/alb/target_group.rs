//! A target group the services register their tasks in (by IP), with its
//! health check and deregistration delay. Its id and `arn` output are its
//! ARN; `metric_dimension` is the alarms' name for it.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetGroupAttribute, TargetTypeEnum};
use serde::{Deserialize, Serialize};

use super::{
    created, find_ours, ids, in_stack_only, metric_dimension, observed, prop_elb_tags, read_tagged,
    retag, GONE,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{deleted, fit_i32, from_props, required, sent, sent_ok};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// Target group attribute holding the deregistration delay.
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

/// A target group's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupProps {
    /// Seconds a deregistered target keeps its in-flight requests.
    pub deregistration_delay_seconds: Option<i64>,
    /// The path of the HTTP health check on the traffic port.
    pub health_check_path: Option<String>,
    /// Its name, unique in the account and region.
    pub name: Option<String>,
    /// The port the targets take traffic on.
    pub port: Option<i64>,
    /// The VPC of its targets.
    pub vpc_id: Option<String>,
}

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
        let p: TargetGroupProps = from_props(props)?;
        let request = cloud.elb.describe_target_groups();
        let request = request.names(required(p.name, "name")?);
        let described = sent("DescribeTargetGroups", request.send()).await;
        let listed = described.map(|out| ids(out.target_groups(), |tg| tg.target_group_arn()));
        find_ours(cloud, address, listed).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let ids = [id.to_string()];
        Ok(read_tagged(cloud, &ids, observe).await?.pop().flatten())
    }

    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        read_tagged(cloud, ids, observe).await
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: TargetGroupProps = from_props(props)?;
        let request = cloud
            .elb
            .create_target_group()
            .name(required(p.name, "name")?)
            .protocol(ProtocolEnum::Http)
            .port(fit_i32(required(p.port, "port")?, "port")?)
            .vpc_id(required(p.vpc_id, "vpc_id")?)
            .target_type(TargetTypeEnum::Ip)
            .health_check_enabled(true)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_port("traffic-port")
            .health_check_path(required(p.health_check_path, "health_check_path")?)
            .set_tags(prop_elb_tags(props)?);
        let out = sent("CreateTargetGroup", request.send()).await?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|tg| tg.target_group_arn());
        let arn = created("CreateTargetGroup", "target group", arn)?;
        set_deregistration_delay(cloud, &arn, p.deregistration_delay_seconds).await?;
        Ok(arn)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: TargetGroupProps = from_props(props)?;
        if change.has("health_check_path") {
            let request = cloud.elb.modify_target_group().target_group_arn(id);
            let path = required(p.health_check_path, "health_check_path")?;
            sent_ok("ModifyTargetGroup", request.health_check_path(path).send()).await?;
        }
        if change.has("deregistration_delay_seconds") {
            set_deregistration_delay(cloud, id, p.deregistration_delay_seconds).await?;
        }
        retag(cloud, id, props, changed).await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.elb.delete_target_group().target_group_arn(id);
        deleted("DeleteTargetGroup", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let items = cloud.elb.describe_target_groups().into_paginator().items();
        let all: Vec<_> = sent("DescribeTargetGroups", items.send().try_collect()).await?;
        in_stack_only(cloud, ids(&all, |tg| tg.target_group_arn())).await
    }
}

async fn observe(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let request = cloud.elb.describe_target_groups().target_group_arns(id);
    let out = sent("DescribeTargetGroups", request.send()).await?;
    let Some(tg) = out.target_groups().first() else {
        return Ok(None);
    };
    let request = cloud.elb.describe_target_group_attributes();
    let request = request.target_group_arn(id);
    let attributes = sent("DescribeTargetGroupAttributes", request.send()).await?;
    let delay = attributes
        .attributes()
        .iter()
        .find(|a| a.key() == Some(DEREGISTRATION_DELAY))
        .and_then(|a| a.value())
        .and_then(|v| v.parse::<i64>().ok());
    let typed = TargetGroupProps {
        deregistration_delay_seconds: delay,
        health_check_path: tg.health_check_path().map(str::to_string),
        name: tg.target_group_name().map(str::to_string),
        port: tg.port().map(i64::from),
        vpc_id: tg.vpc_id().map(str::to_string),
    };
    let mut observed = observed(id, &typed);
    let dimension = metric_dimension(id);
    observed
        .outputs
        .insert("metric_dimension".into(), dimension);
    Ok(Some(observed))
}

async fn set_deregistration_delay(cloud: &Cloud, arn: &str, seconds: Option<i64>) -> Result<()> {
    let seconds = required(seconds, "deregistration_delay_seconds")?;
    let attribute = TargetGroupAttribute::builder()
        .key(DEREGISTRATION_DELAY)
        .value(seconds.to_string())
        .build();
    let request = cloud.elb.modify_target_group_attributes();
    let request = request.target_group_arn(arn).attributes(attribute);
    sent_ok("ModifyTargetGroupAttributes", request.send()).await
}
