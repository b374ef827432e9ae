//! A subnet of the VPC, in one availability zone.

use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use serde_json::json;

use super::{
    absent, address_filters, gone_ok, not_updatable, observed, opt_str, required, retag,
    stack_filters, tag_spec, tags_of,
};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::{prop_bool, prop_str};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props};

/// An EC2 subnet.
pub struct Subnet;

#[async_trait]
impl ResourceKind for Subnet {
    fn updatable(&self) -> &'static [&'static str] {
        &["map_public_ip_on_launch", "tags"]
    }

    // After everything placed in it (instances, interfaces, its route table
    // association); before its VPC.
    fn destroy_rank(&self) -> u8 {
        8
    }

    async fn find(&self, cloud: &Cloud, address: &str, _props: &Props) -> Result<Option<String>> {
        let out = cloud
            .ec2
            .describe_subnets()
            .set_filters(Some(address_filters(cloud, address)))
            .send()
            .await;
        let out = out.map_err(|e| CloudError::from_sdk("DescribeSubnets", e))?;
        Ok(out
            .subnets()
            .iter()
            .find_map(|s| s.subnet_id())
            .map(str::to_string))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let out = cloud.ec2.describe_subnets().subnet_ids(id).send().await;
        let Some(out) = absent(out.map_err(|e| CloudError::from_sdk("DescribeSubnets", e)))? else {
            return Ok(None);
        };
        let Some(subnet) = out.subnets().first() else {
            return Ok(None);
        };
        let props = Props::from([
            ("vpc_id".into(), opt_str(subnet.vpc_id())),
            ("cidr_block".into(), opt_str(subnet.cidr_block())),
            (
                "availability_zone".into(),
                opt_str(subnet.availability_zone()),
            ),
            (
                "map_public_ip_on_launch".into(),
                json!(subnet.map_public_ip_on_launch().unwrap_or(false)),
            ),
            ("tags".into(), tags_of(subnet.tags())),
        ]);
        Ok(Some(observed(props, id)))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let out = cloud
            .ec2
            .create_subnet()
            .vpc_id(prop_str(props, "vpc_id")?)
            .cidr_block(prop_str(props, "cidr_block")?)
            .availability_zone(prop_str(props, "availability_zone")?)
            .tag_specifications(tag_spec(props, ResourceType::Subnet)?)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateSubnet", e))?;
        let id = out.subnet().and_then(|s| s.subnet_id());
        let id = required(id, "CreateSubnet", "SubnetId")?;
        if prop_bool(props, "map_public_ip_on_launch")? {
            set_map_public_ip(cloud, &id, true).await?;
        }
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
                "map_public_ip_on_launch" => {
                    set_map_public_ip(cloud, id, prop_bool(props, attribute)?).await?;
                }
                _ => return Err(not_updatable(Kind::Subnet, attribute)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .ec2
            .delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteSubnet", e));
        gone_ok(deleted)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let subnets = cloud
            .ec2
            .describe_subnets()
            .set_filters(Some(stack_filters(cloud)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeSubnets", e))?;
        Ok(subnets
            .iter()
            .filter_map(|s| s.subnet_id())
            .map(str::to_string)
            .collect())
    }
}

async fn set_map_public_ip(cloud: &Cloud, id: &str, value: bool) -> Result<()> {
    cloud
        .ec2
        .modify_subnet_attribute()
        .subnet_id(id)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(value).build())
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ModifySubnetAttribute", e))?;
    Ok(())
}
