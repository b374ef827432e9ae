//! The network family on EC2: VPC, subnet, internet gateway, route table,
//! route, route table association, security group and the broker instance.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::{
    AttachmentStatus, AttributeBooleanValue, BlockDeviceMapping, EbsBlockDevice, Filter,
    HttpTokensState, IamInstanceProfileSpecification, Instance, InstanceAttributeName,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    IpPermission, IpRange, ResourceType, RouteTable, RouteTableAssociationStateCode, SecurityGroup,
    Tag, TagSpecification, UserIdGroupPair, VolumeType, VpcAttributeName,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::support::{prop_bool, prop_i64, prop_str, prop_strings, prop_tags, stale_tag_keys, tags_value};
use super::{Cloud, CloudError, Observed, Result};
use crate::blueprint::instance_architecture;
use crate::image::Architecture;
use crate::model::{Kind, Props, ADDRESS_TAG, BROKER_SETUP_TAG, STACK_TAG};

/// SSM parameter naming the current Amazon Linux 2023 AMI for `architecture`.
fn ami_parameter(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Amd64 => {
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
        }
        Architecture::Arm64 => {
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
        }
    }
}
/// The broker's root device.
const ROOT_DEVICE: &str = "/dev/xvda";

/// See the module contract in [`super`].
pub async fn find(
    cloud: &Cloud,
    kind: Kind,
    address: &str,
    props: &Props,
) -> Result<Option<String>> {
    let ec2 = &cloud.ec2;
    let filters = address_filters(cloud, address);
    Ok(match kind {
        Kind::Vpc => {
            let out = ec2.describe_vpcs().set_filters(Some(filters)).send().await;
            let out = out.map_err(|e| CloudError::from_sdk("DescribeVpcs", e))?;
            out.vpcs()
                .iter()
                .find_map(|v| v.vpc_id())
                .map(str::to_string)
        }
        Kind::Subnet => {
            let out = ec2
                .describe_subnets()
                .set_filters(Some(filters))
                .send()
                .await;
            let out = out.map_err(|e| CloudError::from_sdk("DescribeSubnets", e))?;
            out.subnets()
                .iter()
                .find_map(|s| s.subnet_id())
                .map(str::to_string)
        }
        Kind::InternetGateway => {
            let out = ec2
                .describe_internet_gateways()
                .set_filters(Some(filters))
                .send()
                .await;
            let out = out.map_err(|e| CloudError::from_sdk("DescribeInternetGateways", e))?;
            let mut ids = out
                .internet_gateways()
                .iter()
                .filter_map(|g| g.internet_gateway_id());
            ids.next().map(str::to_string)
        }
        Kind::RouteTable => {
            let out = ec2
                .describe_route_tables()
                .set_filters(Some(filters))
                .send()
                .await;
            let out = out.map_err(|e| CloudError::from_sdk("DescribeRouteTables", e))?;
            out.route_tables()
                .iter()
                .find_map(|t| t.route_table_id())
                .map(str::to_string)
        }
        Kind::SecurityGroup => {
            let out = ec2
                .describe_security_groups()
                .set_filters(Some(filters))
                .send()
                .await;
            let out = out.map_err(|e| CloudError::from_sdk("DescribeSecurityGroups", e))?;
            out.security_groups()
                .iter()
                .find_map(|g| g.group_id())
                .map(str::to_string)
        }
        Kind::Instance => {
            let live = filter(
                "instance-state-name",
                ["pending", "running", "stopping", "stopped"],
            );
            let out = ec2
                .describe_instances()
                .set_filters(Some(filters))
                .filters(live)
                .send()
                .await;
            let out = out.map_err(|e| CloudError::from_sdk("DescribeInstances", e))?;
            let mut ids = out.reservations().iter().flat_map(|r| r.instances());
            ids.find_map(|i| i.instance_id()).map(str::to_string)
        }
        Kind::Route => {
            let table_id = prop_str(props, "route_table_id")?;
            let destination = prop_str(props, "destination_cidr_block")?;
            let Some(table) = route_table(cloud, table_id).await? else {
                return Ok(None);
            };
            let found = table
                .routes()
                .iter()
                .any(|r| r.destination_cidr_block() == Some(destination));
            found.then(|| route_id(table_id, destination))
        }
        Kind::RouteTableAssociation => {
            let table_id = prop_str(props, "route_table_id")?;
            let subnet_id = prop_str(props, "subnet_id")?;
            let Some(table) = route_table(cloud, table_id).await? else {
                return Ok(None);
            };
            let mut live = table.associations().iter().filter(|a| association_live(a));
            live.find(|a| a.subnet_id() == Some(subnet_id))
                .and_then(|a| a.route_table_association_id())
                .map(str::to_string)
        }
        _ => return Err(not_ours("find", kind)),
    })
}

