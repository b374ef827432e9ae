//! The VPC, with its two DNS attributes.

use async_trait::async_trait;
use aws_sdk_ec2::types::VpcAttributeName::{self, EnableDnsHostnames, EnableDnsSupport};
use aws_sdk_ec2::types::{self, AttributeBooleanValue, Filter, ResourceType};
use serde::{Deserialize, Serialize};

use super::{
    answered, deleted, described, first_at, ids_of, observed, stack_filters, tag_spec,
    update_tagged,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{from_props, not_in_place, required, sent, sent_ok};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// A VPC's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpcProps {
    /// Its IPv4 address range; `None` when EC2 reports none.
    pub cidr_block: Option<String>,
    /// Whether its instances get public DNS hostnames.
    pub enable_dns_hostnames: bool,
    /// Whether the Amazon DNS server answers in it.
    pub enable_dns_support: bool,
}

/// An EC2 VPC.
pub struct Vpc;

#[async_trait]
impl ResourceKind for Vpc {
    fn updatable(&self) -> &'static [&'static str] {
        &["enable_dns_hostnames", "enable_dns_support", "tags"]
    }

    // Last of the network: everything else in it must be gone first.
    fn destroy_rank(&self) -> u8 {
        9
    }

    async fn find(&self, cloud: &Cloud, address: &str, _props: &Props) -> Result<Option<String>> {
        first_at(cloud, address, |filters| ids(cloud, filters)).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let request = cloud.ec2.describe_vpcs().vpc_ids(id);
        let out = described("DescribeVpcs", request.send()).await?;
        let Some(vpc) = out.and_then(|o| o.vpcs().first().cloned()) else {
            return Ok(None);
        };
        // One attribute per call.
        let Some(enable_dns_hostnames) = dns(cloud, id, EnableDnsHostnames).await? else {
            return Ok(None);
        };
        let Some(enable_dns_support) = dns(cloud, id, EnableDnsSupport).await? else {
            return Ok(None);
        };
        let p = VpcProps {
            cidr_block: vpc.cidr_block().map(str::to_string),
            enable_dns_hostnames,
            enable_dns_support,
        };
        Ok(Some(observed(&p, vpc.tags(), id)))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: VpcProps = from_props(props)?;
        let request = cloud.ec2.create_vpc();
        let request = request.cidr_block(required(p.cidr_block, "cidr_block")?);
        let request = request.tag_specifications(tag_spec(props, ResourceType::Vpc)?);
        let out = sent("CreateVpc", request.send()).await?;
        let id = answered(out.vpc().and_then(|v| v.vpc_id()), "CreateVpc", "VpcId")?;
        // One attribute per call; support first, hostnames need it.
        set_dns(cloud, &id, EnableDnsSupport, p.enable_dns_support).await?;
        set_dns(cloud, &id, EnableDnsHostnames, p.enable_dns_hostnames).await?;
        Ok(id)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: VpcProps = from_props(props)?;
        let p = &p;
        update_tagged(cloud, id, props, changed, |attribute| async move {
            match attribute {
                "enable_dns_hostnames" => {
                    set_dns(cloud, id, EnableDnsHostnames, p.enable_dns_hostnames).await
                }
                "enable_dns_support" => {
                    set_dns(cloud, id, EnableDnsSupport, p.enable_dns_support).await
                }
                other => Err(not_in_place("UpdateVpc", other)),
            }
        })
        .await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        deleted("DeleteVpc", cloud.ec2.delete_vpc().vpc_id(id).send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        ids(cloud, stack_filters(cloud)).await
    }
}

/// The ids of the VPCs `filters` match.
async fn ids(cloud: &Cloud, filters: Vec<Filter>) -> Result<Vec<String>> {
    let request = cloud.ec2.describe_vpcs().set_filters(Some(filters));
    let items = request.into_paginator().items().send().try_collect();
    ids_of("DescribeVpcs", items, types::Vpc::vpc_id).await
}

/// The VPC's DNS `attribute`, `None` when the VPC is gone.
async fn dns(cloud: &Cloud, id: &str, attribute: VpcAttributeName) -> Result<Option<bool>> {
    let request = cloud.ec2.describe_vpc_attribute().vpc_id(id);
    let request = request.attribute(attribute.clone());
    let Some(out) = described("DescribeVpcAttribute", request.send()).await? else {
        return Ok(None);
    };
    let value = match attribute {
        EnableDnsHostnames => out.enable_dns_hostnames(),
        _ => out.enable_dns_support(),
    };
    Ok(Some(value.and_then(|v| v.value()).unwrap_or(false)))
}

async fn set_dns(cloud: &Cloud, id: &str, attribute: VpcAttributeName, value: bool) -> Result<()> {
    let value = AttributeBooleanValue::builder().value(value).build();
    let request = cloud.ec2.modify_vpc_attribute().vpc_id(id);
    let request = match attribute {
        EnableDnsHostnames => request.enable_dns_hostnames(value),
        _ => request.enable_dns_support(value),
    };
    sent_ok("ModifyVpcAttribute", request.send()).await
}
