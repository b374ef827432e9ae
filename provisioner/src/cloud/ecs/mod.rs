//! ECS on Fargate: clusters, task definitions (one container each) and
//! services, one kind per file. Every id is the resource's ARN. Here: what
//! they share (describing services and task definitions, tags, retagging,
//! the not-found codes) and the looks the service's wait takes.

mod ecs_cluster;
mod ecs_service;
mod task_definition;

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    self, ClusterField, DeploymentRolloutState, DesiredStatus, ServiceField, Tag,
    TaskDefinitionField, TaskDefinitionStatus,
};

pub use ecs_cluster::EcsCluster;
pub use ecs_service::{EcsService, HEALTH_CHECK_GRACE_SECONDS};
pub use task_definition::TaskDefinition;

use super::support::{absent, opt_str, prop_i32, prop_tags, replace_tags};
use super::{Cloud, CloudError, Result};
use crate::model::Props;

/// Stopped tasks an apply names when a deployment failed.
const STOPPED_TASKS_SHOWN: i32 = 3;

/// Error codes meaning the cluster or service is already gone.
const GONE: &[&str] = &["ClusterNotFoundException", "ServiceNotFoundException"];

/// A resource's tags, by key.
type Tags = BTreeMap<String, String>;

/// Whether the service has settled: all desired tasks running and its one
/// deployment completed.
pub async fn service_stable(cloud: &Cloud, service_arn: &str) -> Result<bool> {
    let Some(service) =
        describe_service(cloud, &cluster_of_service(service_arn), service_arn).await?
    else {
        return Ok(false);
    };
    let deployments = service.deployments();
    Ok(service.status() == Some("ACTIVE")
        && service.running_count() == service.desired_count()
        && deployments.len() == 1
        && deployments.first().and_then(|d| d.rollout_state())
            == Some(&DeploymentRolloutState::Completed))
}

/// Why the service's deployment of `task_definition` failed (the circuit
/// breaker stopped it, or already rolled the service back to an older
/// revision), with the reasons its last tasks stopped; `None` while no
/// deployment has failed.
pub async fn deployment_failure(
    cloud: &Cloud,
    service_arn: &str,
    task_definition: &str,
) -> Result<Option<String>> {
    let cluster = cluster_of_service(service_arn);
    let Some(service) = describe_service(cloud, &cluster, service_arn).await? else {
        return Ok(None);
    };
    let deployments = service.deployments();
    let failed = deployments
        .iter()
        .find(|d| d.rollout_state() == Some(&DeploymentRolloutState::Failed));
    let ours = deployments
        .iter()
        .any(|d| d.task_definition() == Some(task_definition));
    let mut text = match (failed, ours) {
        (Some(failed), _) => format!(
            "deployment {} failed: {}",
            failed.id().unwrap_or("?"),
            failed.rollout_state_reason().unwrap_or("no reason given")
        ),
        (None, false) if !deployments.is_empty() => format!(
            "the circuit breaker rolled the service back to {}",
            deployments
                .iter()
                .filter_map(|d| d.task_definition())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => return Ok(None),
    };
    let service_name = service.service_name().unwrap_or_default();
    for stopped in stopped_tasks(cloud, &cluster, service_name).await? {
        text.push_str("; ");
        text.push_str(&stopped);
    }
    Ok(Some(text))
}

/// Why the service's last tasks stopped: `task ID stopped: REASON
/// (CONTAINER exited with CODE: REASON)`, at most [`STOPPED_TASKS_SHOWN`].
async fn stopped_tasks(cloud: &Cloud, cluster: &str, service: &str) -> Result<Vec<String>> {
    let stopped = cloud
        .ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(DesiredStatus::Stopped)
        .max_results(STOPPED_TASKS_SHOWN)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("ListTasks", e))?;
    if stopped.task_arns().is_empty() {
        return Ok(Vec::new());
    }
    let tasks = cloud
        .ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(stopped.task_arns().to_vec()))
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeTasks", e))?;
    Ok(tasks
        .tasks()
        .iter()
        .map(|task| {
            let id = task
                .task_arn()
                .and_then(|a| a.rsplit('/').next())
                .unwrap_or("?");
            let reason = task.stopped_reason().unwrap_or("no reason given");
            let containers: String = task
                .containers()
                .iter()
                .map(|c| {
                    let name = c.name().unwrap_or("?");
                    let ran = match c.exit_code() {
                        Some(code) => format!("{name} exited with {code}"),
                        None => format!("{name} did not run"),
                    };
                    match c.reason() {
                        Some(why) => format!(" ({ran}: {why})"),
                        None => format!(" ({ran})"),
                    }
                })
                .collect();
            format!("task {id} stopped: {reason}{containers}")
        })
        .collect())
}

