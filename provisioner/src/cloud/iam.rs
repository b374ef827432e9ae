//! IAM roles: a trust policy for one service, attached managed policies and
//! one inline policy named [`INLINE_POLICY`]; with `instance_profile`, an
//! instance profile of the same name holding the role (for EC2). The id is
//! the role name.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_iam::operation::get_role::GetRoleOutput;
use aws_sdk_iam::types::Tag;
use serde_json::{json, Value};

use super::resource::ResourceKind;
use super::support::{
    absent, gone_ok, in_stack, ours, prop_str, prop_strings, prop_tags, replace_tags, tags_value,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// Name of the role's one inline policy.
pub const INLINE_POLICY: &str = "event-platform";

/// What IAM answers for a role, profile or policy that is not there.
const GONE: &[&str] = &["NoSuchEntity"];

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
        let name = prop_str(props, "name")?;
        if get_role(cloud, name).await?.is_none() {
            return Ok(None);
        }
        let tags = role_tags(cloud, name).await?;
        Ok(ours(cloud, &tags, address).then(|| name.to_string()))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(role) = get_role(cloud, id).await?.and_then(|out| out.role) else {
            return Ok(None);
        };
        let trust = role
            .assume_role_policy_document()
            .map(parse_policy)
            .transpose()?
            .unwrap_or(Value::Null);
        // A trust policy we did not write reads as null, so the plan replaces it.
        let trust_service = trust_service(&trust).map_or(Value::Null, Value::String);
        let trust_account = trust_statements(&trust)
            .iter()
            .find(|s| s["Sid"] == RUN_LOCAL_SID)
            .map_or(Value::Null, |s| s["Principal"]["AWS"].clone());

        let mut managed = attached(cloud, id).await?;
        managed.sort();

        let inline = cloud
            .iam
            .get_role_policy()
            .role_name(id)
            .policy_name(INLINE_POLICY)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("GetRolePolicy", e));
        let inline = match absent(inline, GONE)? {
            Some(out) => parse_policy(out.policy_document())?,
            None => Value::Null,
        };
        let tags = role_tags(cloud, id).await?;
        let profile = profile_holds_role(cloud, id).await?;

        let mut props = Props::from([
            (
                "name".to_string(),
                Value::String(role.role_name().to_string()),
            ),
            ("trust_service".to_string(), trust_service),
            ("trust_account".to_string(), trust_account),
            ("managed_policies".to_string(), Value::from(managed)),
            ("inline_policy".to_string(), inline),
            ("tags".to_string(), tags_value(tags)),
        ]);
        let mut outputs = Props::from([
            (
                "name".to_string(),
                Value::String(role.role_name().to_string()),
            ),
            ("arn".to_string(), Value::String(role.arn().to_string())),
        ]);
        if profile {
            props.insert("instance_profile".into(), Value::Bool(true));
            outputs.insert("instance_profile".into(), Value::String(id.to_string()));
        }
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let name = prop_str(props, "name")?;
        let trust = trust_policy(props)?;
        let mut request = cloud
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string());
        for (key, value) in prop_tags(props)? {
            request = request.tags(iam_tag(&key, &value)?);
        }
        request
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateRole", e))?;
        for arn in prop_strings(props, "managed_policies")? {
            attach(cloud, name, &arn).await?;
        }
        put_inline(cloud, name, props).await?;
        if wants_profile(props) {
            put_profile(cloud, name, props).await?;
        }
        Ok(name.to_string())
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
                "managed_policies" => {
                    let desired = prop_strings(props, "managed_policies")?;
                    let current = attached(cloud, id).await?;
                    for arn in desired.iter().filter(|a| !current.contains(a)) {
                        attach(cloud, id, arn).await?;
                    }
                    for arn in current.iter().filter(|a| !desired.contains(a)) {
                        detach(cloud, id, arn).await?;
                    }
                }
                "inline_policy" => put_inline(cloud, id, props).await?,
                "trust_account" => {
                    let trust = trust_policy(props)?;
                    cloud
                        .iam
                        .update_assume_role_policy()
                        .role_name(id)
                        .policy_document(trust.to_string())
                        .send()
                        .await
                        .map_err(|e| CloudError::from_sdk("UpdateAssumeRolePolicy", e))?;
                }
                "instance_profile" if wants_profile(props) => put_profile(cloud, id, props).await?,
                "instance_profile" => delete_profile(cloud, id).await?,
                "tags" => retag(cloud, id, props).await?,
                other => {
                    return Err(CloudError::invalid(
                        "update",
                        format!("iam_role cannot change `{other}` in place"),
                    ))
                }
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
            let mut names = cloud
                .iam
                .list_role_policies()
                .role_name(id)
                .into_paginator()
                .items()
                .send();
            let mut inline = Vec::new();
            while let Some(name) = names.next().await {
                inline.push(name.map_err(|e| CloudError::from_sdk("ListRolePolicies", e))?);
            }
            for name in inline {
                cloud
                    .iam
                    .delete_role_policy()
                    .role_name(id)
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| CloudError::from_sdk("DeleteRolePolicy", e))?;
            }
            cloud
                .iam
                .delete_role()
                .role_name(id)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("DeleteRole", e))?;
            Ok(())
        }
        .await;
        gone_ok(result, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut roles = cloud.iam.list_roles().into_paginator().items().send();
        let mut names = Vec::new();
        while let Some(role) = roles.next().await {
            let role = role.map_err(|e| CloudError::from_sdk("ListRoles", e))?;
            // Our role names all start with the stack's name.
            if role.role_name().starts_with(&cloud.stack) {
                names.push(role.role_name().to_string());
            }
        }
        for name in names {
            let Some(tags) = absent(role_tags(cloud, &name).await, GONE)? else {
                continue;
            };
            if in_stack(cloud, &tags) {
                found.push(name);
            }
        }
        // An instance profile left without its role (a run stopped between the
        // two deletes) is deleted by deleting the role of its name.
        let mut profiles = cloud
            .iam
            .list_instance_profiles()
            .into_paginator()
            .items()
            .send();
        let mut orphans = Vec::new();
        while let Some(profile) = profiles.next().await {
            let profile = profile.map_err(|e| CloudError::from_sdk("ListInstanceProfiles", e))?;
            let name = profile.instance_profile_name();
            if name.starts_with(&cloud.stack) && !found.iter().any(|role| role == name) {
                orphans.push(name.to_string());
            }
        }
        for name in orphans {
            // Listings leave tags out; GetInstanceProfile has them.
            let profile = cloud
                .iam
                .get_instance_profile()
                .instance_profile_name(&name)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("GetInstanceProfile", e));
            let Some(out) = absent(profile, GONE)? else {
                continue;
            };
            let tags: BTreeMap<String, String> = out
                .instance_profile()
                .map(|p| p.tags())
                .unwrap_or_default()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            if in_stack(cloud, &tags) {
                found.push(name);
            }
        }
        Ok(found)
    }
}

