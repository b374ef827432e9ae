//! The network family on EC2: VPC, subnet, internet gateway, route table,
//! route, route table association, security group and the broker instance,
//! one kind per file. Here: what they share (finding and listing by the
//! stack's tags, EC2's not-found codes, tags, the answer of `read`) and what
//! other code asks of the network.

mod instance;
mod internet_gateway;
mod route;
mod route_table;
mod route_table_association;
mod security_group;
mod subnet;
mod vpc;

pub use instance::{Instance, InstanceProps};
pub use internet_gateway::{InternetGateway, InternetGatewayProps};
pub use route::{Route, RouteProps};
pub use route_table::{RouteTable, RouteTableProps};
pub use route_table_association::{RouteTableAssociation, RouteTableAssociationProps};
pub use security_group::{IngressRule, SecurityGroup, SecurityGroupProps};
pub use subnet::{Subnet, SubnetProps};
pub use vpc::{Vpc, VpcProps};

use std::future::Future;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;
use serde_json::{json, Value};

use super::support::{self, prop_tags, replace_tags, sent, sent_ok, tags_value, to_props};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::{Props, ADDRESS_TAG, BROKER_SETUP_TAG, STACK_TAG};

/// Sorts an `ingress` list by (from_port, to_port, cidr,
/// source_security_group_id), the order `read` reports it in; a value that
/// is not a list of rules stays as it is.
pub fn normalize(ingress: &Value) -> Value {
    let Ok(rules) = serde_json::from_value(ingress.clone()) else {
        return ingress.clone();
    };
    serde_json::to_value(IngressRule::sorted(rules)).unwrap_or_else(|_| ingress.clone())
}

/// The network interfaces still using security group `group_id`, as
/// `eni-… (description, status)`, to explain a DependencyViolation.
pub async fn blocking_interfaces(cloud: &Cloud, group_id: &str) -> Result<Vec<String>> {
    let in_group = filter("group-id", [group_id]);
    let request = cloud.ec2.describe_network_interfaces().filters(in_group);
    let items = request.into_paginator().items().send().try_collect();
    let interfaces = sent("DescribeNetworkInterfaces", items).await?;
    Ok(interfaces
        .iter()
        .map(|i| {
            format!(
                "{} ({}, {})",
                i.network_interface_id().unwrap_or("eni-?"),
                i.description().unwrap_or_default(),
                i.status().map(|s| s.as_str()).unwrap_or("unknown"),
            )
        })
        .collect())
}

/// The instance's state name and what its setup reported on the
/// [`BROKER_SETUP_TAG`] (`None` before it reports), `None` when it is gone.
pub async fn instance_status(cloud: &Cloud, id: &str) -> Result<Option<(String, Option<String>)>> {
    let Some(instance) = instance::describe(cloud, id).await? else {
        return Ok(None);
    };
    let state = instance
        .state()
        .and_then(|s| s.name())
        .map_or("unknown", |s| s.as_str());
    Ok(Some((state.to_string(), instance::setup_report(&instance))))
}

/// The instance's state name (`pending`, `running`, ...), `None` when it
/// does not exist.
pub async fn instance_state(cloud: &Cloud, id: &str) -> Result<Option<String>> {
    let instance = instance::describe(cloud, id).await?;
    Ok(instance
        .as_ref()
        .and_then(|i| i.state())
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string()))
}

/// The one code [`absent`] and [`gone_ok`] give every EC2 not-found answer.
const NOT_FOUND: &str = ".NotFound";

/// `result` with EC2's not-found codes, one per kind of thing and all
/// ending in `.NotFound` (`InvalidVpcID.NotFound`, `InvalidGroup.NotFound`,
/// ...), as [`NOT_FOUND`], the code the support helpers are given.
fn not_found_as_one<T>(result: Result<T>) -> Result<T> {
    result.map_err(|e| {
        if e.code.ends_with(NOT_FOUND) {
            CloudError {
                code: NOT_FOUND.into(),
                ..e
            }
        } else {
            e
        }
    })
}

/// `Ok(None)` for a not-found answer.
fn absent<T>(result: Result<T>) -> Result<Option<T>> {
    support::absent(not_found_as_one(result), &[NOT_FOUND])
}

/// `Ok(())` when a delete failed because the resource is already gone.
fn gone_ok(result: Result<()>) -> Result<()> {
    support::gone_ok(not_found_as_one(result), &[NOT_FOUND])
}

/// The answer of a describe call by id (`operation`), `None` when EC2 does
/// not know the id.
async fn described<T, E>(
    operation: &str,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    absent(sent(operation, call).await)
}

/// A delete call (`operation`): `Ok` also when EC2 does not know the id.
async fn deleted<T, E>(
    operation: &str,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<()>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    gone_ok(sent_ok(operation, call).await)
}

