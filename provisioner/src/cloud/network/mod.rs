//! The network family on EC2: VPC, subnet, internet gateway, route table,
//! route, route table association, security group and the broker instance,
//! one kind per file. Here: what they share (tag filters, tags, EC2's
//! not-found codes) and what other code asks of the network.

mod instance;
mod internet_gateway;
mod route;
mod route_table;
mod route_table_association;
mod security_group;
mod subnet;
mod vpc;

pub use instance::Instance;
pub use internet_gateway::InternetGateway;
pub use route::Route;
pub use route_table::RouteTable;
pub use route_table_association::RouteTableAssociation;
pub use security_group::SecurityGroup;
pub use subnet::Subnet;
pub use vpc::Vpc;

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use serde_json::{json, Value};

use super::support::{self, opt_str, prop_tags, replace_tags, tags_value};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props, ADDRESS_TAG, BROKER_SETUP_TAG, STACK_TAG};

/// Sorts an `ingress` list by (from_port, to_port, cidr,
/// source_security_group_id), the order `read` reports it in.
pub fn normalize(ingress: &Value) -> Value {
    let Value::Array(rules) = ingress else {
        return ingress.clone();
    };
    let mut rules = rules.clone();
    rules.sort_by_key(|r| {
        (
            r["from_port"].as_i64(),
            r["to_port"].as_i64(),
            r["cidr"].as_str().map(str::to_string),
            r["source_security_group_id"].as_str().map(str::to_string),
        )
    });
    Value::Array(rules)
}

/// The network interfaces still using security group `group_id`, as
/// `eni-… (description, status)`, to explain a DependencyViolation.
pub async fn blocking_interfaces(cloud: &Cloud, group_id: &str) -> Result<Vec<String>> {
    let interfaces = cloud
        .ec2
        .describe_network_interfaces()
        .filters(filter("group-id", [group_id]))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeNetworkInterfaces", e))?;
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

/// The error of an update asked to change what `kind` cannot change in place.
fn not_updatable(kind: Kind, attribute: &str) -> CloudError {
    CloudError::invalid(
        "update",
        format!("{kind} cannot change `{attribute}` in place"),
    )
}

/// Sets the desired tags on one EC2 resource and removes the others.
async fn retag(cloud: &Cloud, id: &str, props: &Props) -> Result<()> {
    let out = cloud
        .ec2
        .describe_tags()
        .filters(filter("resource-id", [id]))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeTags", e))?;
    let current: BTreeSet<&str> = out.iter().filter_map(|t| t.key()).collect();
    let tag = |desired: Vec<(String, String)>| async move {
        cloud
            .ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(ec2_tags(desired)))
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("CreateTags", e))
    };
    let untag = |stale: Vec<String>| async move {
        let stale = stale
            .into_iter()
            .map(|k| Tag::builder().key(k).build())
            .collect();
        cloud
            .ec2
            .delete_tags()
            .resources(id)
            .set_tags(Some(stale))
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteTags", e))
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

/// Tags as the `tags` property: without the broker's own setup report.
fn tags_of(tags: &[Tag]) -> Value {
    tags_value(
        tags.iter()
            .filter(|t| t.key() != Some(BROKER_SETUP_TAG))
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
    )
}

fn filter<const N: usize>(name: &str, values: [&str; N]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.map(str::to_string).to_vec()))
        .build()
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

/// `props` with the `id` output.
fn observed(props: Props, id: &str) -> Observed {
    Observed {
        props,
        outputs: Props::from([("id".into(), json!(id))]),
    }
}

fn required(value: Option<&str>, operation: &str, field: &str) -> Result<String> {
    value
        .map(str::to_string)
        .ok_or_else(|| CloudError::invalid(operation, format!("the answer has no {field}")))
}
