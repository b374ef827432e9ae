//! IAM roles: a trust policy for one service, attached managed policies and
//! one inline policy named [`INLINE_POLICY`]; with `instance_profile`, an
//! instance profile of the same name holding the role (for EC2). The id is
//! the role name.

use async_trait::async_trait;
use aws_sdk_iam::operation::get_role::GetRoleOutput;
use aws_sdk_iam::types::{EntityType, Tag};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::resource::{ResourceKind, Update};
use super::support::{
    absent, deleted, from_props, gone_ok, in_stack_ids, look_at, not_in_place, ours_id, prop_tags,
    replace_tags, required, sdk_tags, sent, sent_ok, tag_map, tags_value, to_props, Tags,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// Name of the role's one inline policy.
pub const INLINE_POLICY: &str = "event-platform";

/// What IAM answers for a role, profile or policy that is not there.
const GONE: &[&str] = &["NoSuchEntity"];

/// A role's attributes, in the order a plan lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IamRoleProps {
    /// The policy document of its inline policy [`INLINE_POLICY`], if any.
    pub inline_policy: Option<Value>,
    /// Whether an instance profile of its name holds it (absent, not
    /// `false`, for a role without one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instance_profile: bool,
    /// ARNs of its attached managed policies.
    pub managed_policies: Vec<String>,
    /// The role's name, its id (and its instance profile's).
    pub name: String,
    /// The account principal `run-local` assumes it as, if any.
    pub trust_account: Option<String>,
    /// The service principal that assumes it; `None` when its trust policy
    /// is not one this kind writes (the plan replaces it).
    pub trust_service: Option<String>,
}

/// An IAM role, with its instance profile when it has one.
pub struct IamRole;