/// `find` of a tagged kind: the first id that `ids` (its describe call by
/// filters) answers for the stack's tags at `address`.
async fn first_at<Fut>(
    cloud: &Cloud,
    address: &str,
    ids: impl FnOnce(Vec<Filter>) -> Fut,
) -> Result<Option<String>>
where
    Fut: Future<Output = Result<Vec<String>>>,
{
    let ids = ids(address_filters(cloud, address)).await?;
    Ok(ids.into_iter().next())
}

/// The ids of what a tagged kind's describe call by filters answered:
/// `items`, every page of `operation`, each one's id by `id_of`.
async fn ids_of<T, E>(
    operation: &str,
    items: impl Future<Output = std::result::Result<Vec<T>, E>>,
    id_of: impl Fn(&T) -> Option<&str>,
) -> Result<Vec<String>>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    let items = sent(operation, items).await?;
    Ok(items.iter().filter_map(id_of).map(str::to_string).collect())
}

/// `update` of a tagged kind: [`retag`] when its tags changed, `change`
/// (the kind's own) for each other attribute that changed.
async fn update_tagged<'a, Fut>(
    cloud: &Cloud,
    id: &str,
    props: &Props,
    changed: &'a [String],
    mut change: impl FnMut(&'a str) -> Fut,
) -> Result<()>
where
    Fut: Future<Output = Result<()>>,
{
    for attribute in changed {
        match attribute.as_str() {
            "tags" => retag(cloud, id, props).await?,
            other => change(other).await?,
        }
    }
    Ok(())
}

/// Sets the desired tags on one EC2 resource and removes the others.
async fn retag(cloud: &Cloud, id: &str, props: &Props) -> Result<()> {
    let by_id = filter("resource-id", [id]);
    let items = cloud.ec2.describe_tags().filters(by_id).into_paginator();
    let current = sent("DescribeTags", items.items().send().try_collect()).await?;
    let current = current.iter().filter_map(|t| t.key());
    let tag = |desired: Vec<(String, String)>| {
        let request = cloud.ec2.create_tags().resources(id);
        let request = request.set_tags(Some(ec2_tags(desired)));
        sent_ok("CreateTags", request.send())
    };
    let untag = |stale: Vec<String>| {
        let stale = stale.into_iter().map(|k| Tag::builder().key(k).build());
        let request = cloud.ec2.delete_tags().resources(id);
        sent_ok("DeleteTags", request.set_tags(Some(stale.collect())).send())
    };
    replace_tags(props, current, tag, untag).await
}

fn ec2_tags(tags: Vec<(String, String)>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The `tags` of `props` on the `resource` a create call makes.
fn tag_spec(props: &Props, resource: ResourceType) -> Result<TagSpecification> {
    Ok(TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(ec2_tags(prop_tags(props)?)))
        .build())
}

fn filter<const N: usize>(name: &str, values: [&str; N]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.map(str::to_string).to_vec()))
        .build()
}

/// The resources whose `id_filter` (`subnet-id`, `group-id`, ...) is one of
/// `ids`: a filter, unlike a list of ids, leaves out the ones that are gone
/// instead of failing the whole call.
fn ids_filter(id_filter: &str, ids: &[String]) -> Filter {
    Filter::builder()
        .name(id_filter)
        .set_values(Some(ids.to_vec()))
        .build()
}

/// What `read_each` answers: each of `ids` looked up among the `found`
/// resources (by `id_of`), read as `read` reads one.
fn each_of<T>(
    ids: &[String],
    found: &[T],
    id_of: impl Fn(&T) -> Option<&str>,
    observe: impl Fn(&T, &str) -> Observed,
) -> Vec<Option<Observed>> {
    ids.iter()
        .map(|id| {
            let one = found.iter().find(|item| id_of(item) == Some(id.as_str()));
            one.map(|item| observe(item, id))
        })
        .collect()
}

/// Everything carrying the stack's tag.
fn stack_filters(cloud: &Cloud) -> Vec<Filter> {
    vec![filter(&format!("tag:{STACK_TAG}"), [cloud.stack.as_str()])]
}

/// The stack's resource at `address`.
fn address_filters(cloud: &Cloud, address: &str) -> Vec<Filter> {
    let mut filters = stack_filters(cloud);
    filters.push(filter(&format!("tag:{ADDRESS_TAG}"), [address]));
    filters
}

/// The `id` output.
fn id_output(id: &str) -> Props {
    Props::from([("id".into(), json!(id))])
}

/// What `read` answers for a tagged resource: its `typed` properties, its
/// `tags` (without the broker's own setup report), and the `id` output.
fn observed<T: Serialize>(typed: &T, tags: &[Tag], id: &str) -> Observed {
    let mut props = to_props(typed);
    let tags = tags.iter().filter(|t| t.key() != Some(BROKER_SETUP_TAG));
    let tags = tags.filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())));
    props.insert("tags".into(), tags_value(tags));
    Observed {
        props,
        outputs: id_output(id),
    }
}

/// A field that `operation`'s answer always has.
fn answered(value: Option<&str>, operation: &str, field: &str) -> Result<String> {
    value
        .map(str::to_string)
        .ok_or_else(|| CloudError::invalid(operation, format!("the answer has no {field}")))
}
