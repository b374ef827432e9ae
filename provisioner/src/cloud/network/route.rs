//! One route in a route table, untagged: its id is `rtb-…|CIDR`, and it is
//! found again by its table and destination.

use async_trait::async_trait;
use aws_sdk_ec2::types;
use serde::{Deserialize, Serialize};

use super::{deleted, route_table};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{from_props, not_in_place, required, sent_ok, to_props};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// A route's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteProps {
    /// The route table it is in.
    pub route_table_id: String,
    /// The addresses it routes.
    pub destination_cidr_block: String,
    /// The internet gateway it routes them through; `None` when it leads
    /// elsewhere.
    pub gateway_id: Option<String>,
}

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
        let p: RouteProps = from_props(props)?;
        let route = route(cloud, &p.route_table_id, &p.destination_cidr_block).await?;
        Ok(route.map(|_| route_id(&p.route_table_id, &p.destination_cidr_block)))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let (table_id, destination) = split_route_id(id)?;
        let route = route(cloud, table_id, destination).await?;
        Ok(route.map(|route| Observed {
            props: to_props(&RouteProps {
                route_table_id: table_id.to_string(),
                destination_cidr_block: destination.to_string(),
                gateway_id: route.gateway_id().map(str::to_string),
            }),
            outputs: Props::new(),
        }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: RouteProps = from_props(props)?;
        let request = cloud.ec2.create_route().route_table_id(&p.route_table_id);
        let request = request.destination_cidr_block(&p.destination_cidr_block);
        let request = request.gateway_id(required(p.gateway_id, "gateway_id")?);
        sent_ok("CreateRoute", request.send()).await?;
        Ok(route_id(&p.route_table_id, &p.destination_cidr_block))
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: RouteProps = from_props(props)?;
        let (table_id, destination) = split_route_id(id)?;
        for attribute in changed {
            match attribute.as_str() {
                "gateway_id" => {
                    let request = cloud.ec2.replace_route().route_table_id(table_id);
                    let request = request.destination_cidr_block(destination);
                    let request = request.gateway_id(required(p.gateway_id.clone(), attribute)?);
                    sent_ok("ReplaceRoute", request.send()).await?;
                }
                other => return Err(not_in_place("UpdateRoute", other)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let (table_id, destination) = split_route_id(id)?;
        let request = cloud.ec2.delete_route().route_table_id(table_id);
        let request = request.destination_cidr_block(destination);
        deleted("DeleteRoute", request.send()).await
    }
}

/// The route to `destination` in table `table_id`, `None` when there is
/// none (or no such table).
async fn route(cloud: &Cloud, table_id: &str, destination: &str) -> Result<Option<types::Route>> {
    let table = route_table::describe(cloud, table_id).await?;
    let mut routes = table.into_iter().flat_map(|t| t.routes.unwrap_or_default());
    Ok(routes.find(|r| r.destination_cidr_block() == Some(destination)))
}

fn route_id(table_id: &str, destination: &str) -> String {
    format!("{table_id}|{destination}")
}

fn split_route_id(id: &str) -> Result<(&str, &str)> {
    id.split_once('|')
        .ok_or_else(|| CloudError::invalid("route", format!("`{id}` is not ROUTE_TABLE|CIDR")))
}