/// See the module contract in [`super`].
pub async fn read(cloud: &Cloud, kind: Kind, id: &str) -> Result<Option<Observed>> {
    match kind {
        Kind::Vpc => read_vpc(cloud, id).await,
        Kind::Subnet => read_subnet(cloud, id).await,
        Kind::InternetGateway => read_internet_gateway(cloud, id).await,
        Kind::RouteTable => {
            let Some(table) = route_table(cloud, id).await? else {
                return Ok(None);
            };
            let props = Props::from([
                ("vpc_id".into(), opt_str(table.vpc_id())),
                ("tags".into(), tags_of(table.tags())),
            ]);
            Ok(Some(observed(props, id)))
        }
        Kind::Route => read_route(cloud, id).await,
        Kind::RouteTableAssociation => read_association(cloud, id).await,
        Kind::SecurityGroup => {
            let Some(group) = security_group(cloud, id).await? else {
                return Ok(None);
            };
            let ingress = serde_json::to_value(rules_of(&group))
                .map_err(|e| CloudError::invalid("DescribeSecurityGroups", e.to_string()))?;
            let props = Props::from([
                ("name".into(), opt_str(group.group_name())),
                ("description".into(), opt_str(group.description())),
                ("vpc_id".into(), opt_str(group.vpc_id())),
                ("ingress".into(), normalize(&ingress)),
                ("tags".into(), tags_of(group.tags())),
            ]);
            Ok(Some(observed(props, id)))
        }
        Kind::Instance => read_instance(cloud, id).await,
        _ => Err(not_ours("read", kind)),
    }
}

/// See the module contract in [`super`].
pub async fn create(cloud: &Cloud, kind: Kind, _address: &str, props: &Props) -> Result<String> {
    let ec2 = &cloud.ec2;
    match kind {
        Kind::Vpc => {
            let out = ec2
                .create_vpc()
                .cidr_block(prop_str(props, "cidr_block")?)
                .tag_specifications(tag_spec(props, ResourceType::Vpc)?)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateVpc", e))?;
            let id = required(out.vpc().and_then(|v| v.vpc_id()), "CreateVpc", "VpcId")?;
            // One attribute per call; support first, hostnames need it.
            set_vpc_dns(
                cloud,
                &id,
                "enable_dns_support",
                prop_bool(props, "enable_dns_support")?,
            )
            .await?;
            let hostnames = prop_bool(props, "enable_dns_hostnames")?;
            set_vpc_dns(cloud, &id, "enable_dns_hostnames", hostnames).await?;
            Ok(id)
        }
        Kind::Subnet => {
            let out = ec2
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
        Kind::InternetGateway => {
            let out = ec2
                .create_internet_gateway()
                .tag_specifications(tag_spec(props, ResourceType::InternetGateway)?)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateInternetGateway", e))?;
            let id = out.internet_gateway().and_then(|g| g.internet_gateway_id());
            let id = required(id, "CreateInternetGateway", "InternetGatewayId")?;
            attach_gateway(cloud, &id, props).await?;
            Ok(id)
        }
        Kind::RouteTable => {
            let out = ec2
                .create_route_table()
                .vpc_id(prop_str(props, "vpc_id")?)
                .tag_specifications(tag_spec(props, ResourceType::RouteTable)?)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateRouteTable", e))?;
            let id = out.route_table().and_then(|t| t.route_table_id());
            required(id, "CreateRouteTable", "RouteTableId")
        }
        Kind::Route => {
            let table_id = prop_str(props, "route_table_id")?;
            let destination = prop_str(props, "destination_cidr_block")?;
            ec2.create_route()
                .route_table_id(table_id)
                .destination_cidr_block(destination)
                .gateway_id(prop_str(props, "gateway_id")?)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateRoute", e))?;
            Ok(route_id(table_id, destination))
        }
        Kind::RouteTableAssociation => {
            let out = ec2
                .associate_route_table()
                .route_table_id(prop_str(props, "route_table_id")?)
                .subnet_id(prop_str(props, "subnet_id")?)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("AssociateRouteTable", e))?;
            required(out.association_id(), "AssociateRouteTable", "AssociationId")
        }
        Kind::SecurityGroup => {
            let out = ec2
                .create_security_group()
                .group_name(prop_str(props, "name")?)
                .description(prop_str(props, "description")?)
                .vpc_id(prop_str(props, "vpc_id")?)
                .tag_specifications(tag_spec(props, ResourceType::SecurityGroup)?)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateSecurityGroup", e))?;
            let id = required(out.group_id(), "CreateSecurityGroup", "GroupId")?;
            // The default allow-all egress stays; only ingress is ours.
            authorize(cloud, &id, &desired_rules(props)?).await?;
            Ok(id)
        }
        Kind::Instance => create_instance(cloud, props).await,
        _ => Err(not_ours("create", kind)),
    }
}

