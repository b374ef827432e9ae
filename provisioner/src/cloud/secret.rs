//! SSM SecureString parameters holding a secret generated at creation. The
//! value is never read back, returned or logged: `read` only describes the
//! parameter. The id is the parameter name.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ssm::types::{
    ParameterMetadata, ParameterStringFilter, ParameterType, ResourceTypeForTagging, Tag,
};
use base64::Engine;
use serde_json::json;

use super::resource::ResourceKind;
use super::support::{
    absent, gone_ok, in_stack, ours, prop_str, prop_tags, replace_tags, tags_value,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What SSM answers for a parameter that is not there.
const GONE: &[&str] = &["ParameterNotFound"];

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
        let name = prop_str(props, "name")?;
        if describe(cloud, name).await?.is_none() {
            return Ok(None);
        }
        let tags = tags_of(cloud, name).await?;
        Ok(ours(cloud, &tags, address).then(|| name.to_string()))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(parameter) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let arn = match parameter.arn() {
            Some(arn) => arn.to_string(),
            None => fallback_arn(cloud, id).await?,
        };
        let tags = tags_of(cloud, id).await?;
        let props = Props::from([
            ("name".to_string(), json!(id)),
            (
                "description".to_string(),
                json!(parameter.description().unwrap_or_default()),
            ),
            ("tags".to_string(), tags_value(tags)),
        ]);
        let outputs = Props::from([
            ("name".to_string(), json!(id)),
            ("arn".to_string(), json!(arn)),
        ]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let name = prop_str(props, "name")?;
        let description = prop_str(props, "description")?;
        let mut request = cloud
            .ssm
            .put_parameter()
            .name(name)
            .r#type(ParameterType::SecureString)
            .value(generate_secret())
            // The API rejects an empty description.
            .set_description(Some(description.to_string()).filter(|d| !d.is_empty()));
        for (key, value) in prop_tags(props)? {
            request = request.tags(tag(key, value)?);
        }
        request
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("PutParameter", e))?;
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
                "tags" => retag(cloud, id, props).await?,
                other => {
                    return Err(CloudError::invalid(
                        "UpdateParameter",
                        format!("`{other}` cannot change in place"),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .ssm
            .delete_parameter()
            .name(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("DeleteParameter", e));
        gone_ok(deleted, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = cloud
                .ssm
                .describe_parameters()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("DescribeParameters", e))?;
            for parameter in out.parameters() {
                let Some(name) = parameter.name() else {
                    continue;
                };
                if in_stack(cloud, &tags_of(cloud, name).await?) {
                    found.push(name.to_string());
                }
            }
            match out.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => return Ok(found),
            }
        }
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
        .map_err(|e| CloudError::invalid("DescribeParameters", e.to_string()))?;
    let mut token: Option<String> = None;
    loop {
        let listed = cloud
            .ssm
            .describe_parameters()
            .parameter_filters(filter.clone())
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeParameters", e));
        let Some(out) = absent(listed, GONE)? else {
            return Ok(None);
        };
        if let Some(found) = out.parameters().iter().find(|p| p.name() == Some(name)) {
            return Ok(Some(found.clone()));
        }
        // Filtered pages may come back empty with a token to go on.
        match out.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(None),
        }
    }
}

/// The ARN when DescribeParameters leaves it out (older emulators): the
/// account comes from the ECR registry id, which is the account id.
async fn fallback_arn(cloud: &Cloud, name: &str) -> Result<String> {
    let registry = cloud
        .ecr
        .describe_registry()
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeRegistry", e))?;
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

async fn tags_of(cloud: &Cloud, name: &str) -> Result<BTreeMap<String, String>> {
    let out = cloud
        .ssm
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ListTagsForResource", e))?;
    Ok(out
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect())
}

fn tag(key: String, value: String) -> Result<Tag> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| CloudError::invalid("Tag", e.to_string()))
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let current = tags_of(cloud, name).await?.into_keys();
    let add = |desired: Vec<(String, String)>| async {
        let tags = desired
            .into_iter()
            .map(|(k, v)| tag(k, v))
            .collect::<Result<Vec<_>>>()?;
        cloud
            .ssm
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .set_tags(Some(tags))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("AddTagsToResource", e))
    };
    let remove = |stale: Vec<String>| async {
        cloud
            .ssm
            .remove_tags_from_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("RemoveTagsFromResource", e))
    };
    replace_tags(props, current, add, remove).await
}
