//! The internet gateway, attached to the VPC.

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, AttachmentStatus, Filter, ResourceType};
use serde::{Deserialize, Serialize};

use super::{
    answered, deleted, described, first_at, ids_of, not_found_as_one, observed, stack_filters,
    tag_spec, update_tagged, NOT_FOUND,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{self, from_props, not_in_place, required, sent, sent_ok};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// An internet gateway's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InternetGatewayProps {
    /// The VPC it is attached to; `None` when it is detached (or detaching).
    pub vpc_id: Option<String>,
}

/// An EC2 internet gateway.
pub struct InternetGateway;

#[async_trait]
impl ResourceKind for InternetGateway {
    fn updatable(&self) -> &'static [&'static str] {
        &["tags"]
    }

    // After the routes through it; before the VPC it is attached to.
    fn destroy_rank(&self) -> u8 {
        7
    }

    async fn find(&self, cloud: &Cloud, address: &str, _props: &Props) -> Result<Option<String>> {
        first_at(cloud, address, |filters| ids(cloud, filters)).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(gateway) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let vpc_id = attached_vpc(&gateway).map(str::to_string);
        let p = InternetGatewayProps { vpc_id };
        Ok(Some(observed(&p, gateway.tags(), id)))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: InternetGatewayProps = from_props(props)?;
        let request = cloud.ec2.create_internet_gateway();
        let request = request.tag_specifications(tag_spec(props, ResourceType::InternetGateway)?);
        let out = sent("CreateInternetGateway", request.send()).await?;
        let id = out.internet_gateway().and_then(|g| g.internet_gateway_id());
        let id = answered(id, "CreateInternetGateway", "InternetGatewayId")?;
        attach(cloud, &id, p).await?;
        Ok(id)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        update_tagged(cloud, id, props, changed, |attribute| async move {
            match attribute {
                // Replaces the gateway for the planner; completes a half-made create.
                "vpc_id" => attach(cloud, id, from_props(props)?).await,
                other => Err(not_in_place("UpdateInternetGateway", other)),
            }
        })
        .await
    }

    // Detached from every VPC first.
    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let Some(gateway) = describe(cloud, id).await? else {
            return Ok(());
        };
        for vpc_id in gateway.attachments().iter().filter_map(|a| a.vpc_id()) {
            let request = cloud.ec2.detach_internet_gateway().internet_gateway_id(id);
            let detached = sent_ok("DetachInternetGateway", request.vpc_id(vpc_id).send()).await;
            let gone = ["Gateway.NotAttached", NOT_FOUND];
            support::gone_ok(not_found_as_one(detached), &gone)?;
        }
        let request = cloud.ec2.delete_internet_gateway().internet_gateway_id(id);
        deleted("DeleteInternetGateway", request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        ids(cloud, stack_filters(cloud)).await
    }
}

/// The ids of the internet gateways `filters` match.
async fn ids(cloud: &Cloud, filters: Vec<Filter>) -> Result<Vec<String>> {
    let request = cloud
        .ec2
        .describe_internet_gateways()
        .set_filters(Some(filters));
    let items = request.into_paginator().items().send().try_collect();
    ids_of(
        "DescribeInternetGateways",
        items,
        types::InternetGateway::internet_gateway_id,
    )
    .await
}

/// The gateway `id`, `None` when it is gone.
async fn describe(cloud: &Cloud, id: &str) -> Result<Option<types::InternetGateway>> {
    let request = cloud.ec2.describe_internet_gateways();
    let request = request.internet_gateway_ids(id);
    let out = described("DescribeInternetGateways", request.send()).await?;
    Ok(out.and_then(|o| o.internet_gateways().first().cloned()))
}

async fn attach(cloud: &Cloud, id: &str, p: InternetGatewayProps) -> Result<()> {
    let request = cloud.ec2.attach_internet_gateway().internet_gateway_id(id);
    let request = request.vpc_id(required(p.vpc_id, "vpc_id")?);
    sent_ok("AttachInternetGateway", request.send()).await
}

/// The VPC the gateway is attached to, unless detached or detaching.
fn attached_vpc(gateway: &types::InternetGateway) -> Option<&str> {
    let gone = [AttachmentStatus::Detached, AttachmentStatus::Detaching];
    let mut live = gateway
        .attachments()
        .iter()
        .filter(|a| a.state().is_none_or(|s| !gone.contains(s)));
    live.find_map(|a| a.vpc_id())
}