async fn attach_gateway(cloud: &Cloud, id: &str, props: &Props) -> Result<()> {
    cloud
        .ec2
        .attach_internet_gateway()
        .internet_gateway_id(id)
        .vpc_id(prop_str(props, "vpc_id")?)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("AttachInternetGateway", e))?;
    Ok(())
}

/// See the module contract in [`super`].
pub async fn update(
    cloud: &Cloud,
    kind: Kind,
    id: &str,
    props: &Props,
    changed: &[String],
) -> Result<()> {
    for attribute in changed {
        match (kind, attribute.as_str()) {
            (
                Kind::Vpc
                | Kind::Subnet
                | Kind::InternetGateway
                | Kind::RouteTable
                | Kind::SecurityGroup,
                "tags",
            ) => retag(cloud, id, props).await?,
            (Kind::Vpc, "enable_dns_hostnames" | "enable_dns_support") => {
                set_vpc_dns(cloud, id, attribute, prop_bool(props, attribute)?).await?;
            }
            (Kind::Subnet, "map_public_ip_on_launch") => {
                set_map_public_ip(cloud, id, prop_bool(props, attribute)?).await?;
            }
            (Kind::Route, "gateway_id") => {
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
            (Kind::SecurityGroup, "ingress") => update_ingress(cloud, id, props).await?,
            // Replaces the gateway for the planner; completes a half-made create.
            (Kind::InternetGateway, "vpc_id") => attach_gateway(cloud, id, props).await?,
            (Kind::Instance, "tags") => {
                retag(cloud, id, props).await?;
                // The root volume was tagged with the instance; keep them alike.
                if let Some(volume_id) = describe_instance(cloud, id)
                    .await?
                    .as_ref()
                    .and_then(root_volume_id)
                {
                    retag(cloud, &volume_id, props).await?;
                }
            }
            _ => {
                return Err(CloudError::invalid(
                    "update",
                    format!("{kind} cannot change `{attribute}` in place"),
                ))
            }
        }
    }
    Ok(())
}

/// See the module contract in [`super`].
pub async fn delete(cloud: &Cloud, kind: Kind, id: &str) -> Result<()> {
    let ec2 = &cloud.ec2;
    let result = match kind {
        Kind::Vpc => ec2
            .delete_vpc()
            .vpc_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteVpc", e)),
        Kind::Subnet => ec2
            .delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteSubnet", e)),
        Kind::InternetGateway => delete_internet_gateway(cloud, id).await,
        Kind::RouteTable => ec2
            .delete_route_table()
            .route_table_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteRouteTable", e)),
        Kind::Route => {
            let (table_id, destination) = split_route_id(id)?;
            ec2.delete_route()
                .route_table_id(table_id)
                .destination_cidr_block(destination)
                .send()
                .await
                .map(drop)
                .map_err(|e| CloudError::from_sdk("DeleteRoute", e))
        }
        Kind::RouteTableAssociation => ec2
            .disassociate_route_table()
            .association_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DisassociateRouteTable", e)),
        Kind::SecurityGroup => ec2
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteSecurityGroup", e)),
        Kind::Instance => delete_instance(cloud, id).await,
        _ => return Err(not_ours("delete", kind)),
    };
    match result {
        Err(e) if not_found(&e) => Ok(()),
        other => other,
    }
}

/// See the module contract in [`super`].
pub async fn list_tagged(cloud: &Cloud) -> Result<Vec<(Kind, String)>> {
    let ec2 = &cloud.ec2;
    let stack = || vec![filter(&format!("tag:{STACK_TAG}"), [cloud.stack.as_str()])];
    let mut found = Vec::new();
    let mut add = |kind: Kind, ids: Vec<Option<&str>>| {
        found.extend(ids.into_iter().flatten().map(|id| (kind, id.to_string())));
    };

    let vpcs = ec2
        .describe_vpcs()
        .set_filters(Some(stack()))
        .into_paginator()
        .items();
    let vpcs = vpcs.send().try_collect().await;
    let vpcs = vpcs.map_err(|e| CloudError::from_sdk("DescribeVpcs", e))?;
    add(Kind::Vpc, vpcs.iter().map(|v| v.vpc_id()).collect());

    let subnets = ec2
        .describe_subnets()
        .set_filters(Some(stack()))
        .into_paginator()
        .items();
    let subnets = subnets.send().try_collect().await;
    let subnets = subnets.map_err(|e| CloudError::from_sdk("DescribeSubnets", e))?;
    add(
        Kind::Subnet,
        subnets.iter().map(|s| s.subnet_id()).collect(),
    );

    let gateways = ec2.describe_internet_gateways().set_filters(Some(stack()));
    let gateways = gateways.into_paginator().items().send().try_collect().await;
    let gateways = gateways.map_err(|e| CloudError::from_sdk("DescribeInternetGateways", e))?;
    let gateway_ids = gateways.iter().map(|g| g.internet_gateway_id()).collect();
    add(Kind::InternetGateway, gateway_ids);

    let tables = ec2
        .describe_route_tables()
        .set_filters(Some(stack()))
        .into_paginator();
    let tables = tables.items().send().try_collect().await;
    let tables = tables.map_err(|e| CloudError::from_sdk("DescribeRouteTables", e))?;
    add(
        Kind::RouteTable,
        tables.iter().map(|t| t.route_table_id()).collect(),
    );

    let groups = ec2
        .describe_security_groups()
        .set_filters(Some(stack()))
        .into_paginator();
    let groups = groups.items().send().try_collect().await;
    let groups = groups.map_err(|e| CloudError::from_sdk("DescribeSecurityGroups", e))?;
    add(
        Kind::SecurityGroup,
        groups.iter().map(|g| g.group_id()).collect(),
    );

    let live = filter(
        "instance-state-name",
        ["pending", "running", "shutting-down", "stopping", "stopped"],
    );
    let instances = ec2
        .describe_instances()
        .set_filters(Some(stack()))
        .filters(live);
    let reservations = instances
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await;
    let reservations = reservations.map_err(|e| CloudError::from_sdk("DescribeInstances", e))?;
    let instance_ids = reservations
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_id())
        .collect();
    add(Kind::Instance, instance_ids);
    Ok(found)
}

