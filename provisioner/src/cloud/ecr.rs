//! ECR repositories: scan on push, tag mutability, a lifecycle policy
//! keeping the last `keep_images` images, and tags. The id is the
//! repository name. Tags are mutable: task definitions pin digests, and the
//! version and commit tags move to each new build of them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Repository, Tag};
use serde_json::{json, Value};

use super::resource::ResourceKind;
use super::support::{
    absent, gone_ok, in_stack, ours, prop_bool, prop_i64, prop_str, prop_tags, replace_tags,
    tags_value,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What ECR answers for a repository that is not there.
const GONE: &[&str] = &["RepositoryNotFoundException"];

/// An ECR repository.
pub struct EcrRepository;

#[async_trait]
impl ResourceKind for EcrRepository {
    fn updatable(&self) -> &'static [&'static str] {
        &["scan_on_push", "tag_mutability", "keep_images", "tags"]
    }

    // After the images in it and the services and task definitions pulling them.
    fn destroy_rank(&self) -> u8 {
        4
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let name = prop_str(props, "name")?;
        let Some(repository) = describe(cloud, name).await? else {
            return Ok(None);
        };
        let tags = tags_of(cloud, arn_of(&repository)?).await?;
        Ok(ours(cloud, &tags, address).then(|| name.to_string()))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(repository) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let arn = arn_of(&repository)?;
        let scan_on_push = repository
            .image_scanning_configuration()
            .is_some_and(|c| c.scan_on_push());
        let policy = cloud
            .ecr
            .get_lifecycle_policy()
            .repository_name(id)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("GetLifecyclePolicy", e));
        let Some(policy) = absent(absent(policy, &["LifecyclePolicyNotFoundException"]), GONE)?
        else {
            return Ok(None);
        };
        let keep_images = policy.map_or(Value::Null, |out| {
            keep_images_of(out.lifecycle_policy_text().unwrap_or_default())
        });
        let tags = tags_of(cloud, arn).await?;
        let tag_mutability = repository
            .image_tag_mutability()
            .map_or(Value::Null, |m| json!(m.as_str()));
        let url = repository.repository_uri().unwrap_or_default();
        let props = Props::from([
            ("name".to_string(), json!(id)),
            ("scan_on_push".to_string(), json!(scan_on_push)),
            ("tag_mutability".to_string(), tag_mutability),
            ("keep_images".to_string(), keep_images),
            ("tags".to_string(), tags_value(tags)),
        ]);
        let outputs = Props::from([
            ("name".to_string(), json!(id)),
            ("arn".to_string(), json!(arn)),
            ("url".to_string(), json!(url)),
            (
                "registry".to_string(),
                json!(url.split('/').next().unwrap_or_default()),
            ),
        ]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let name = prop_str(props, "name")?;
        let mut request = cloud
            .ecr
            .create_repository()
            .repository_name(name)
            .image_tag_mutability(ImageTagMutability::from(prop_str(props, "tag_mutability")?))
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(prop_bool(props, "scan_on_push")?)
                    .build(),
            );
        for (key, value) in prop_tags(props)? {
            request = request.tags(tag(key, value)?);
        }
        request
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateRepository", e))?;
        put_lifecycle(cloud, name, prop_i64(props, "keep_images")?).await?;
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
                "scan_on_push" => {
                    cloud
                        .ecr
                        .put_image_scanning_configuration()
                        .repository_name(id)
                        .image_scanning_configuration(
                            ImageScanningConfiguration::builder()
                                .scan_on_push(prop_bool(props, "scan_on_push")?)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| CloudError::from_sdk("PutImageScanningConfiguration", e))?;
                }
                "keep_images" => put_lifecycle(cloud, id, prop_i64(props, "keep_images")?).await?,
                "tag_mutability" => {
                    cloud
                        .ecr
                        .put_image_tag_mutability()
                        .repository_name(id)
                        .image_tag_mutability(ImageTagMutability::from(prop_str(
                            props,
                            "tag_mutability",
                        )?))
                        .send()
                        .await
                        .map_err(|e| CloudError::from_sdk("PutImageTagMutability", e))?;
                }
                "tags" => retag(cloud, id, props).await?,
                other => {
                    return Err(CloudError::invalid(
                        "UpdateRepository",
                        format!("`{other}` cannot change in place"),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        // force: the repository goes with its images.
        let deleted = cloud
            .ecr
            .delete_repository()
            .repository_name(id)
            .force(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("DeleteRepository", e));
        gone_ok(deleted, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = cloud
                .ecr
                .describe_repositories()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("DescribeRepositories", e))?;
            for repository in out.repositories() {
                let tags = tags_of(cloud, arn_of(repository)?).await?;
                if in_stack(cloud, &tags) {
                    if let Some(name) = repository.repository_name() {
                        found.push(name.to_string());
                    }
                }
            }
            match out.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => return Ok(found),
            }
        }
    }
}

/// The repository named `name`, `None` when there is none.
async fn describe(cloud: &Cloud, name: &str) -> Result<Option<Repository>> {
    let out = cloud
        .ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeRepositories", e));
    Ok(absent(out, GONE)?.and_then(|out| out.repositories().first().cloned()))
}

fn arn_of(repository: &Repository) -> Result<&str> {
    repository
        .repository_arn()
        .ok_or_else(|| CloudError::invalid("DescribeRepositories", "repository without an ARN"))
}

async fn tags_of(cloud: &Cloud, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = cloud
        .ecr
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ListTagsForResource", e))?;
    Ok(out
        .tags()
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

/// The lifecycle policy text keeping the last `keep` images.
fn lifecycle_text(keep: i64) -> String {
    json!({"rules": [{
        "rulePriority": 1,
        "description": format!("keep the last {keep} images"),
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
        "action": {"type": "expire"}
    }]})
    .to_string()
}

/// `keep_images` from a policy written by [`lifecycle_text`]; `Null` for any other.
fn keep_images_of(text: &str) -> Value {
    let policy: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let rule = &policy["rules"][0];
    match (
        policy["rules"].as_array().map(Vec::len),
        rule["selection"]["countType"].as_str(),
    ) {
        (Some(1), Some("imageCountMoreThan")) => rule["selection"]["countNumber"].clone(),
        _ => Value::Null,
    }
}

async fn put_lifecycle(cloud: &Cloud, name: &str, keep: i64) -> Result<()> {
    cloud
        .ecr
        .put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(lifecycle_text(keep))
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("PutLifecyclePolicy", e))?;
    Ok(())
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let Some(repository) = describe(cloud, name).await? else {
        return Err(CloudError::invalid(
            "TagResource",
            format!("repository {name} is gone"),
        ));
    };
    let arn = arn_of(&repository)?;
    let current = tags_of(cloud, arn).await?.into_keys();
    let add = |desired: Vec<(String, String)>| async {
        let tags = desired
            .into_iter()
            .map(|(k, v)| tag(k, v))
            .collect::<Result<Vec<_>>>()?;
        cloud
            .ecr
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("TagResource", e))
    };
    let remove = |stale: Vec<String>| async {
        cloud
            .ecr
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk("UntagResource", e))
    };
    replace_tags(props, current, add, remove).await
}
