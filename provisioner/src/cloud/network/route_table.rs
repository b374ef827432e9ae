//! A route table of the VPC; its routes and subnet associations are kinds
//! of their own.

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, Filter, ResourceType};
use serde::{Deserialize, Serialize};

use super::{
    answered, deleted, described, first_at, ids_of, observed, retag, stack_filters, tag_spec,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{from_props, only_tags, required, sent};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// A route table's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteTableProps {
    /// The VPC it routes for.
    pub vpc_id: Option<String>,
}

/// An EC2 route table.
pub struct RouteTable;

#[async_trait]
impl ResourceKind for RouteTable {
    fn updatable(&self) -> &'static [&'static str] {
        &["tags"]
    }

    // After its routes and associations; before the VPC.
    fn destroy_rank(&self) -> u8 {
        7
    }

    async fn find(&self, cloud: &Cloud, address: &str, _props: &Props) -> Result<Option<String>> {
        first_at(cloud, address, |filters| ids(cloud, filters)).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(table) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let vpc_id = table.vpc_id().map(str::to_string);
        Ok(Some(observed(
            &RouteTableProps { vpc_id },
            table.tags(),
            id,
        )))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: RouteTableProps = from_props(props)?;
        let request = cloud.ec2.create_route_table();
        let request = request.vpc_id(required(p.vpc_id, "vpc_id")?);
        let request = request.tag_specifications(tag_spec(props, ResourceType::RouteTable)?);
        let out = sent("CreateRouteTable", request.send()).await?;
        let id = out.route_table().and_then(|t| t.route_table_id());
        answered(id, "CreateRouteTable", "RouteTableId")
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        only_tags("UpdateRouteTable", changed, || retag(cloud, id, props)).await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.ec2.delete_route_table().route_table_id(id);
        deleted("DeleteRouteTable", request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        ids(cloud, stack_filters(cloud)).await
    }
}

/// The ids of the route tables `filters` match.
async fn ids(cloud: &Cloud, filters: Vec<Filter>) -> Result<Vec<String>> {
    let request = cloud.ec2.describe_route_tables().set_filters(Some(filters));
    let items = request.into_paginator().items().send().try_collect();
    ids_of(
        "DescribeRouteTables",
        items,
        types::RouteTable::route_table_id,
    )
    .await
}

/// The route table `id` with its routes and associations, `None` when it
/// is gone.
pub(super) async fn describe(cloud: &Cloud, id: &str) -> Result<Option<types::RouteTable>> {
    let request = cloud.ec2.describe_route_tables().route_table_ids(id);
    let out = described("DescribeRouteTables", request.send()).await?;
    Ok(out.and_then(|o| o.route_tables().first().cloned()))
}