/// One ingress rule of a security group, as the `ingress` property lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Rule {
    protocol: String,
    from_port: i64,
    to_port: i64,
    cidr: Option<String>,
    source_security_group_id: Option<String>,
    #[serde(default)]
    description: String,
}

impl Rule {
    /// What AWS matches a rule on; the description rides along.
    fn key(&self) -> (String, i64, i64, Option<String>, Option<String>) {
        (
            self.protocol.clone(),
            self.from_port,
            self.to_port,
            self.cidr.clone(),
            self.source_security_group_id.clone(),
        )
    }

    fn permission(&self, with_description: bool) -> Result<IpPermission> {
        let description =
            (with_description && !self.description.is_empty()).then(|| self.description.clone());
        let permission = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .from_port(port(self.from_port)?)
            .to_port(port(self.to_port)?);
        Ok(match (&self.cidr, &self.source_security_group_id) {
            (Some(cidr), None) => permission.ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .set_description(description)
                    .build(),
            ),
            (None, Some(group)) => permission.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(group)
                    .set_description(description)
                    .build(),
            ),
            _ => {
                return Err(CloudError::invalid(
                    "ingress",
                    "an ingress rule needs exactly one of `cidr` and `source_security_group_id`",
                ))
            }
        }
        .build())
    }
}

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
    let Some(instance) = describe_instance(cloud, id).await? else {
        return Ok(None);
    };
    let state = instance
        .state()
        .and_then(|s| s.name())
        .map_or("unknown", |s| s.as_str());
    Ok(Some((state.to_string(), setup_report(&instance))))
}

fn setup_report(instance: &Instance) -> Option<String> {
    let tag = instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(BROKER_SETUP_TAG));
    tag.and_then(|t| t.value()).map(str::to_string)
}

fn setup_failed(instance: &Instance) -> bool {
    setup_report(instance).is_some_and(|r| r.starts_with("failed"))
}

