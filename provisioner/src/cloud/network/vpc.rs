//! The VPC, with its two DNS attributes.

use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use serde_json::json;

use super::{
    absent, address_filters, gone_ok, not_updatable, observed, opt_str, required, retag,
    stack_filters, tag_spec, tags_of,
};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::{prop_bool, prop_str};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props};

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
        let out = cloud
            .ec2
            .describe_vpcs()
            .set_filters(Some(address_filters(cloud, address)))
            .send()
            .await;
        let out = out.map_err(|e| CloudError::from_sdk("DescribeVpcs", e))?;
        Ok(out
            .vpcs()
            .iter()
            .find_map(|v| v.vpc_id())
            .map(str::to_string))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let out = cloud.ec2.describe_vpcs().vpc_ids(id).send().await;
        let Some(out) = absent(out.map_err(|e| CloudError::from_sdk("DescribeVpcs", e)))? else {
            return Ok(None);
        };
        let Some(vpc) = out.vpcs().first() else {
            return Ok(None);
        };
        let mut props = Props::from([
            ("cidr_block".into(), opt_str(vpc.cidr_block())),
            ("tags".into(), tags_of(vpc.tags())),
        ]);
        for (name, attribute) in [
            ("enable_dns_hostnames", VpcAttributeName::EnableDnsHostnames),
            ("enable_dns_support", VpcAttributeName::EnableDnsSupport),
        ] {
            let out = cloud
                .ec2
                .describe_vpc_attribute()
                .vpc_id(id)
                .attribute(attribute)
                .send()
                .await;
            let out = out.map_err(|e| CloudError::from_sdk("DescribeVpcAttribute", e));
            let Some(out) = absent(out)? else {
                return Ok(None);
            };
            let value = match name {
                "enable_dns_hostnames" => out.enable_dns_hostnames(),
                _ => out.enable_dns_support(),
            };
            props.insert(
                name.into(),
                json!(value.and_then(|v| v.value()).unwrap_or(false)),
            );
        }
        Ok(Some(observed(props, id)))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let out = cloud
            .ec2
            .create_vpc()
            .cidr_block(prop_str(props, "cidr_block")?)
            .tag_specifications(tag_spec(props, ResourceType::Vpc)?)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateVpc", e))?;
        let id = required(out.vpc().and_then(|v| v.vpc_id()), "CreateVpc", "VpcId")?;
        // One attribute per call; support first, hostnames need it.
        set_dns(
            cloud,
            &id,
            "enable_dns_support",
            prop_bool(props, "enable_dns_support")?,
        )
        .await?;
        let hostnames = prop_bool(props, "enable_dns_hostnames")?;
        set_dns(cloud, &id, "enable_dns_hostnames", hostnames).await?;
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
                "enable_dns_hostnames" | "enable_dns_support" => {
                    set_dns(cloud, id, attribute, prop_bool(props, attribute)?).await?;
                }
                _ => return Err(not_updatable(Kind::Vpc, attribute)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .ec2
            .delete_vpc()
            .vpc_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteVpc", e));
        gone_ok(deleted)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let vpcs = cloud
            .ec2
            .describe_vpcs()
            .set_filters(Some(stack_filters(cloud)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeVpcs", e))?;
        Ok(vpcs
            .iter()
            .filter_map(|v| v.vpc_id())
            .map(str::to_string)
            .collect())
    }
}

async fn set_dns(cloud: &Cloud, id: &str, attribute: &str, value: bool) -> Result<()> {
    let value = AttributeBooleanValue::builder().value(value).build();
    let request = cloud.ec2.modify_vpc_attribute().vpc_id(id);
    let request = match attribute {
        "enable_dns_hostnames" => request.enable_dns_hostnames(value),
        _ => request.enable_dns_support(value),
    };
    request
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ModifyVpcAttribute", e))?;
    Ok(())
}
