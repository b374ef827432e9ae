//! A security group with its ingress rules; the default allow-all egress
//! stays as AWS makes it.

use std::collections::BTreeMap;
use std::future::Future;

use async_trait::async_trait;
use aws_sdk_ec2::types::{self, Filter, IpPermission, IpRange, ResourceType, UserIdGroupPair};
use serde::{Deserialize, Serialize};

use super::{
    answered, blocking_interfaces, deleted, described, each_of, first_at, ids_filter, ids_of,
    observed, stack_filters, tag_spec, update_tagged,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{fit_i32, from_props, not_in_place, required, sent, sent_ok};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// A security group's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupProps {
    /// Its name, unique in the VPC.
    pub name: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// The VPC it is in.
    pub vpc_id: Option<String>,
    /// What it admits, in the order of [`IngressRule::sorted`].
    pub ingress: Vec<IngressRule>,
}

/// One ingress rule of a security group, as the `ingress` property lists
/// it: a port range admitted from one CIDR or one security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    /// The IP protocol (`tcp`, `udp`, ...).
    pub protocol: String,
    /// The first port admitted (-1 when the protocol has no ports).
    pub from_port: i64,
    /// The last port admitted (-1 when the protocol has no ports).
    pub to_port: i64,
    /// The IPv4 range admitted; `None` when a security group is.
    pub cidr: Option<String>,
    /// The security group admitted; `None` when a range is.
    pub source_security_group_id: Option<String>,
    /// What the rule is for (empty when it says nothing).
    #[serde(default)]
    pub description: String,
}

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
        first_at(cloud, address, |filters| ids(cloud, filters)).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        Ok(describe(cloud, id).await?.map(|group| observe(&group, id)))
    }

    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        let request = cloud.ec2.describe_security_groups();
        let request = request.filters(ids_filter("group-id", ids));
        let items = request.into_paginator().items().send();
        let groups: Vec<_> = sent("DescribeSecurityGroups", items.try_collect()).await?;
        Ok(each_of(ids, &groups, |g| g.group_id(), observe))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: SecurityGroupProps = from_props(props)?;
        let request = cloud
            .ec2
            .create_security_group()
            .group_name(required(p.name, "name")?)
            .description(required(p.description, "description")?)
            .vpc_id(required(p.vpc_id, "vpc_id")?)
            .tag_specifications(tag_spec(props, ResourceType::SecurityGroup)?);
        let out = sent("CreateSecurityGroup", request.send()).await?;
        let id = answered(out.group_id(), "CreateSecurityGroup", "GroupId")?;
        // The default allow-all egress stays; only ingress is ours.
        authorize(cloud, &id, &p.ingress.iter().collect::<Vec<_>>()).await?;
        Ok(id)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        update_tagged(cloud, id, props, changed, |attribute| async move {
            match attribute {
                "ingress" => update_ingress(cloud, id, from_props(props)?).await,
                other => Err(not_in_place("UpdateSecurityGroup", other)),
            }
        })
        .await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.ec2.delete_security_group().group_id(id);
        deleted("DeleteSecurityGroup", request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        ids(cloud, stack_filters(cloud)).await
    }

    async fn users(&self, cloud: &Cloud, id: &str) -> Result<Vec<String>> {
        blocking_interfaces(cloud, id).await
    }
}

/// What AWS matches a rule on; the description rides along.
type RuleKey = (String, i64, i64, Option<String>, Option<String>);

impl IngressRule {
    /// `rules` in the order `read` reports them: by ports, then CIDR, then
    /// source group (rules alike in those keep their order).
    pub fn sorted(mut rules: Vec<IngressRule>) -> Vec<IngressRule> {
        rules.sort_by(|a, b| a.order().cmp(&b.order()));
        rules
    }

    /// What [`IngressRule::sorted`] orders by.
    fn order(&self) -> (i64, i64, Option<&str>, Option<&str>) {
        let source = self.source_security_group_id.as_deref();
        (self.from_port, self.to_port, self.cidr.as_deref(), source)
    }

