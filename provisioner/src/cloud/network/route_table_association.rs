//! A subnet's association with a route table, untagged: found again by its
//! table and subnet.

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, RouteTableAssociationStateCode};
use serde::{Deserialize, Serialize};

use super::{answered, deleted, filter, id_output, route_table};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{from_props, not_in_place, required, sent, to_props};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// A route table association's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteTableAssociationProps {
    /// The route table the subnet uses.
    pub route_table_id: Option<String>,
    /// The subnet.
    pub subnet_id: Option<String>,
}

/// A subnet's association with an EC2 route table.
pub struct RouteTableAssociation;

#[async_trait]
impl ResourceKind for RouteTableAssociation {
    fn updatable(&self) -> &'static [&'static str] {
        &[]
    }

    fn tagged(&self) -> bool {
        false
    }

    // Before its route table and its subnet.
    fn destroy_rank(&self) -> u8 {
        6
    }

    async fn find(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<Option<String>> {
        let p: RouteTableAssociationProps = from_props(props)?;
        let table_id = required(p.route_table_id, "route_table_id")?;
        let subnet_id = required(p.subnet_id, "subnet_id")?;
        let Some(table) = route_table::describe(cloud, &table_id).await? else {
            return Ok(None);
        };
        let mut associations = table.associations().iter().filter(|a| live(a));
        Ok(associations
            .find(|a| a.subnet_id() == Some(subnet_id.as_str()))
            .and_then(|a| a.route_table_association_id())
            .map(str::to_string))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let request = cloud.ec2.describe_route_tables();
        let request = request.filters(filter("association.route-table-association-id", [id]));
        let out = sent("DescribeRouteTables", request.send()).await?;
        let association = out
            .route_tables()
            .iter()
            .flat_map(|t| t.associations())
            .filter(|a| live(a))
            .find(|a| a.route_table_association_id() == Some(id));
        Ok(association.map(|a| Observed {
            props: to_props(&RouteTableAssociationProps {
                route_table_id: a.route_table_id().map(str::to_string),
                subnet_id: a.subnet_id().map(str::to_string),
            }),
            outputs: id_output(id),
        }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: RouteTableAssociationProps = from_props(props)?;
        let request = cloud.ec2.associate_route_table();
        let request = request.route_table_id(required(p.route_table_id, "route_table_id")?);
        let request = request.subnet_id(required(p.subnet_id, "subnet_id")?);
        let out = sent("AssociateRouteTable", request.send()).await?;
        answered(out.association_id(), "AssociateRouteTable", "AssociationId")
    }

    async fn update(&self, _cloud: &Cloud, change: Update<'_>) -> Result<()> {
        match change.changed.first() {
            Some(attribute) => Err(not_in_place("UpdateRouteTableAssociation", attribute)),
            None => Ok(()),
        }
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.ec2.disassociate_route_table().association_id(id);
        deleted("DisassociateRouteTable", request.send()).await
    }
}

/// Whether the association holds (not disassociated or on its way).
fn live(association: &types::RouteTableAssociation) -> bool {
    let state = association.association_state().and_then(|s| s.state());
    !matches!(
        state,
        Some(
            RouteTableAssociationStateCode::Disassociated
                | RouteTableAssociationStateCode::Disassociating
        )
    )
}
