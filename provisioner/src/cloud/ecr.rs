//! ECR repositories: scan on push, tag mutability, a lifecycle policy
//! keeping the last `keep_images` images, and tags. The id is the
//! repository name. Tags are mutable: task definitions pin digests, and the
//! version and commit tags move to each new build of them.

use async_trait::async_trait;
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Repository, Tag};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::resource::{ResourceKind, Update};
use super::support::{
    absent, deleted, from_props, in_stack_ids, look_at, name_and_arn, not_in_place, ours_id,
    prop_tags, replace_tags, required, sdk_tags, sent, sent_ok, tag_map, tags_value, to_props,
    vanished, Tags,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What ECR answers for a repository that is not there.
const GONE: &[&str] = &["RepositoryNotFoundException"];

/// A repository's attributes, in the order a plan lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcrRepositoryProps {
    /// Images the lifecycle policy keeps; `None` without a policy of ours.
    pub keep_images: Option<i64>,
    /// The repository's name, its id.
    pub name: String,
    /// Whether pushed images are scanned.
    pub scan_on_push: bool,
    /// `MUTABLE` or `IMMUTABLE`; `None` when ECR does not say.
    pub tag_mutability: Option<String>,
}

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
        let p: EcrRepositoryProps = from_props(props)?;
        let repository = describe(cloud, &p.name).await?;
        let tags = look_at(
            repository,
            |r| async move { tags_of(cloud, arn_of(&r)?).await },
        );
        let tags = tags.await?;
        Ok(ours_id(cloud, address, tags, p.name))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(repository) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let arn = arn_of(&repository)?;
        let policy = cloud.ecr.get_lifecycle_policy().repository_name(id);
        let policy = sent("GetLifecyclePolicy", policy.send()).await;
        let Some(policy) = absent(absent(policy, &["LifecyclePolicyNotFoundException"]), GONE)?
        else {
            return Ok(None);
        };
        let mut props = to_props(&EcrRepositoryProps {
            name: id.to_string(),
            scan_on_push: repository
                .image_scanning_configuration()
                .is_some_and(|c| c.scan_on_push()),
            tag_mutability: repository
                .image_tag_mutability()
                .map(|m| m.as_str().to_string()),
            keep_images: policy.and_then(|out| keep_images_of(out.lifecycle_policy_text()?)),
        });
        props.insert("tags".into(), tags_value(tags_of(cloud, arn).await?));
        let url = repository.repository_uri().unwrap_or_default();
        let mut outputs = name_and_arn(id, arn);
        outputs.insert("url".into(), json!(url));
        let registry = url.split('/').next().unwrap_or_default();
        outputs.insert("registry".into(), json!(registry));
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: EcrRepositoryProps = from_props(props)?;
        let tags = ecr_tags(prop_tags(props)?)?;
        let ecr = &cloud.ecr;
        let request = ecr.create_repository().repository_name(&p.name);
        let request = request
            .image_tag_mutability(tag_mutability(&p)?)
            .image_scanning_configuration(scanning(&p))
            .set_tags(Some(tags).filter(|t| !t.is_empty()));
        sent_ok("CreateRepository", request.send()).await?;
        put_lifecycle(cloud, &p.name, p.keep_images).await?;
        Ok(p.name)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: EcrRepositoryProps = from_props(props)?;
        let ecr = &cloud.ecr;
        for attribute in changed {
            match attribute.as_str() {
                "scan_on_push" => {
                    let request = ecr.put_image_scanning_configuration().repository_name(id);
                    let request = request.image_scanning_configuration(scanning(&p));
                    sent_ok("PutImageScanningConfiguration", request.send()).await?
                }
                "keep_images" => put_lifecycle(cloud, id, p.keep_images).await?,
                "tag_mutability" => {
                    let request = ecr.put_image_tag_mutability().repository_name(id);
                    let request = request.image_tag_mutability(tag_mutability(&p)?);
                    sent_ok("PutImageTagMutability", request.send()).await?
                }
                "tags" => retag(cloud, id, props).await?,
                other => return Err(not_in_place("UpdateRepository", other)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        // force: the repository goes with its images.
        let request = cloud.ecr.delete_repository().repository_name(id);
        deleted("DeleteRepository", GONE, request.force(true).send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let items = cloud.ecr.describe_repositories().into_paginator().items();
        let repositories = sent("DescribeRepositories", items.send().try_collect()).await?;
        let mut candidates = Vec::new();
        for repository in &repositories {
            let arn = arn_of(repository)?;
            if let Some(name) = repository.repository_name() {
                candidates.push((name.to_string(), arn));
            }
        }
        in_stack_ids(cloud, candidates, |arn| async move {
            tags_of(cloud, arn).await.map(Some)
        })
        .await
    }
}

/// The repository named `name`, `None` when there is none.
async fn describe(cloud: &Cloud, name: &str) -> Result<Option<Repository>> {
    let request = cloud.ecr.describe_repositories().repository_names(name);
    let out = sent("DescribeRepositories", request.send()).await;
    Ok(absent(out, GONE)?.and_then(|out| out.repositories().first().cloned()))
}

fn arn_of(repository: &Repository) -> Result<&str> {
    repository
        .repository_arn()
        .ok_or_else(|| CloudError::invalid("DescribeRepositories", "repository without an ARN"))
}

async fn tags_of(cloud: &Cloud, arn: &str) -> Result<Tags> {
    let request = cloud.ecr.list_tags_for_resource().resource_arn(arn);
    let out = sent("ListTagsForResource", request.send()).await?;
    Ok(tag_map(out.tags().iter().map(|t| (t.key(), t.value()))))
}

fn ecr_tags(tags: Vec<(String, String)>) -> Result<Vec<Tag>> {
    sdk_tags(tags, |k, v| Tag::builder().key(k).value(v).build())
}

fn scanning(p: &EcrRepositoryProps) -> ImageScanningConfiguration {
    ImageScanningConfiguration::builder()
        .scan_on_push(p.scan_on_push)
        .build()
}

fn tag_mutability(p: &EcrRepositoryProps) -> Result<ImageTagMutability> {
    let mutability = required(p.tag_mutability.as_deref(), "tag_mutability")?;
    Ok(ImageTagMutability::from(mutability))
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

/// `keep_images` from a policy written by [`lifecycle_text`]; `None` for any other.
fn keep_images_of(text: &str) -> Option<i64> {
    let policy: Value = serde_json::from_str(text).ok()?;
    let rules = policy["rules"].as_array()?;
    let selection = &rules.first()?["selection"];
    (rules.len() == 1 && selection["countType"] == "imageCountMoreThan")
        .then(|| selection["countNumber"].as_i64())
        .flatten()
}

async fn put_lifecycle(cloud: &Cloud, name: &str, keep: Option<i64>) -> Result<()> {
    let text = lifecycle_text(required(keep, "keep_images")?);
    let request = cloud.ecr.put_lifecycle_policy().repository_name(name);
    let request = request.lifecycle_policy_text(text);
    sent_ok("PutLifecyclePolicy", request.send()).await
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, name: &str, props: &Props) -> Result<()> {
    let repository = describe(cloud, name).await?;
    let repository = repository.ok_or_else(|| vanished("TagResource", "repository", name))?;
    let arn = arn_of(&repository)?;
    let current = tags_of(cloud, arn).await?.into_keys();
    let ecr = &cloud.ecr;
    let add = |desired: Vec<(String, String)>| async move {
        let request = ecr.tag_resource().resource_arn(arn);
        let request = request.set_tags(Some(ecr_tags(desired)?));
        sent_ok("TagResource", request.send()).await
    };
    let remove = |stale: Vec<String>| {
        let request = ecr.untag_resource().resource_arn(arn);
        sent_ok("UntagResource", request.set_tag_keys(Some(stale)).send())
    };
    replace_tags(props, current, add, remove).await
}