/// The instance's state name (`pending`, `running`, ...), `None` when it
/// does not exist.
pub async fn instance_state(cloud: &Cloud, id: &str) -> Result<Option<String>> {
    let instance = describe_instance(cloud, id).await?;
    Ok(instance
        .as_ref()
        .and_then(|i| i.state())
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string()))
}

async fn read_vpc(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let out = cloud.ec2.describe_vpcs().vpc_ids(id).send().await;
    let Some(out) = absent(out.map_err(|e| CloudError::from_sdk("DescribeVpcs", e)))? else {
        return Ok(None);
    };
    let Some(vpc) = out.vpcs().first() else {
        return Ok(None);
    };
    let mut props = Props::from([
        ("cidr_block".into(), opt_str(vpc.cidr_block())),
        ("tags".into(), tags_of(vpc.tags())),
    ]);
    for (name, attribute) in [
        ("enable_dns_hostnames", VpcAttributeName::EnableDnsHostnames),
        ("enable_dns_support", VpcAttributeName::EnableDnsSupport),
    ] {
        let out = cloud
            .ec2
            .describe_vpc_attribute()
            .vpc_id(id)
            .attribute(attribute)
            .send()
            .await;
        let out = out.map_err(|e| CloudError::from_sdk("DescribeVpcAttribute", e));
        let Some(out) = absent(out)? else {
            return Ok(None);
        };
        let value = match name {
            "enable_dns_hostnames" => out.enable_dns_hostnames(),
            _ => out.enable_dns_support(),
        };
        props.insert(
            name.into(),
            json!(value.and_then(|v| v.value()).unwrap_or(false)),
        );
    }
    Ok(Some(observed(props, id)))
}

