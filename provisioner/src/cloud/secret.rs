//! SSM SecureString parameters holding a secret generated at creation. The
//! value is never read back, returned or logged: `read` only describes the
//! parameter. The id is the parameter name.

use async_trait::async_trait;
use aws_sdk_ssm::types::{
    ParameterMetadata, ParameterStringFilter, ParameterType, ResourceTypeForTagging, Tag,
};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::resource::{ResourceKind, Update};
use super::support::{
    absent, deleted, from_props, in_stack_ids, look_at, name_and_arn, only_tags, ours_id,
    prop_tags, replace_tags, sdk_tags, sent, sent_ok, tag_map, tags_value, to_props, unbuilt, Tags,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What SSM answers for a parameter that is not there.
const GONE: &[&str] = &["ParameterNotFound"];

/// The resource type the tagging calls name for a parameter.
const PARAMETER: ResourceTypeForTagging = ResourceTypeForTagging::Parameter;

/// A parameter's attributes, in the order a plan lists them (its value is
/// no attribute: it is generated once and never read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretProps {
    /// What it is for; empty for none.
    pub description: String,
    /// The parameter's name, its id.
    pub name: String,
}

/// An SSM SecureString parameter.
pub struct SsmParameter;

#[async_trait]
impl ResourceKind for SsmParameter {
    // A new value would need the secret again; the parameter is only retagged.
    fn updatable(&self) -> &'static [&'static str] {
        &["tags"]
    }

    // After the services whose tasks read it.
    fn destroy_rank(&self) -> u8 {
        4
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: SecretProps = from_props(props)?;
        let parameter = describe(cloud, &p.name).await?;
        let tags = look_at(parameter, |_| tags_of(cloud, &p.name)).await?;
        Ok(ours_id(cloud, address, tags, p.name))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(parameter) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let arn = match parameter.arn() {
            Some(arn) => arn.to_string(),
            None => fallback_arn(cloud, id).await?,
        };
        let mut props = to_props(&SecretProps {
            name: id.to_string(),
            description: parameter.description().unwrap_or_default().to_string(),
        });
        props.insert("tags".into(), tags_value(tags_of(cloud, id).await?));
        let outputs = name_and_arn(id, &arn);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: SecretProps = from_props(props)?;
        let tags = ssm_tags(prop_tags(props)?)?;
        let request = cloud.ssm.put_parameter().name(&p.name);
        let request = request
            .r#type(ParameterType::SecureString)
            .value(generate_secret())
            // The API rejects an empty description.
            .set_description(Some(p.description).filter(|d| !d.is_empty()))
            .set_tags(Some(tags).filter(|t| !t.is_empty()));
        sent_ok("PutParameter", request.send()).await?;
        Ok(p.name)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        only_tags("UpdateParameter", changed, || retag(cloud, id, props)).await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.ssm.delete_parameter().name(id);
        deleted("DeleteParameter", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let pages = cloud.ssm.describe_parameters().into_paginator().send();
        let pages = sent("DescribeParameters", pages.try_collect()).await?;
        let names: Vec<_> = pages
            .iter()
            .flat_map(|page| page.parameters())
            .filter_map(|parameter| parameter.name())
            .map(|name| (name.to_string(), name.to_string()))
            .collect();
        in_stack_ids(cloud, names, |name| async move {
            tags_of(cloud, &name).await.map(Some)
        })
        .await
    }
}

/// 384 bits from the OS's CSPRNG (three v4 UUIDs' bytes), base64url: 64 characters.
fn generate_secret() -> String {
    let bytes: Vec<u8> = (0..3)
        .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The parameter's metadata (never its value), `None` when there is none.
async fn describe(cloud: &Cloud, name: &str) -> Result<Option<ParameterMetadata>> {
    let filter = ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(name)
        .build()
        .map_err(unbuilt("DescribeParameters"))?;
    let request = cloud.ssm.describe_parameters().parameter_filters(filter);
    // Filtered pages may come back empty with a token to go on: the
    // paginator goes on.
    let pages = request.into_paginator().send().try_collect();
    let Some(pages) = absent(sent("DescribeParameters", pages).await, GONE)? else {
        return Ok(None);
    };
    Ok(pages
        .iter()
        .flat_map(|page| page.parameters())
        .find(|p| p.name() == Some(name))
        .cloned())
}

/// The ARN when DescribeParameters leaves it out (older emulators): the
/// account comes from the ECR registry id, which is the account id.
async fn fallback_arn(cloud: &Cloud, name: &str) -> Result<String> {
    let registry = sent("DescribeRegistry", cloud.ecr.describe_registry().send()).await?;
    let account = registry
        .registry_id()
        .ok_or_else(|| CloudError::invalid("DescribeRegistry", "no registry id"))?;
    let path = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    };
    Ok(format!(
        "arn:aws:ssm:{}:{account}:parameter{path}",
        cloud.region
    ))
}

async fn tags_of(cloud: &Cloud, name: &str) -> Result<Tags> {
    let request = cloud.ssm.list_tags_for_resource().resource_type(PARAMETER);
    let request = request.resource_id(name);
    let out = sent("ListTagsForResource", request.send()).await?;
    Ok(tag_map(out.tag_list().iter().map(|t| (t.key(), t.value()))))
}

fn ssm_tags(tags: Vec<(String, String)>) -> Result<Vec<Tag>> {
    sdk_tags(tags, |k, v| Tag::builder().key(k).value(v).build())
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let current = tags_of(cloud, name).await?.into_keys();
    let ssm = &cloud.ssm;
    let add = |desired: Vec<(String, String)>| async move {
        let request = ssm.add_tags_to_resource().resource_type(PARAMETER);
        let request = request.resource_id(name).set_tags(Some(ssm_tags(desired)?));
        sent_ok("AddTagsToResource", request.send()).await
    };
    let remove = |stale: Vec<String>| {
        let request = ssm.remove_tags_from_resource().resource_type(PARAMETER);
        let request = request.resource_id(name).set_tag_keys(Some(stale));
        sent_ok("RemoveTagsFromResource", request.send())
    };
    replace_tags(props, current, add, remove).await
}