#[async_trait]
impl ResourceKind for IamRole {
    fn updatable(&self) -> &'static [&'static str] {
        &[
            "trust_account",
            "inline_policy",
            "managed_policies",
            "instance_profile",
            "tags",
        ]
    }

    // After the services, tasks and broker that run as it.
    fn destroy_rank(&self) -> u8 {
        4
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: IamRoleProps = from_props(props)?;
        let role = get_role(cloud, &p.name).await?;
        let tags = look_at(role, |_| role_tags(cloud, &p.name)).await?;
        Ok(ours_id(cloud, address, tags, p.name))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(role) = get_role(cloud, id).await?.and_then(|out| out.role) else {
            return Ok(None);
        };
        let iam = &cloud.iam;
        let inline = iam
            .get_role_policy()
            .role_name(id)
            .policy_name(INLINE_POLICY);
        let inline = absent(sent("GetRolePolicy", inline.send()).await, GONE)?;
        let tags = role_tags(cloud, id).await?;
        observed(RoleRead {
            name: role.role_name(),
            arn: role.arn(),
            trust: role.assume_role_policy_document(),
            managed_policies: attached(cloud, id).await?,
            inline: inline.as_ref().map(|out| out.policy_document()),
            instance_profile: profile_holds_role(cloud, id).await?,
            tags,
        })
        .map(Some)
    }

    /// One paginated listing of the account's roles with their policies,
    /// instance profiles and tags, where reading a role alone takes five
    /// calls.
    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        let request = cloud
            .iam
            .get_account_authorization_details()
            .filter(EntityType::Role);
        let pages = request.into_paginator().send();
        let pages = sent("GetAccountAuthorizationDetails", pages.try_collect()).await?;
        let mut by_name = std::collections::BTreeMap::new();
        for role in pages.iter().flat_map(|page| page.role_detail_list()) {
            let Some(name) = role.role_name() else {
                continue;
            };
            if !ids.iter().any(|id| id == name) {
                continue;
            }
            let inline = role
                .role_policy_list()
                .iter()
                .find(|p| p.policy_name() == Some(INLINE_POLICY))
                .and_then(|p| p.policy_document());
            let read = observed(RoleRead {
                name,
                arn: role.arn().unwrap_or_default(),
                trust: role.assume_role_policy_document(),
                managed_policies: role
                    .attached_managed_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string))
                    .collect(),
                inline,
                instance_profile: role
                    .instance_profile_list()
                    .iter()
                    .any(|p| p.instance_profile_name() == name),
                tags: tag_map(role.tags().iter().map(|t| (t.key(), t.value()))),
            })?;
            by_name.insert(name.to_string(), read);
        }
        Ok(ids.iter().map(|id| by_name.remove(id)).collect())
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: IamRoleProps = from_props(props)?;
        let trust = trust_policy(&p)?.to_string();
        let request = cloud.iam.create_role().role_name(&p.name);
        let request = request
            .assume_role_policy_document(trust)
            .set_tags(Some(iam_tags(prop_tags(props)?)?).filter(|t| !t.is_empty()));
        sent_ok("CreateRole", request.send()).await?;
        for arn in &p.managed_policies {
            attach(cloud, &p.name, arn).await?;
        }
        put_inline(cloud, &p.name, p.inline_policy.as_ref()).await?;
        if p.instance_profile {
            put_profile(cloud, &p.name, props).await?;
        }
        Ok(p.name)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: IamRoleProps = from_props(props)?;
        for attribute in changed {
            match attribute.as_str() {
                "managed_policies" => {
                    let desired = &p.managed_policies;
                    let current = attached(cloud, id).await?;
                    for arn in desired.iter().filter(|a| !current.contains(a)) {
                        attach(cloud, id, arn).await?;
                    }
                    for arn in current.iter().filter(|a| !desired.contains(a)) {
                        detach(cloud, id, arn).await?;
                    }
                }
                "inline_policy" => put_inline(cloud, id, p.inline_policy.as_ref()).await?,
                "trust_account" => {
                    let request = cloud.iam.update_assume_role_policy().role_name(id);
                    let request = request.policy_document(trust_policy(&p)?.to_string());
                    sent_ok("UpdateAssumeRolePolicy", request.send()).await?;
                }
                "instance_profile" if p.instance_profile => put_profile(cloud, id, props).await?,
                "instance_profile" => delete_profile(cloud, id).await?,
                "tags" => retag(cloud, id, props).await?,
                other => return Err(not_in_place("UpdateRole", other)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let result: Result<()> = async {
            // A role in an instance profile cannot be deleted.
            delete_profile(cloud, id).await?;
            for arn in attached(cloud, id).await? {
                detach(cloud, id, &arn).await?;
            }
            let iam = &cloud.iam;
            let names = iam.list_role_policies().role_name(id).into_paginator();
            let names = sent("ListRolePolicies", names.items().send().try_collect()).await?;
            for name in names {
                let request = iam.delete_role_policy().role_name(id).policy_name(name);
                sent_ok("DeleteRolePolicy", request.send()).await?;
            }
            sent_ok("DeleteRole", iam.delete_role().role_name(id).send()).await
        }
        .await;
        gone_ok(result, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let roles = cloud.iam.list_roles().into_paginator().items().send();
        let roles = sent("ListRoles", roles.try_collect()).await?;
        // Our role names all start with the stack's name.
        let names: Vec<_> = roles
            .iter()
            .map(|role| role.role_name())
            .filter(|name| name.starts_with(&cloud.stack))
            .map(|name| (name.to_string(), name.to_string()))
            .collect();
        let mut found = in_stack_ids(cloud, names, |name| async move {
            absent(role_tags(cloud, &name).await, GONE)
        })
        .await?;
        // An instance profile left without its role (a run stopped between the
        // two deletes) is deleted by deleting the role of its name.
        let profiles = cloud.iam.list_instance_profiles().into_paginator().items();
        let profiles = sent("ListInstanceProfiles", profiles.send().try_collect()).await?;
        let orphans: Vec<_> = profiles
            .iter()
            .map(|profile| profile.instance_profile_name())
            .filter(|name| name.starts_with(&cloud.stack) && !found.iter().any(|r| r == name))
            .map(|name| (name.to_string(), name.to_string()))
            .collect();
        // Listings leave tags out; GetInstanceProfile has them.
        let orphans = in_stack_ids(cloud, orphans, |name| async move {
            let profile = get_profile(cloud, &name).await?;
            Ok(profile.map(|p| tag_map(p.tags().iter().map(|t| (t.key(), t.value())))))
        })
        .await?;
        found.extend(orphans);
        Ok(found)
    }
}

/// The role named `name`, `None` when there is none.
/// What a role read found, from its own calls or the account's listing.
struct RoleRead<'a> {
    name: &'a str,
    arn: &'a str,
    /// The trust policy document (URL-encoded as IAM answers it, or not).
    trust: Option<&'a str>,
    managed_policies: Vec<String>,
    /// The document of the inline policy [`INLINE_POLICY`], if it has one.
    inline: Option<&'a str>,
    instance_profile: bool,
    tags: Tags,
}

/// The role as the planner sees it.
fn observed(read: RoleRead<'_>) -> Result<Observed> {
    let trust = read
        .trust
        .map(parse_policy)
        .transpose()?
        .unwrap_or(Value::Null);
    let mut managed_policies = read.managed_policies;
    managed_policies.sort();
    let mut props = to_props(&IamRoleProps {
        name: read.name.to_string(),
        // A trust policy we did not write reads as null, so the plan replaces it.
        trust_service: trust_service(&trust),
        trust_account: trust_statements(&trust)
            .iter()
            .find(|s| s["Sid"] == RUN_LOCAL_SID)
            .and_then(|s| s["Principal"]["AWS"].as_str().map(str::to_string)),
        managed_policies,
        inline_policy: read.inline.map(parse_policy).transpose()?,
        instance_profile: read.instance_profile,
    });
    props.insert("tags".into(), tags_value(read.tags));
    let mut outputs = Props::from([
        ("name".to_string(), json!(read.name)),
        ("arn".to_string(), json!(read.arn)),
    ]);
    if read.instance_profile {
        outputs.insert("instance_profile".into(), json!(read.name));
    }
    Ok(Observed { props, outputs })
}

async fn get_role(cloud: &Cloud, name: &str) -> Result<Option<GetRoleOutput>> {
    let request = cloud.iam.get_role().role_name(name);
    absent(sent("GetRole", request.send()).await, GONE)
}

/// The instance profile named `name`, `None` when there is none.
async fn get_profile(
    cloud: &Cloud,
    name: &str,
) -> Result<Option<aws_sdk_iam::types::InstanceProfile>> {
    let request = cloud.iam.get_instance_profile().instance_profile_name(name);
    let out = absent(sent("GetInstanceProfile", request.send()).await, GONE)?;
    Ok(out.and_then(|out| out.instance_profile))
}

/// Whether the instance profile named `name` exists and holds the role `name`.
async fn profile_holds_role(cloud: &Cloud, name: &str) -> Result<bool> {
    Ok(get_profile(cloud, name)
        .await?
        .is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name)))
}