async fn read_subnet(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
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

async fn read_internet_gateway(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let out = cloud
        .ec2
        .describe_internet_gateways()
        .internet_gateway_ids(id)
        .send()
        .await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeInternetGateways", e));
    let Some(out) = absent(out)? else {
        return Ok(None);
    };
    let Some(gateway) = out.internet_gateways().first() else {
        return Ok(None);
    };
    let props = Props::from([
        ("vpc_id".into(), opt_str(attached_vpc(gateway))),
        ("tags".into(), tags_of(gateway.tags())),
    ]);
    Ok(Some(observed(props, id)))
}

async fn read_route(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let (table_id, destination) = split_route_id(id)?;
    let Some(table) = route_table(cloud, table_id).await? else {
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

async fn read_association(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
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
        .filter(|a| association_live(a))
        .find(|a| a.route_table_association_id() == Some(id));
    Ok(association.map(|a| {
        let props = Props::from([
            ("route_table_id".into(), opt_str(a.route_table_id())),
            ("subnet_id".into(), opt_str(a.subnet_id())),
        ]);
        observed(props, id)
    }))
}

async fn read_instance(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let Some(instance) = describe_instance(cloud, id).await? else {
        return Ok(None);
    };
    let state = instance.state().and_then(|s| s.name());
    if matches!(
        state,
        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
    ) {
        return Ok(None);
    }
    let mut groups: Vec<&str> = instance
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    groups.sort_unstable();

    let root_volume_gib = match root_volume_id(&instance) {
        Some(volume_id) => {
            let out = cloud
                .ec2
                .describe_volumes()
                .volume_ids(volume_id)
                .send()
                .await;
            let out = out.map_err(|e| CloudError::from_sdk("DescribeVolumes", e));
            // A volume gone between the two calls reads as no size.
            let size = absent(out)?.and_then(|o| o.volumes().first().and_then(|v| v.size()));
            size.map_or(Value::Null, |s| json!(s))
        }
        None => Value::Null,
    };

    // The profile's name ends its ARN (`arn:aws:iam::ACCOUNT:instance-profile/NAME`).
    let profile = instance
        .iam_instance_profile()
        .and_then(|p| p.arn())
        .and_then(|arn| arn.rsplit('/').next());

    let out = cloud
        .ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeInstanceAttribute", e));
    let Some(out) = absent(out)? else {
        return Ok(None);
    };
    let encoded = out.user_data().and_then(|u| u.value()).unwrap_or_default();
    let decoded = STANDARD
        .decode(encoded)
        .map_err(|e| CloudError::invalid("DescribeInstanceAttribute", format!("userData: {e}")))?;

    let props = Props::from([
        (
            "instance_type".into(),
            opt_str(instance.instance_type().map(|t| t.as_str())),
        ),
        ("subnet_id".into(), opt_str(instance.subnet_id())),
        ("security_group_ids".into(), json!(groups)),
        ("root_volume_gib".into(), root_volume_gib),
        ("user_data".into(), json!(String::from_utf8_lossy(&decoded))),
        ("instance_profile".into(), opt_str(profile)),
        // A broker whose setup failed is replaced by the next apply.
        ("setup_failed".into(), json!(setup_failed(&instance))),
        ("tags".into(), tags_of(instance.tags())),
    ]);
    let outputs = Props::from([
        ("id".into(), json!(id)),
        ("private_ip".into(), opt_str(instance.private_ip_address())),
        ("image_id".into(), opt_str(instance.image_id())),
    ]);
    Ok(Some(Observed { props, outputs }))
}

async fn create_instance(cloud: &Cloud, props: &Props) -> Result<String> {
    let instance_type = prop_str(props, "instance_type")?;
    let architecture = instance_architecture(instance_type).ok_or_else(|| {
        CloudError::invalid(
            "instance_type",
            format!("`{instance_type}` is not an EC2 instance type"),
        )
    })?;
    let parameter = cloud
        .ssm
        .get_parameter()
        .name(ami_parameter(architecture))
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("GetParameter", e))?;
    let image_id = parameter.parameter().and_then(|p| p.value());
    let image_id = required(image_id, "GetParameter", "Parameter.Value")?;
    let size = prop_i64(props, "root_volume_gib")?;
    let size = i32::try_from(size)
        .map_err(|_| CloudError::invalid("root_volume_gib", format!("{size} GiB is too large")))?;
    let volume = EbsBlockDevice::builder()
        .volume_size(size)
        .volume_type(VolumeType::Gp3)
        .encrypted(true)
        .delete_on_termination(true)
        .build();
    // One token per launch: a token fixed per address would make EC2 hand
    // back the old, terminated instance when the broker is replaced. A
    // retried launch is found by its tags instead (the walk looks first).
    let client_token: String = format!("{}-{}", cloud.stack, uuid::Uuid::new_v4().simple())
        .chars()
        .take(64)
        .collect();
    let out = cloud
        .ec2
        .run_instances()
        .image_id(image_id)
        .instance_type(InstanceType::from(prop_str(props, "instance_type")?))
        .min_count(1)
        .max_count(1)
        .subnet_id(prop_str(props, "subnet_id")?)
        .set_security_group_ids(Some(prop_strings(props, "security_group_ids")?))
        .user_data(STANDARD.encode(prop_str(props, "user_data")?))
        .iam_instance_profile(
            IamInstanceProfileSpecification::builder()
                .name(prop_str(props, "instance_profile")?)
                .build(),
        )
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name(ROOT_DEVICE)
                .ebs(volume)
                .build(),
        )
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .tag_specifications(tag_spec(props, ResourceType::Instance)?)
        .tag_specifications(tag_spec(props, ResourceType::Volume)?)
        .client_token(client_token)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("RunInstances", e))?;
    let id = out.instances().first().and_then(|i| i.instance_id());
    required(id, "RunInstances", "InstanceId")
}

/// Terminates, then waits for `terminated`: the instance's security groups
/// and subnet cannot be deleted before.
async fn delete_instance(cloud: &Cloud, id: &str) -> Result<()> {
    cloud
        .ec2
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("TerminateInstances", e))?;
    for _ in 0..300 {
        match instance_state(cloud, id).await? {
            None => return Ok(()),
            Some(state) if state == InstanceStateName::Terminated.as_str() => return Ok(()),
            Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
    Err(CloudError::invalid(
        "TerminateInstances",
        format!("instance {id} was not terminated after 10 minutes"),
    ))
}

/// Detaches the gateway from every VPC, then deletes it.
async fn delete_internet_gateway(cloud: &Cloud, id: &str) -> Result<()> {
    let out = cloud
        .ec2
        .describe_internet_gateways()
        .internet_gateway_ids(id)
        .send()
        .await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeInternetGateways", e))?;
    let vpcs = out.internet_gateways().iter().flat_map(|g| g.attachments());
    for vpc_id in vpcs.filter_map(|a| a.vpc_id()) {
        let detached = cloud
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc_id)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DetachInternetGateway", e));
        match detached {
            Err(e) if e.code != "Gateway.NotAttached" && !not_found(&e) => return Err(e),
            _ => {}
        }
    }
    cloud
        .ec2
        .delete_internet_gateway()
        .internet_gateway_id(id)
        .send()
        .await
        .map(drop)
        .map_err(|e| CloudError::from_sdk("DeleteInternetGateway", e))
}

