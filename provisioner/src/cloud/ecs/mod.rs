//! ECS on Fargate: clusters, task definitions (one container each) and
//! services, one kind per file. Every id is the resource's ARN. Here: what
//! they share (describing services and task definitions, finding and
//! listing clusters and services by their tags, retagging, the not-found
//! codes) and the looks the service's wait takes.

mod ecs_cluster;
mod ecs_service;
mod task_definition;

use aws_sdk_ecs::types::{
    self, ClusterField, DeploymentRolloutState, DesiredStatus, ServiceField, Tag,
    TaskDefinitionField, TaskDefinitionStatus,
};
use serde::Serialize;
use serde_json::json;

pub use ecs_cluster::{EcsCluster, EcsClusterProps};
pub use ecs_service::{EcsService, EcsServiceProps, HEALTH_CHECK_GRACE_SECONDS};
pub use task_definition::{ContainerProps, TaskDefinition, TaskDefinitionProps};

use super::support::{
    absent, in_stack, ours_id, prop_tags, replace_tags, sent, sent_ok, tag_map, tags_value,
    to_props, Tags,
};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// Stopped tasks an apply names when a deployment failed.
const STOPPED_TASKS_SHOWN: i32 = 3;

/// Error codes meaning the cluster or service is already gone.
const GONE: &[&str] = &["ClusterNotFoundException", "ServiceNotFoundException"];

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

/// The service at `arn` (any status); `None` when it or its cluster is gone.
pub async fn describe(cloud: &Cloud, arn: &str) -> Result<Option<types::Service>> {
    describe_service(cloud, &cluster_of_service(arn), arn).await
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
    let request = cloud
        .ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service);
    let request = request
        .desired_status(DesiredStatus::Stopped)
        .max_results(STOPPED_TASKS_SHOWN);
    let stopped = sent("ListTasks", request.send()).await?;
    if stopped.task_arns().is_empty() {
        return Ok(Vec::new());
    }
    let request = cloud.ecs.describe_tasks().cluster(cluster);
    let request = request.set_tasks(Some(stopped.task_arns().to_vec()));
    let tasks = sent("DescribeTasks", request.send()).await?;
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

/// What clusters and services both answer: their ARN, name and tags.
trait Described {
    /// Its ARN, its id.
    fn arn(&self) -> Option<&str>;
    /// Its name.
    fn name(&self) -> Option<&str>;
    /// Its tags, by key.
    fn tags_by_key(&self) -> Tags;
}

impl Described for types::Cluster {
    fn arn(&self) -> Option<&str> {
        self.cluster_arn()
    }

    fn name(&self) -> Option<&str> {
        self.cluster_name()
    }

    fn tags_by_key(&self) -> Tags {
        ecs_tags(self.tags())
    }
}

impl Described for types::Service {
    fn arn(&self) -> Option<&str> {
        self.service_arn()
    }

    fn name(&self) -> Option<&str> {
        self.service_name()
    }

    fn tags_by_key(&self) -> Tags {
        ecs_tags(self.tags())
    }
}

/// What `read` answers for the cluster or service `found`, whose
/// attributes are `typed`: those and its tags, and its `arn` and `name`
/// (null when ECS does not say) as outputs.
fn observed(found: &impl Described, typed: &impl Serialize) -> Observed {
    let mut props = to_props(typed);
    props.insert("tags".into(), tags_value(found.tags_by_key()));
    let outputs = Props::from([
        ("arn".into(), json!(found.arn())),
        ("name".into(), json!(found.name())),
    ]);
    Observed { props, outputs }
}

/// What `find` answers for what was `found`: its ARN when it is the
/// stack's resource at `address`.
fn ours_arn(cloud: &Cloud, address: &str, found: Option<impl Described>) -> Option<String> {
    let found = found?;
    let arn = found.arn()?.to_string();
    ours_id(cloud, address, Some(found.tags_by_key()), arn)
}

/// What `list_tagged` answers: the ARNs of those `found` that are the stack's.
fn in_stack_arns<'a, T: Described + 'a>(
    cloud: &Cloud,
    found: impl IntoIterator<Item = &'a T>,
) -> Vec<String> {
    found
        .into_iter()
        .filter(|f| in_stack(cloud, &f.tags_by_key()))
        .filter_map(|f| f.arn().map(str::to_string))
        .collect()
}

/// Every active cluster, with its tags.
async fn active_clusters(cloud: &Cloud) -> Result<Vec<types::Cluster>> {
    let pages = cloud.ecs.list_clusters().into_paginator().items().send();
    let cluster_arns = sent("ListClusters", pages.try_collect()).await?;
    let mut active = Vec::new();
    for chunk in cluster_arns.chunks(100) {
        let request = cloud.ecs.describe_clusters().include(ClusterField::Tags);
        let request = request.set_clusters(Some(chunk.to_vec()));
        let out = sent("DescribeClusters", request.send()).await?;
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
    let request = cloud.ecs.describe_task_definition().task_definition(id);
    let request = request.include(TaskDefinitionField::Tags);
    match sent("DescribeTaskDefinition", request.send()).await {
        Ok(out) => {
            let tags = ecs_tags(out.tags());
            Ok(out
                .task_definition
                .filter(|t| t.status() == Some(&TaskDefinitionStatus::Active))
                .map(|t| (t, tags)))
        }
        // ECS answers a missing revision with a generic ClientException.
        Err(e) if e.code == "ClientException" && e.message.contains("Unable to describe") => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The services (any status) of `cluster` among `services` (at most 10),
/// with their tags; none when the cluster is missing.
async fn describe_services(
    cloud: &Cloud,
    cluster: &str,
    services: &[String],
) -> Result<Vec<types::Service>> {
    let request = cloud.ecs.describe_services().cluster(cluster);
    let request = request
        .set_services(Some(services.to_vec()))
        .include(ServiceField::Tags);
    let described = sent("DescribeServices", request.send()).await;
    Ok(absent(described, GONE)?.map_or_else(Vec::new, |out| out.services().to_vec()))
}

/// The service (any status) in `cluster`; `None` when it or the cluster is missing.
async fn describe_service(
    cloud: &Cloud,
    cluster: &str,
    service: &str,
) -> Result<Option<types::Service>> {
    let services = describe_services(cloud, cluster, &[service.to_string()]).await?;
    Ok(services.into_iter().next())
}

/// Sets exactly the desired tags of `props` on `arn`, which is `current`
/// (`None`: it vanished, and has no tags).
async fn retag(
    cloud: &Cloud,
    arn: &str,
    current: Option<impl Described>,
    props: &Props,
) -> Result<()> {
    let current = current.map(|c| c.tags_by_key()).unwrap_or_default();
    let tag = |desired: Vec<(String, String)>| {
        let request = cloud.ecs.tag_resource().resource_arn(arn);
        let request = request.set_tags(Some(ecs_tag_list(desired)));
        sent_ok("TagResource", request.send())
    };
    let untag = |stale: Vec<String>| {
        let request = cloud.ecs.untag_resource().resource_arn(arn);
        sent_ok("UntagResource", request.set_tag_keys(Some(stale)).send())
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

/// An answer's tag list by key.
fn ecs_tags(tags: &[Tag]) -> Tags {
    tag_map(
        tags.iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))),
    )
}

/// The ARN a create call answered (`None`: an error of `operation` saying
/// there was no `what` ARN).
fn created(operation: &str, what: &str, arn: Option<&str>) -> Result<String> {
    arn.map(str::to_string)
        .ok_or_else(|| CloudError::invalid(operation, format!("no {what} ARN")))
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