    fn key(&self) -> RuleKey {
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
            .from_port(fit_i32(self.from_port, "from_port")?)
            .to_port(fit_i32(self.to_port, "to_port")?);
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

/// Authorizes missing rules, fixes descriptions, then revokes the rules not
/// desired (in that order so a replaced rule leaves no gap).
async fn update_ingress(cloud: &Cloud, id: &str, p: SecurityGroupProps) -> Result<()> {
    let Some(group) = describe(cloud, id).await? else {
        return Err(CloudError {
            operation: "DescribeSecurityGroups".into(),
            code: "InvalidGroup.NotFound".into(),
            message: format!("security group {id} does not exist"),
        });
    };
    let by_key = |rules: Vec<IngressRule>| -> BTreeMap<RuleKey, IngressRule> {
        rules.into_iter().map(|r| (r.key(), r)).collect()
    };
    let current = by_key(rules_of(&group));
    let desired = by_key(p.ingress);

    let missing = desired.iter().filter(|(k, _)| !current.contains_key(*k));
    authorize(cloud, id, &missing.map(|(_, r)| r).collect::<Vec<_>>()).await?;

    let redescribed = desired.iter().filter(|(k, r)| {
        current
            .get(*k)
            .is_some_and(|c| c.description != r.description)
    });
    let redescribed: Vec<_> = redescribed.map(|(_, r)| r).collect();
    with_permissions(&redescribed, true, |permissions| {
        let request = cloud.ec2.update_security_group_rule_descriptions_ingress();
        let request = request.group_id(id).set_ip_permissions(Some(permissions));
        sent_ok("UpdateSecurityGroupRuleDescriptionsIngress", request.send())
    })
    .await?;

    let unwanted = current.iter().filter(|(k, _)| !desired.contains_key(*k));
    let unwanted: Vec<_> = unwanted.map(|(_, r)| r).collect();
    with_permissions(&unwanted, false, |permissions| {
        let request = cloud.ec2.revoke_security_group_ingress().group_id(id);
        let request = request.set_ip_permissions(Some(permissions));
        sent_ok("RevokeSecurityGroupIngress", request.send())
    })
    .await
}

async fn authorize(cloud: &Cloud, id: &str, rules: &[&IngressRule]) -> Result<()> {
    with_permissions(rules, true, |permissions| {
        let request = cloud.ec2.authorize_security_group_ingress().group_id(id);
        let request = request.set_ip_permissions(Some(permissions));
        sent_ok("AuthorizeSecurityGroupIngress", request.send())
    })
    .await
}

/// Makes `call` with `rules` as permissions (their descriptions with them
/// when `with_description`), unless there are none.
async fn with_permissions<Fut>(
    rules: &[&IngressRule],
    with_description: bool,
    call: impl FnOnce(Vec<IpPermission>) -> Fut,
) -> Result<()>
where
    Fut: Future<Output = Result<()>>,
{
    if rules.is_empty() {
        return Ok(());
    }
    let permissions = rules.iter().map(|r| r.permission(with_description));
    call(permissions.collect::<Result<_>>()?).await
}

/// The group as `read` answers it.
fn observe(group: &types::SecurityGroup, id: &str) -> Observed {
    let p = SecurityGroupProps {
        name: group.group_name().map(str::to_string),
        description: group.description().map(str::to_string),
        vpc_id: group.vpc_id().map(str::to_string),
        ingress: IngressRule::sorted(rules_of(group)),
    };
    observed(&p, group.tags(), id)
}

/// The group's ingress, one rule per CIDR or source group.
fn rules_of(group: &types::SecurityGroup) -> Vec<IngressRule> {
    let mut rules = Vec::new();
    for permission in group.ip_permissions() {
        let rule =
            |cidr: Option<&str>, source: Option<&str>, description: Option<&str>| IngressRule {
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

/// The ids of the security groups `filters` match.
async fn ids(cloud: &Cloud, filters: Vec<Filter>) -> Result<Vec<String>> {
    let request = cloud
        .ec2
        .describe_security_groups()
        .set_filters(Some(filters));
    let items = request.into_paginator().items().send().try_collect();
    ids_of(
        "DescribeSecurityGroups",
        items,
        types::SecurityGroup::group_id,
    )
    .await
}

/// The group `id` with its rules, `None` when it is gone.
async fn describe(cloud: &Cloud, id: &str) -> Result<Option<types::SecurityGroup>> {
    let request = cloud.ec2.describe_security_groups().group_ids(id);
    let out = described("DescribeSecurityGroups", request.send()).await?;
    Ok(out.and_then(|o| o.security_groups().first().cloned()))
}