/// The role named `name`, `None` when there is none.
async fn get_role(cloud: &Cloud, name: &str) -> Result<Option<GetRoleOutput>> {
    let out = cloud
        .iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("GetRole", e));
    absent(out, GONE)
}

fn wants_profile(props: &Props) -> bool {
    props.get("instance_profile").and_then(Value::as_bool) == Some(true)
}

/// Whether the instance profile named `name` exists and holds the role `name`.
async fn profile_holds_role(cloud: &Cloud, name: &str) -> Result<bool> {
    let profile = cloud
        .iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("GetInstanceProfile", e));
    Ok(absent(profile, GONE)?.is_some_and(|out| {
        out.instance_profile()
            .is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name))
    }))
}

/// Creates the role's instance profile (tagged like the role) and puts the
/// role in it; either may already be done by an earlier attempt.
async fn put_profile(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let mut request = cloud
        .iam
        .create_instance_profile()
        .instance_profile_name(name);
    for (key, value) in prop_tags(props)? {
        request = request.tags(iam_tag(&key, &value)?);
    }
    match request.send().await {
        Ok(_) => {}
        Err(e) => match CloudError::from_sdk("CreateInstanceProfile", e) {
            e if e.code == "EntityAlreadyExists" => {}
            e => return Err(e),
        },
    }
    if profile_holds_role(cloud, name).await? {
        return Ok(());
    }
    cloud
        .iam
        .add_role_to_instance_profile()
        .instance_profile_name(name)
        .role_name(name)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("AddRoleToInstanceProfile", e))?;
    Ok(())
}