/// Creates the role's instance profile (tagged like the role) and puts the
/// role in it; either may already be done by an earlier attempt.
async fn put_profile(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let iam = &cloud.iam;
    let tags = Some(iam_tags(prop_tags(props)?)?).filter(|t| !t.is_empty());
    let request = iam.create_instance_profile().instance_profile_name(name);
    let request = request.set_tags(tags);
    match sent("CreateInstanceProfile", request.send()).await {
        Ok(_) => {}
        Err(e) if e.code == "EntityAlreadyExists" => {}
        Err(e) => return Err(e),
    }
    if profile_holds_role(cloud, name).await? {
        return Ok(());
    }
    let request = iam.add_role_to_instance_profile().role_name(name);
    let request = request.instance_profile_name(name);
    sent_ok("AddRoleToInstanceProfile", request.send()).await
}

/// Takes the role out of its instance profile and deletes the profile;
/// `Ok` when there is none.
async fn delete_profile(cloud: &Cloud, name: &str) -> Result<()> {
    let iam = &cloud.iam;
    if profile_holds_role(cloud, name).await? {
        let request = iam.remove_role_from_instance_profile().role_name(name);
        let request = request.instance_profile_name(name);
        deleted("RemoveRoleFromInstanceProfile", GONE, request.send()).await?;
    }
    let request = iam.delete_instance_profile().instance_profile_name(name);
    deleted("DeleteInstanceProfile", GONE, request.send()).await
}

fn iam_tags(tags: Vec<(String, String)>) -> Result<Vec<Tag>> {
    sdk_tags(tags, |k, v| Tag::builder().key(k).value(v).build())
}

async fn role_tags(cloud: &Cloud, name: &str) -> Result<Tags> {
    let tags = cloud.iam.list_role_tags().role_name(name).into_paginator();
    let tags = sent("ListRoleTags", tags.items().send().try_collect()).await?;
    Ok(tag_map(tags.iter().map(|t| (t.key(), t.value()))))
}

async fn attached(cloud: &Cloud, name: &str) -> Result<Vec<String>> {
    let request = cloud.iam.list_attached_role_policies().role_name(name);
    let items = request.into_paginator().items().send();
    let policies = sent("ListAttachedRolePolicies", items.try_collect()).await?;
    Ok(policies.into_iter().filter_map(|p| p.policy_arn).collect())
}

async fn attach(cloud: &Cloud, name: &str, arn: &str) -> Result<()> {
    let iam = &cloud.iam;
    let request = iam.attach_role_policy().role_name(name).policy_arn(arn);
    sent_ok("AttachRolePolicy", request.send()).await
}

async fn detach(cloud: &Cloud, name: &str, arn: &str) -> Result<()> {
    let iam = &cloud.iam;
    let request = iam.detach_role_policy().role_name(name).policy_arn(arn);
    sent_ok("DetachRolePolicy", request.send()).await
}

