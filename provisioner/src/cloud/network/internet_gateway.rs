//! The internet gateway, attached to the VPC.

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, AttachmentStatus, ResourceType};

use super::{
    absent, address_filters, gone_ok, not_found_as_one, not_updatable, observed, opt_str, required,
    retag, stack_filters, tag_spec, tags_of, NOT_FOUND,
};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::{self, prop_str};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props};

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
        let out = cloud
            .ec2
            .describe_internet_gateways()
            .set_filters(Some(address_filters(cloud, address)))
            .send()
            .await;
        let out = out.map_err(|e| CloudError::from_sdk("DescribeInternetGateways", e))?;
        let mut ids = out
            .internet_gateways()
            .iter()
            .filter_map(|g| g.internet_gateway_id());
        Ok(ids.next().map(str::to_string))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let out = cloud
            .ec2
            .describe_internet_gateways()
            .internet_gateway_ids(id)
            .send()
            .await;
        let out = out.map_err(|e| CloudError::from_sdk("DescribeInternetGateways", e));
        let Some(out) = absent(out)? else {
            return Ok(None);
        };
        let Some(gateway) = out.internet_gateways().first() else {
            return Ok(None);
        };
        let props = Props::from([
            ("vpc_id".into(), opt_str(attached_vpc(gateway))),
            ("tags".into(), tags_of(gateway.tags())),
        ]);
        Ok(Some(observed(props, id)))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let out = cloud
            .ec2
            .create_internet_gateway()
            .tag_specifications(tag_spec(props, ResourceType::InternetGateway)?)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateInternetGateway", e))?;
        let id = out.internet_gateway().and_then(|g| g.internet_gateway_id());
        let id = required(id, "CreateInternetGateway", "InternetGatewayId")?;
        attach(cloud, &id, props).await?;
        Ok(id)
    }

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        for attribute in changed {
            match attribute.as_str() {
                "tags" => retag(cloud, id, props).await?,
                // Replaces the gateway for the planner; completes a half-made create.
                "vpc_id" => attach(cloud, id, props).await?,
                _ => return Err(not_updatable(Kind::InternetGateway, attribute)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        gone_ok(detach_and_delete(cloud, id).await)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let gateways = cloud
            .ec2
            .describe_internet_gateways()
            .set_filters(Some(stack_filters(cloud)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeInternetGateways", e))?;
        Ok(gateways
            .iter()
            .filter_map(|g| g.internet_gateway_id())
            .map(str::to_string)
            .collect())
    }
}

async fn attach(cloud: &Cloud, id: &str, props: &Props) -> Result<()> {
    cloud
        .ec2
        .attach_internet_gateway()
        .internet_gateway_id(id)
        .vpc_id(prop_str(props, "vpc_id")?)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("AttachInternetGateway", e))?;
    Ok(())
}

/// Detaches the gateway from every VPC, then deletes it.
async fn detach_and_delete(cloud: &Cloud, id: &str) -> Result<()> {
    let out = cloud
        .ec2
        .describe_internet_gateways()
        .internet_gateway_ids(id)
        .send()
        .await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeInternetGateways", e))?;
    let vpcs = out.internet_gateways().iter().flat_map(|g| g.attachments());
    for vpc_id in vpcs.filter_map(|a| a.vpc_id()) {
        let detached = cloud
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DetachInternetGateway", e));
        support::gone_ok(
            not_found_as_one(detached),
            &["Gateway.NotAttached", NOT_FOUND],
        )?;
    }
    cloud
        .ec2
        .delete_internet_gateway()
        .internet_gateway_id(id)
        .send()
        .await
        .map(drop)
        .map_err(|e| CloudError::from_sdk("DeleteInternetGateway", e))
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
