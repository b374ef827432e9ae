//! A security group with its ingress rules; the default allow-all egress
//! stays as AWS makes it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, IpPermission, IpRange, ResourceType, UserIdGroupPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    absent, address_filters, blocking_interfaces, gone_ok, normalize, not_updatable, observed,
    opt_str, required, retag, stack_filters, tag_spec, tags_of,
};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::prop_str;
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props};

/// An EC2 security group.
pub struct SecurityGroup;

#[async_trait]
impl ResourceKind for SecurityGroup {
    fn updatable(&self) -> &'static [&'static str] {
        &["ingress", "tags"]
    }

    // After everything with network interfaces in it (the broker, load
    // balancers, tasks).
    fn destroy_rank(&self) -> u8 {
        5
    }

    async fn find(&self, cloud: &Cloud, address: &str, _props: &Props) -> Result<Option<String>> {
        let out = cloud
            .ec2
            .describe_security_groups()
            .set_filters(Some(address_filters(cloud, address)))
            .send()
            .await;
        let out = out.map_err(|e| CloudError::from_sdk("DescribeSecurityGroups", e))?;
        Ok(out
            .security_groups()
            .iter()
            .find_map(|g| g.group_id())
            .map(str::to_string))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(group) = describe(cloud, id).await? else {
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

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let out = cloud
            .ec2
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
                "ingress" => update_ingress(cloud, id, props).await?,
                _ => return Err(not_updatable(Kind::SecurityGroup, attribute)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .ec2
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteSecurityGroup", e));
        gone_ok(deleted)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let groups = cloud
            .ec2
            .describe_security_groups()
            .set_filters(Some(stack_filters(cloud)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeSecurityGroups", e))?;
        Ok(groups
            .iter()
            .filter_map(|g| g.group_id())
            .map(str::to_string)
            .collect())
    }

    async fn users(&self, cloud: &Cloud, id: &str) -> Result<Vec<String>> {
        blocking_interfaces(cloud, id).await
    }
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

fn port(value: i64) -> Result<i32> {
    i32::try_from(value).map_err(|_| CloudError::invalid("ingress", format!("bad port {value}")))
}

/// Authorizes missing rules, fixes descriptions, then revokes the rules not
/// desired (in that order so a replaced rule leaves no gap).
async fn update_ingress(cloud: &Cloud, id: &str, props: &Props) -> Result<()> {
    let Some(group) = describe(cloud, id).await? else {
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
fn rules_of(group: &types::SecurityGroup) -> Vec<Rule> {
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

async fn describe(cloud: &Cloud, id: &str) -> Result<Option<types::SecurityGroup>> {
    let out = cloud
        .ec2
        .describe_security_groups()
        .group_ids(id)
        .send()
        .await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeSecurityGroups", e));
    Ok(absent(out)?.and_then(|o| o.security_groups().first().cloned()))
}
