//! A route table of the VPC; its routes and subnet associations are kinds
//! of their own.

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, ResourceType};

use super::{
    absent, address_filters, gone_ok, not_updatable, observed, opt_str, required, retag,
    stack_filters, tag_spec, tags_of,
};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::prop_str;
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props};

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
        let out = cloud
            .ec2
            .describe_route_tables()
            .set_filters(Some(address_filters(cloud, address)))
            .send()
            .await;
        let out = out.map_err(|e| CloudError::from_sdk("DescribeRouteTables", e))?;
        Ok(out
            .route_tables()
            .iter()
            .find_map(|t| t.route_table_id())
            .map(str::to_string))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(table) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let props = Props::from([
            ("vpc_id".into(), opt_str(table.vpc_id())),
            ("tags".into(), tags_of(table.tags())),
        ]);
        Ok(Some(observed(props, id)))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let out = cloud
            .ec2
            .create_route_table()
            .vpc_id(prop_str(props, "vpc_id")?)
            .tag_specifications(tag_spec(props, ResourceType::RouteTable)?)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateRouteTable", e))?;
        let id = out.route_table().and_then(|t| t.route_table_id());
        required(id, "CreateRouteTable", "RouteTableId")
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
                _ => return Err(not_updatable(Kind::RouteTable, attribute)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .ec2
            .delete_route_table()
            .route_table_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteRouteTable", e));
        gone_ok(deleted)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let tables = cloud
            .ec2
            .describe_route_tables()
            .set_filters(Some(stack_filters(cloud)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeRouteTables", e))?;
        Ok(tables
            .iter()
            .filter_map(|t| t.route_table_id())
            .map(str::to_string)
            .collect())
    }
}

/// The route table `id` with its routes and associations, `None` when it
/// is gone.
pub(super) async fn describe(cloud: &Cloud, id: &str) -> Result<Option<types::RouteTable>> {
    let out = cloud
        .ec2
        .describe_route_tables()
        .route_table_ids(id)
        .send()
        .await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeRouteTables", e));
    Ok(absent(out)?.and_then(|o| o.route_tables().first().cloned()))
}
