//! One route in a route table, untagged: its id is `rtb-…|CIDR`, and it is
//! found again by its table and destination.

use async_trait::async_trait;
use serde_json::json;

use super::{gone_ok, not_updatable, opt_str, route_table};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::prop_str;
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props};

/// A route in an EC2 route table.
pub struct Route;

#[async_trait]
impl ResourceKind for Route {
    fn updatable(&self) -> &'static [&'static str] {
        &["gateway_id"]
    }

    fn tagged(&self) -> bool {
        false
    }

    // Before its route table and the gateway it leads to.
    fn destroy_rank(&self) -> u8 {
        6
    }

    async fn find(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<Option<String>> {
        let table_id = prop_str(props, "route_table_id")?;
        let destination = prop_str(props, "destination_cidr_block")?;
        let Some(table) = route_table::describe(cloud, table_id).await? else {
            return Ok(None);
        };
        let found = table
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some(destination));
        Ok(found.then(|| route_id(table_id, destination)))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let (table_id, destination) = split_route_id(id)?;
        let Some(table) = route_table::describe(cloud, table_id).await? else {
            return Ok(None);
        };
        let route = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some(destination));
        Ok(route.map(|route| Observed {
            props: Props::from([
                ("route_table_id".into(), json!(table_id)),
                ("destination_cidr_block".into(), json!(destination)),
                ("gateway_id".into(), opt_str(route.gateway_id())),
            ]),
            outputs: Props::new(),
        }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let table_id = prop_str(props, "route_table_id")?;
        let destination = prop_str(props, "destination_cidr_block")?;
        cloud
            .ec2
            .create_route()
            .route_table_id(table_id)
            .destination_cidr_block(destination)
            .gateway_id(prop_str(props, "gateway_id")?)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateRoute", e))?;
        Ok(route_id(table_id, destination))
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
                "gateway_id" => {
                    let (table_id, destination) = split_route_id(id)?;
                    cloud
                        .ec2
                        .replace_route()
                        .route_table_id(table_id)
                        .destination_cidr_block(destination)
                        .gateway_id(prop_str(props, "gateway_id")?)
                        .send()
                        .await
                        .map_err(|e| CloudError::from_sdk("ReplaceRoute", e))?;
                }
                _ => return Err(not_updatable(Kind::Route, attribute)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let (table_id, destination) = split_route_id(id)?;
        let deleted = cloud
            .ec2
            .delete_route()
            .route_table_id(table_id)
            .destination_cidr_block(destination)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteRoute", e));
        gone_ok(deleted)
    }
}

fn route_id(table_id: &str, destination: &str) -> String {
    format!("{table_id}|{destination}")
}

fn split_route_id(id: &str) -> Result<(&str, &str)> {
    id.split_once('|')
        .ok_or_else(|| CloudError::invalid("route", format!("`{id}` is not ROUTE_TABLE|CIDR")))
}
