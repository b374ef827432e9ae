//! A subnet's association with a route table, untagged: found again by its
//! table and subnet.

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, RouteTableAssociationStateCode};

use super::{filter, gone_ok, not_updatable, observed, opt_str, required, route_table};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::prop_str;
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props};

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
        let table_id = prop_str(props, "route_table_id")?;
        let subnet_id = prop_str(props, "subnet_id")?;
        let Some(table) = route_table::describe(cloud, table_id).await? else {
            return Ok(None);
        };
        let mut associations = table.associations().iter().filter(|a| live(a));
        Ok(associations
            .find(|a| a.subnet_id() == Some(subnet_id))
            .and_then(|a| a.route_table_association_id())
            .map(str::to_string))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let out = cloud
            .ec2
            .describe_route_tables()
            .filters(filter("association.route-table-association-id", [id]))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeRouteTables", e))?;
        let association = out
            .route_tables()
            .iter()
            .flat_map(|t| t.associations())
            .filter(|a| live(a))
            .find(|a| a.route_table_association_id() == Some(id));
        Ok(association.map(|a| {
            let props = Props::from([
                ("route_table_id".into(), opt_str(a.route_table_id())),
                ("subnet_id".into(), opt_str(a.subnet_id())),
            ]);
            observed(props, id)
        }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let out = cloud
            .ec2
            .associate_route_table()
            .route_table_id(prop_str(props, "route_table_id")?)
            .subnet_id(prop_str(props, "subnet_id")?)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("AssociateRouteTable", e))?;
        required(out.association_id(), "AssociateRouteTable", "AssociationId")
    }

    async fn update(
        &self,
        _cloud: &Cloud,
        _id: &str,
        _props: &Props,
        changed: &[String],
    ) -> Result<()> {
        match changed.first() {
            Some(attribute) => Err(not_updatable(Kind::RouteTableAssociation, attribute)),
            None => Ok(()),
        }
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .ec2
            .disassociate_route_table()
            .association_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DisassociateRouteTable", e));
        gone_ok(deleted)
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