/// Every active cluster, with its tags.
async fn active_clusters(cloud: &Cloud) -> Result<Vec<types::Cluster>> {
    let mut cluster_arns = Vec::new();
    let mut pages = cloud.ecs.list_clusters().into_paginator().items().send();
    while let Some(arn) = pages.next().await {
        cluster_arns.push(arn.map_err(|e| CloudError::from_sdk("ListClusters", e))?);
    }
    let mut active = Vec::new();
    for chunk in cluster_arns.chunks(100) {
        let out = cloud
            .ecs
            .describe_clusters()
            .set_clusters(Some(chunk.to_vec()))
            .include(ClusterField::Tags)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeClusters", e))?;
        active.extend(
            out.clusters()
                .iter()
                .filter(|c| c.cluster_arn().is_some() && c.status() == Some("ACTIVE"))
                .cloned(),
        );
    }
    Ok(active)
}

/// The active task definition with its tags; `None` when missing or inactive.
async fn describe_task_definition(
    cloud: &Cloud,
    id: &str,
) -> Result<Option<(types::TaskDefinition, Tags)>> {
    match cloud
        .ecs
        .describe_task_definition()
        .task_definition(id)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
    {
        Ok(out) => {
            let tags = ecs_tags(out.tags());
            Ok(out
                .task_definition
                .filter(|t| t.status() == Some(&TaskDefinitionStatus::Active))
                .map(|t| (t, tags)))
        }
        Err(e) => {
            let e = CloudError::from_sdk("DescribeTaskDefinition", e);
            // ECS answers a missing revision with a generic ClientException.
            if e.code == "ClientException" && e.message.contains("Unable to describe") {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// The service (any status) in `cluster`; `None` when it or the cluster is missing.
async fn describe_service(
    cloud: &Cloud,
    cluster: &str,
    service: &str,
) -> Result<Option<types::Service>> {
    let described = cloud
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .include(ServiceField::Tags)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeServices", e));
    Ok(absent(described, GONE)?.and_then(|out| out.services().first().cloned()))
}

/// Sets exactly the desired tags on `arn`, which has the tags `current`.
async fn retag(cloud: &Cloud, arn: &str, current: Tags, props: &Props) -> Result<()> {
    let tag = |desired: Vec<(String, String)>| async {
        cloud
            .ecs
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(ecs_tag_list(desired)))
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("TagResource", e))
    };
    let untag = |stale: Vec<String>| async {
        cloud
            .ecs
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("UntagResource", e))
    };
    replace_tags(props, current.into_keys(), tag, untag).await
}

/// The desired tags of `props`, as the create calls take them.
fn prop_ecs_tags(props: &Props) -> Result<Vec<Tag>> {
    Ok(ecs_tag_list(prop_tags(props)?))
}

fn ecs_tag_list(tags: Vec<(String, String)>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn ecs_tags(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

/// `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME` → `CLUSTER` (old-style
/// ARNs without a cluster live in `default`).
fn cluster_of_service(arn: &str) -> String {
    let resource = arn.rsplit_once(":service/").map_or(arn, |(_, r)| r);
    match resource.split_once('/') {
        Some((cluster, _)) => cluster.to_string(),
        None => "default".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_arns_name_their_cluster() {
        assert_eq!(
            cluster_of_service("arn:aws:ecs:r:1:service/main/api"),
            "main"
        );
        assert_eq!(cluster_of_service("arn:aws:ecs:r:1:service/api"), "default");
    }
}