/// Authorizes missing rules, fixes descriptions, then revokes the rules not
/// desired (in that order so a replaced rule leaves no gap).
async fn update_ingress(cloud: &Cloud, id: &str, props: &Props) -> Result<()> {
    let Some(group) = security_group(cloud, id).await? else {
        return Err(CloudError {
            operation: "DescribeSecurityGroups".into(),
            code: "InvalidGroup.NotFound".into(),
            message: format!("security group {id} does not exist"),
        });
    };
    let current: BTreeMap<_, _> = rules_of(&group).into_iter().map(|r| (r.key(), r)).collect();
    let desired: BTreeMap<_, _> = desired_rules(props)?
        .into_iter()
        .map(|r| (r.key(), r))
        .collect();

    let missing: Vec<Rule> = desired
        .iter()
        .filter(|(k, _)| !current.contains_key(*k))
        .map(|(_, r)| r.clone())
        .collect();
    authorize(cloud, id, &missing).await?;

    let redescribed: Vec<&Rule> = desired
        .iter()
        .filter(|(k, r)| {
            current
                .get(*k)
                .is_some_and(|c| c.description != r.description)
        })
        .map(|(_, r)| r)
        .collect();
    if !redescribed.is_empty() {
        let permissions = redescribed
            .iter()
            .map(|r| r.permission(true))
            .collect::<Result<Vec<_>>>()?;
        cloud
            .ec2
            .update_security_group_rule_descriptions_ingress()
            .group_id(id)
            .set_ip_permissions(Some(permissions))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("UpdateSecurityGroupRuleDescriptionsIngress", e))?;
    }

    let unwanted: Vec<&Rule> = current
        .iter()
        .filter(|(k, _)| !desired.contains_key(*k))
        .map(|(_, r)| r)
        .collect();
    if !unwanted.is_empty() {
        let permissions = unwanted
            .iter()
            .map(|r| r.permission(false))
            .collect::<Result<Vec<_>>>()?;
        cloud
            .ec2
            .revoke_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(permissions))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("RevokeSecurityGroupIngress", e))?;
    }
    Ok(())
}

async fn authorize(cloud: &Cloud, id: &str, rules: &[Rule]) -> Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    let permissions = rules
        .iter()
        .map(|r| r.permission(true))
        .collect::<Result<Vec<_>>>()?;
    cloud
        .ec2
        .authorize_security_group_ingress()
        .group_id(id)
        .set_ip_permissions(Some(permissions))
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("AuthorizeSecurityGroupIngress", e))?;
    Ok(())
}

fn desired_rules(props: &Props) -> Result<Vec<Rule>> {
    match props.get("ingress") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| CloudError::invalid("ingress", format!("property `ingress`: {e}"))),
    }
}

/// The group's ingress, one rule per CIDR or source group.
fn rules_of(group: &SecurityGroup) -> Vec<Rule> {
    let mut rules = Vec::new();
    for permission in group.ip_permissions() {
        let rule = |cidr: Option<&str>, source: Option<&str>, description: Option<&str>| Rule {
            protocol: permission.ip_protocol().unwrap_or_default().to_string(),
            from_port: permission.from_port().map_or(-1, i64::from),
            to_port: permission.to_port().map_or(-1, i64::from),
            cidr: cidr.map(str::to_string),
            source_security_group_id: source.map(str::to_string),
            description: description.unwrap_or_default().to_string(),
        };
        for range in permission.ip_ranges() {
            rules.push(rule(range.cidr_ip(), None, range.description()));
        }
        for pair in permission.user_id_group_pairs() {
            rules.push(rule(None, pair.group_id(), pair.description()));
        }
    }
    rules
}

async fn security_group(cloud: &Cloud, id: &str) -> Result<Option<SecurityGroup>> {
    let out = cloud
        .ec2
        .describe_security_groups()
        .group_ids(id)
        .send()
        .await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeSecurityGroups", e));
    Ok(absent(out)?.and_then(|o| o.security_groups().first().cloned()))
}

async fn route_table(cloud: &Cloud, id: &str) -> Result<Option<RouteTable>> {
    let out = cloud
        .ec2
        .describe_route_tables()
        .route_table_ids(id)
        .send()
        .await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeRouteTables", e));
    Ok(absent(out)?.and_then(|o| o.route_tables().first().cloned()))
}

