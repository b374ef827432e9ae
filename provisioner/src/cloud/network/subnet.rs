//! A subnet of the VPC, in one availability zone.

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, AttributeBooleanValue, Filter, ResourceType};
use serde::{Deserialize, Serialize};

use super::{
    answered, deleted, described, each_of, first_at, ids_filter, ids_of, observed, stack_filters,
    tag_spec, update_tagged,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{from_props, not_in_place, required, sent, sent_ok};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// A subnet's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetProps {
    /// The VPC it is in.
    pub vpc_id: Option<String>,
    /// Its IPv4 address range, within the VPC's.
    pub cidr_block: Option<String>,
    /// The availability zone it is in.
    pub availability_zone: Option<String>,
    /// Whether instances launched in it get a public IPv4 address.
    pub map_public_ip_on_launch: bool,
}

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
        first_at(cloud, address, |filters| ids(cloud, filters)).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let request = cloud.ec2.describe_subnets().subnet_ids(id);
        let out = described("DescribeSubnets", request.send()).await?;
        Ok(out.and_then(|o| Some(observe(o.subnets().first()?, id))))
    }

    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        let request = cloud.ec2.describe_subnets();
        let request = request.filters(ids_filter("subnet-id", ids));
        let items = request.into_paginator().items().send();
        let subnets: Vec<_> = sent("DescribeSubnets", items.try_collect()).await?;
        Ok(each_of(ids, &subnets, |s| s.subnet_id(), observe))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: SubnetProps = from_props(props)?;
        let request = cloud
            .ec2
            .create_subnet()
            .vpc_id(required(p.vpc_id, "vpc_id")?)
            .cidr_block(required(p.cidr_block, "cidr_block")?)
            .availability_zone(required(p.availability_zone, "availability_zone")?)
            .tag_specifications(tag_spec(props, ResourceType::Subnet)?);
        let out = sent("CreateSubnet", request.send()).await?;
        let id = out.subnet().and_then(|s| s.subnet_id());
        let id = answered(id, "CreateSubnet", "SubnetId")?;
        if p.map_public_ip_on_launch {
            set_map_public_ip(cloud, &id, true).await?;
        }
        Ok(id)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: SubnetProps = from_props(props)?;
        let p = &p;
        update_tagged(cloud, id, props, changed, |attribute| async move {
            match attribute {
                "map_public_ip_on_launch" => {
                    set_map_public_ip(cloud, id, p.map_public_ip_on_launch).await
                }
                other => Err(not_in_place("UpdateSubnet", other)),
            }
        })
        .await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        deleted(
            "DeleteSubnet",
            cloud.ec2.delete_subnet().subnet_id(id).send(),
        )
        .await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        ids(cloud, stack_filters(cloud)).await
    }
}

/// The ids of the subnets `filters` match.
async fn ids(cloud: &Cloud, filters: Vec<Filter>) -> Result<Vec<String>> {
    let request = cloud.ec2.describe_subnets().set_filters(Some(filters));
    let items = request.into_paginator().items().send().try_collect();
    ids_of("DescribeSubnets", items, types::Subnet::subnet_id).await
}

/// The subnet as `read` answers it.
fn observe(subnet: &types::Subnet, id: &str) -> Observed {
    let p = SubnetProps {
        vpc_id: subnet.vpc_id().map(str::to_string),
        cidr_block: subnet.cidr_block().map(str::to_string),
        availability_zone: subnet.availability_zone().map(str::to_string),
        map_public_ip_on_launch: subnet.map_public_ip_on_launch().unwrap_or(false),
    };
    observed(&p, subnet.tags(), id)
}

async fn set_map_public_ip(cloud: &Cloud, id: &str, value: bool) -> Result<()> {
    let request = cloud.ec2.modify_subnet_attribute().subnet_id(id);
    let value = AttributeBooleanValue::builder().value(value).build();
    let request = request.map_public_ip_on_launch(value);
    sent_ok("ModifySubnetAttribute", request.send()).await
}