/// Puts the inline policy `document`, or deletes it when there is none.
async fn put_inline(cloud: &Cloud, name: &str, document: Option<&Value>) -> Result<()> {
    let iam = &cloud.iam;
    match document {
        None => {
            let request = iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(INLINE_POLICY);
            deleted("DeleteRolePolicy", GONE, request.send()).await
        }
        Some(document @ Value::Object(_)) => {
            let request = iam
                .put_role_policy()
                .role_name(name)
                .policy_name(INLINE_POLICY)
                .policy_document(document.to_string());
            sent_ok("PutRolePolicy", request.send()).await
        }
        Some(_) => Err(CloudError::invalid(
            "inline_policy",
            "property `inline_policy` must be a policy document or null",
        )),
    }
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let current = role_tags(cloud, name).await?.into_keys();
    let iam = &cloud.iam;
    let tag = |desired: Vec<(String, String)>| async move {
        let request = iam
            .tag_role()
            .role_name(name)
            .set_tags(Some(iam_tags(desired)?));
        sent_ok("TagRole", request.send()).await
    };
    let untag = |stale: Vec<String>| {
        let request = iam.untag_role().role_name(name).set_tag_keys(Some(stale));
        sent_ok("UntagRole", request.send())
    };
    replace_tags(props, current, tag, untag).await
}

/// A policy document as IAM returns it: URL-encoded on real IAM, sometimes
/// plain JSON on emulators.
pub(crate) fn parse_policy(text: &str) -> Result<Value> {
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    serde_json::from_str(&percent_encoding::percent_decode_str(text).decode_utf8_lossy())
        .map_err(|e| CloudError::invalid("GetRolePolicy", format!("policy is not JSON: {e}")))
}

/// The `Sid` of the trust statement `trust_account` adds (see `run-local`).
const RUN_LOCAL_SID: &str = "RunLocal";

/// The trust policy of a role: its service, and with `trust_account` (the
/// account's root principal) the principals of the stack's own account, so
/// `run-local` can take the role's credentials on a workstation.
fn trust_policy(p: &IamRoleProps) -> Result<Value> {
    let service = required(p.trust_service.as_deref(), "trust_service")?;
    let mut statements = vec![json!({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    })];
    if let Some(principal) = &p.trust_account {
        statements.push(json!({
            "Sid": RUN_LOCAL_SID,
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole",
        }));
    }
    Ok(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// Whether a trust policy allows `sts:AssumeRole` to the principals of
/// `account` (what `run-local` needs of the roles it takes).
pub(crate) fn trusts_account(policy: &Value, account: &str) -> bool {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    trust_statements(policy).iter().any(|s| {
        s["Effect"] == "Allow"
            && list(&s["Action"]).iter().any(|a| a == "sts:AssumeRole")
            && list(&s["Principal"]["AWS"])
                .iter()
                .any(|p| p == account || *p == format!("arn:aws:iam::{account}:root"))
    })
}

fn trust_statements(policy: &Value) -> Vec<Value> {
    match &policy["Statement"] {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        single => vec![single.clone()],
    }
}

/// The service principal of the trust policy's first statement.
fn trust_service(policy: &Value) -> Option<String> {
    let statements = trust_statements(policy);
    let statement = statements.first()?;
    match &statement["Principal"]["Service"] {
        Value::String(service) => Some(service.clone()),
        Value::Array(items) => items.first()?.as_str().map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_statement_for_the_account_counts_as_trust() {
        let service_only = json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
        assert!(!trusts_account(&service_only, "123456789012"));
        let with_account = trust_policy(&IamRoleProps {
            name: "ep-execution".into(),
            trust_service: Some("ecs-tasks.amazonaws.com".into()),
            trust_account: Some("arn:aws:iam::123456789012:root".into()),
            managed_policies: Vec::new(),
            inline_policy: None,
            instance_profile: false,
        })
        .expect("a trust policy");
        assert!(trusts_account(&with_account, "123456789012"));
        assert!(!trusts_account(&with_account, "999999999999"));
        let denied = json!({"Statement": {"Effect": "Deny", "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"}});
        assert!(!trusts_account(&denied, "123456789012"));
    }

    #[test]
    fn policies_decode_whether_encoded_or_plain() -> Result<()> {
        let plain = r#"{"Statement":[{"Principal":{"Service":"ecs-tasks.amazonaws.com"}}]}"#;
        let encoded = "%7B%22Statement%22%3A%20%5B%7B%22Principal%22%3A%20%7B%22Service%22%3A%20%22ecs-tasks.amazonaws.com%22%7D%7D%5D%7D";
        assert_eq!(parse_policy(plain)?, parse_policy(encoded)?);
        assert_eq!(
            trust_service(&parse_policy(encoded)?).as_deref(),
            Some("ecs-tasks.amazonaws.com")
        );
        Ok(())
    }
}