async fn describe_instance(cloud: &Cloud, id: &str) -> Result<Option<Instance>> {
    let out = cloud.ec2.describe_instances().instance_ids(id).send().await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeInstances", e));
    Ok(absent(out)?.and_then(|o| {
        let mut instances = o.reservations().iter().flat_map(|r| r.instances());
        instances.next().cloned()
    }))
}

fn root_volume_id(instance: &Instance) -> Option<String> {
    let root = instance.root_device_name().unwrap_or(ROOT_DEVICE);
    let mapping = instance
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root));
    mapping
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_id())
        .map(str::to_string)
}

fn attached_vpc(gateway: &aws_sdk_ec2::types::InternetGateway) -> Option<&str> {
    let gone = [AttachmentStatus::Detached, AttachmentStatus::Detaching];
    let mut live = gateway
        .attachments()
        .iter()
        .filter(|a| a.state().is_none_or(|s| !gone.contains(s)));
    live.find_map(|a| a.vpc_id())
}

fn association_live(association: &aws_sdk_ec2::types::RouteTableAssociation) -> bool {
    let state = association.association_state().and_then(|s| s.state());
    !matches!(
        state,
        Some(
            RouteTableAssociationStateCode::Disassociated
                | RouteTableAssociationStateCode::Disassociating
        )
    )
}

async fn set_vpc_dns(cloud: &Cloud, id: &str, attribute: &str, value: bool) -> Result<()> {
    let value = AttributeBooleanValue::builder().value(value).build();
    let request = cloud.ec2.modify_vpc_attribute().vpc_id(id);
    let request = match attribute {
        "enable_dns_hostnames" => request.enable_dns_hostnames(value),
        _ => request.enable_dns_support(value),
    };
    request
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ModifyVpcAttribute", e))?;
    Ok(())
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

/// Sets the desired tags on one EC2 resource and removes the others.
async fn retag(cloud: &Cloud, id: &str, props: &Props) -> Result<()> {
    let desired: BTreeMap<String, String> = prop_tags(props)?.into_iter().collect();
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
    let stale: Vec<Tag> = stale_tag_keys(current, props)?
        .into_iter()
        .map(|k| Tag::builder().key(k).build())
        .collect();
    if !desired.is_empty() {
        cloud
            .ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(ec2_tags(props)?))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateTags", e))?;
    }
    if !stale.is_empty() {
        cloud
            .ec2
            .delete_tags()
            .resources(id)
            .set_tags(Some(stale))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DeleteTags", e))?;
    }
    Ok(())
}

fn ec2_tags(props: &Props) -> Result<Vec<Tag>> {
    let tags = prop_tags(props)?;
    Ok(tags
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect())
}

fn tag_spec(props: &Props, resource: ResourceType) -> Result<TagSpecification> {
    let tags = ec2_tags(props)?;
    Ok(TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tags))
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

fn address_filters(cloud: &Cloud, address: &str) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{STACK_TAG}"), [cloud.stack.as_str()]),
        filter(&format!("tag:{ADDRESS_TAG}"), [address]),
    ]
}

fn route_id(table_id: &str, destination: &str) -> String {
    format!("{table_id}|{destination}")
}

fn split_route_id(id: &str) -> Result<(&str, &str)> {
    id.split_once('|')
        .ok_or_else(|| CloudError::invalid("route", format!("`{id}` is not ROUTE_TABLE|CIDR")))
}

fn observed(props: Props, id: &str) -> Observed {
    Observed {
        props,
        outputs: Props::from([("id".into(), json!(id))]),
    }
}

fn opt_str(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |v| json!(v))
}

fn required(value: Option<&str>, operation: &str, field: &str) -> Result<String> {
    value
        .map(str::to_string)
        .ok_or_else(|| CloudError::invalid(operation, format!("the answer has no {field}")))
}

fn port(value: i64) -> Result<i32> {
    i32::try_from(value).map_err(|_| CloudError::invalid("ingress", format!("bad port {value}")))
}

/// EC2 names every missing thing `Invalid….NotFound`.
fn not_found(error: &CloudError) -> bool {
    error.code.ends_with(".NotFound")
}

/// `Ok(None)` for a not-found answer.
fn absent<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn not_ours(operation: &str, kind: Kind) -> CloudError {
    CloudError::invalid(operation, format!("{kind} is not a network kind"))
}

super::legacy::legacy_family!();