/// Takes the role out of its instance profile and deletes the profile;
/// `Ok` when there is none.
async fn delete_profile(cloud: &Cloud, name: &str) -> Result<()> {
    if profile_holds_role(cloud, name).await? {
        let removed = cloud
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("RemoveRoleFromInstanceProfile", e));
        gone_ok(removed, GONE)?;
    }
    let deleted = cloud
        .iam
        .delete_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| CloudError::from_sdk("DeleteInstanceProfile", e));
    gone_ok(deleted, GONE)
}

fn iam_tag(key: &str, value: &str) -> Result<Tag> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| CloudError::invalid("Tag", e.to_string()))
}

async fn role_tags(cloud: &Cloud, name: &str) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .iam
            .list_role_tags()
            .role_name(name)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("ListRoleTags", e))?;
        for tag in out.tags() {
            tags.insert(tag.key().to_string(), tag.value().to_string());
        }
        match out.marker() {
            Some(next) if out.is_truncated() => marker = Some(next.to_string()),
            _ => return Ok(tags),
        }
    }
}

async fn attached(cloud: &Cloud, name: &str) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut pages = cloud
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send();
    while let Some(policy) = pages.next().await {
        let policy = policy.map_err(|e| CloudError::from_sdk("ListAttachedRolePolicies", e))?;
        if let Some(arn) = policy.policy_arn() {
            arns.push(arn.to_string());
        }
    }
    Ok(arns)
}

async fn attach(cloud: &Cloud, name: &str, arn: &str) -> Result<()> {
    cloud
        .iam
        .attach_role_policy()
        .role_name(name)
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("AttachRolePolicy", e))?;
    Ok(())
}

async fn detach(cloud: &Cloud, name: &str, arn: &str) -> Result<()> {
    cloud
        .iam
        .detach_role_policy()
        .role_name(name)
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DetachRolePolicy", e))?;
    Ok(())
}

/// Puts the inline policy, or deletes it when the property is null.
async fn put_inline(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    match props.get("inline_policy") {
        None | Some(Value::Null) => {
            let deleted = cloud
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(INLINE_POLICY)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| CloudError::from_sdk("DeleteRolePolicy", e));
            gone_ok(deleted, GONE)
        }
        Some(document @ Value::Object(_)) => {
            cloud
                .iam
                .put_role_policy()
                .role_name(name)
                .policy_name(INLINE_POLICY)
                .policy_document(document.to_string())
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("PutRolePolicy", e))?;
            Ok(())
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
    let tag = |desired: Vec<(String, String)>| async move {
        let tags = desired
            .iter()
            .map(|(k, v)| iam_tag(k, v))
            .collect::<Result<Vec<_>>>()?;
        cloud
            .iam
            .tag_role()
            .role_name(name)
            .set_tags(Some(tags))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("TagRole", e))
    };
    let untag = |stale: Vec<String>| async move {
        cloud
            .iam
            .untag_role()
            .role_name(name)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("UntagRole", e))
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
fn trust_policy(props: &Props) -> Result<Value> {
    let service = prop_str(props, "trust_service")?;
    let mut statements = vec![json!({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    })];
    if let Some(principal) = props.get("trust_account").and_then(Value::as_str) {
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
        let with_account = trust_policy(&Props::from([
            (
                "trust_service".to_string(),
                json!("ecs-tasks.amazonaws.com"),
            ),
            (
                "trust_account".to_string(),
                json!("arn:aws:iam::123456789012:root"),
            ),
        ]))
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
