//! IAM roles: a trust policy for one service, attached managed policies and
//! one inline policy named [`INLINE_POLICY`]; with `instance_profile`, an
//! instance profile of the same name holding the role (for EC2). The id is
//! the role name.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;
use serde_json::{json, Value};

use super::support::{prop_str, prop_strings, prop_tags, stale_tag_keys, tags_value};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props, ADDRESS_TAG, STACK_TAG};

/// Name of the role's one inline policy.
pub const INLINE_POLICY: &str = "event-platform";

/// See the module contract in [`super`].
pub async fn find(
    cloud: &Cloud,
    kind: Kind,
    address: &str,
    props: &Props,
) -> Result<Option<String>> {
    ensure_role(kind)?;
    let name = prop_str(props, "name")?;
    if !role_exists(cloud, name).await? {
        return Ok(None);
    }
    let tags = role_tags(cloud, name).await?;
    let ours = tags.get(STACK_TAG) == Some(&cloud.stack)
        && tags.get(ADDRESS_TAG).map(String::as_str) == Some(address);
    Ok(ours.then(|| name.to_string()))
}

/// See the module contract in [`super`].
pub async fn read(cloud: &Cloud, kind: Kind, id: &str) -> Result<Option<Observed>> {
    ensure_role(kind)?;
    let role = match cloud.iam.get_role().role_name(id).send().await {
        Ok(out) => match out.role {
            Some(role) => role,
            None => return Ok(None),
        },
        Err(e) => {
            let e = CloudError::from_sdk("GetRole", e);
            return if e.code == "NoSuchEntity" {
                Ok(None)
            } else {
                Err(e)
            };
        }
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

    let inline = match cloud
        .iam
        .get_role_policy()
        .role_name(id)
        .policy_name(INLINE_POLICY)
        .send()
        .await
    {
        Ok(out) => parse_policy(out.policy_document())?,
        Err(e) => {
            let e = CloudError::from_sdk("GetRolePolicy", e);
            if e.code != "NoSuchEntity" {
                return Err(e);
            }
            Value::Null
        }
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

/// See the module contract in [`super`].
pub async fn create(cloud: &Cloud, kind: Kind, _address: &str, props: &Props) -> Result<String> {
    ensure_role(kind)?;
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

/// See the module contract in [`super`].
pub async fn update(
    cloud: &Cloud,
    kind: Kind,
    id: &str,
    props: &Props,
    changed: &[String],
) -> Result<()> {
    ensure_role(kind)?;
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
            "tags" => update_tags(cloud, id, props).await?,
            other => {
                return Err(CloudError::invalid(
                    "update",
                    format!("{kind} cannot change `{other}` in place"),
                ))
            }
        }
    }
    Ok(())
}

/// See the module contract in [`super`].
pub async fn delete(cloud: &Cloud, kind: Kind, id: &str) -> Result<()> {
    ensure_role(kind)?;
    let gone = |e: &CloudError| e.code == "NoSuchEntity";
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
    match result {
        Err(e) if gone(&e) => Ok(()),
        other => other,
    }
}

/// See the module contract in [`super`].
pub async fn list_tagged(cloud: &Cloud) -> Result<Vec<(Kind, String)>> {
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
        let tags = match role_tags(cloud, &name).await {
            Ok(tags) => tags,
            Err(e) if e.code == "NoSuchEntity" => continue,
            Err(e) => return Err(e),
        };
        if tags.get(STACK_TAG) == Some(&cloud.stack) {
            found.push((Kind::IamRole, name));
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
        if name.starts_with(&cloud.stack) && !found.iter().any(|(_, role)| role == name) {
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
            .await;
        let tags = match profile.map_err(|e| CloudError::from_sdk("GetInstanceProfile", e)) {
            Ok(out) => out
                .instance_profile()
                .map(|p| p.tags().to_vec())
                .unwrap_or_default(),
            Err(e) if e.code == "NoSuchEntity" => continue,
            Err(e) => return Err(e),
        };
        if tags
            .iter()
            .any(|t| t.key() == STACK_TAG && t.value() == cloud.stack)
        {
            found.push((Kind::IamRole, name));
        }
    }
    Ok(found)
}

fn wants_profile(props: &Props) -> bool {
    props.get("instance_profile").and_then(Value::as_bool) == Some(true)
}

/// Whether the instance profile named `name` exists and holds the role `name`.
async fn profile_holds_role(cloud: &Cloud, name: &str) -> Result<bool> {
    match cloud
        .iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .instance_profile()
            .is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name))),
        Err(e) => match CloudError::from_sdk("GetInstanceProfile", e) {
            e if e.code == "NoSuchEntity" => Ok(false),
            e => Err(e),
        },
    }
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
    let gone = |e: &CloudError| e.code == "NoSuchEntity";
    if profile_holds_role(cloud, name).await? {
        let removed = cloud
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("RemoveRoleFromInstanceProfile", e));
        match removed {
            Err(e) if !gone(&e) => return Err(e),
            _ => {}
        }
    }
    let deleted = cloud
        .iam
        .delete_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DeleteInstanceProfile", e));
    match deleted {
        Err(e) if !gone(&e) => Err(e),
        _ => Ok(()),
    }
}

fn ensure_role(kind: Kind) -> Result<()> {
    if kind == Kind::IamRole {
        Ok(())
    } else {
        Err(CloudError::invalid(
            "iam",
            format!("{kind} is not an IAM kind"),
        ))
    }
}

fn iam_tag(key: &str, value: &str) -> Result<Tag> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| CloudError::invalid("Tag", e.to_string()))
}

async fn role_exists(cloud: &Cloud, name: &str) -> Result<bool> {
    match cloud.iam.get_role().role_name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = CloudError::from_sdk("GetRole", e);
            if e.code == "NoSuchEntity" {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
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
            match cloud
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(INLINE_POLICY)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    let e = CloudError::from_sdk("DeleteRolePolicy", e);
                    if e.code == "NoSuchEntity" {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }
            }
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

async fn update_tags(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let desired: BTreeMap<String, String> = prop_tags(props)?.into_iter().collect();
    let current = role_tags(cloud, name).await?;
    let stale = stale_tag_keys(current.keys(), props)?;
    if !stale.is_empty() {
        cloud
            .iam
            .untag_role()
            .role_name(name)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("UntagRole", e))?;
    }
    if !desired.is_empty() {
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
            .map_err(|e| CloudError::from_sdk("TagRole", e))?;
    }
    Ok(())
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

super::legacy::legacy_family!();
