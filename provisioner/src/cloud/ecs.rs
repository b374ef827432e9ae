//! ECS on Fargate: clusters, task definitions (one container each) and
//! services. Every id is the resource's ARN.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ClusterField, ClusterSetting, ClusterSettingName,
    Compatibility, ContainerDefinition, CpuArchitecture, DeploymentCircuitBreaker,
    DeploymentConfiguration, DeploymentRolloutState, DesiredStatus, HealthCheck, KeyValuePair,
    LaunchType, LoadBalancer, LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode,
    OsFamily, PortMapping, PropagateTags, RuntimePlatform, Secret, Service, ServiceField,
    SortOrder, Tag, TaskDefinition, TaskDefinitionFamilyStatus, TaskDefinitionField,
    TaskDefinitionStatus, TransportProtocol,
};
use serde_json::{Map, Value};

use super::support::{prop_bool, prop_i64, prop_str, prop_strings, prop_tags, stale_tag_keys, tags_value};
use super::{Cloud, CloudError, Observed, Result};
use crate::model::{Kind, Props, ADDRESS_TAG, STACK_TAG};

/// How long `delete` waits for a service to become inactive.
const SERVICE_DELETE_TIMEOUT: Duration = Duration::from_secs(600);
/// Health check grace period of a service behind a load balancer: how long
/// the load balancer's failing checks of a new task are ignored. It covers
/// a cold Fargate start (ENI, image pull: up to about 90 s) and the
/// service's own start (under 1 s to `/health/ready`, see BENCHMARKS.md),
/// with room for the broker connection's first retries.
pub const HEALTH_CHECK_GRACE_SECONDS: i32 = 120;
/// Stopped tasks an apply names when a deployment failed.
const STOPPED_TASKS_SHOWN: i32 = 3;

/// A resource's tags, by key.
type Tags = BTreeMap<String, String>;

/// See the module contract in [`super`].
pub async fn find(
    cloud: &Cloud,
    kind: Kind,
    address: &str,
    props: &Props,
) -> Result<Option<String>> {
    let ours = |tags: &Tags| {
        tags.get(STACK_TAG) == Some(&cloud.stack)
            && tags.get(ADDRESS_TAG).map(String::as_str) == Some(address)
    };
    match kind {
        Kind::EcsCluster => Ok(describe_cluster(cloud, prop_str(props, "name")?)
            .await?
            .filter(|c| ours(&ecs_tags(c.tags())))
            .and_then(|c| c.cluster_arn().map(str::to_string))),
        Kind::TaskDefinition => {
            // Newest first: the first one carrying our tags is the one.
            for arn in active_revisions(cloud, prop_str(props, "family")?).await? {
                if let Some((_, tags)) = describe_task_definition(cloud, &arn).await? {
                    if ours(&tags) {
                        return Ok(Some(arn));
                    }
                }
            }
            Ok(None)
        }
        Kind::EcsService => {
            let cluster = prop_str(props, "cluster_arn")?;
            Ok(describe_service(cloud, cluster, prop_str(props, "name")?)
                .await?
                .filter(|s| s.status() == Some("ACTIVE") && ours(&ecs_tags(s.tags())))
                .and_then(|s| s.service_arn().map(str::to_string)))
        }
        other => Err(not_ours(other)),
    }
}

/// See the module contract in [`super`].
pub async fn read(cloud: &Cloud, kind: Kind, id: &str) -> Result<Option<Observed>> {
    match kind {
        Kind::EcsCluster => read_cluster(cloud, id).await,
        Kind::TaskDefinition => read_task_definition(cloud, id).await,
        Kind::EcsService => read_service(cloud, id).await,
        other => Err(not_ours(other)),
    }
}

/// See the module contract in [`super`].
pub async fn create(cloud: &Cloud, kind: Kind, _address: &str, props: &Props) -> Result<String> {
    let tags = Some(tags_of_props(props)?);
    match kind {
        Kind::EcsCluster => {
            let out = cloud
                .ecs
                .create_cluster()
                .cluster_name(prop_str(props, "name")?)
                .settings(insights(prop_bool(props, "container_insights")?))
                .set_tags(tags)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("CreateCluster", e))?;
            out.cluster()
                .and_then(|c| c.cluster_arn())
                .map(str::to_string)
                .ok_or_else(|| CloudError::invalid("CreateCluster", "no cluster ARN"))
        }
        Kind::TaskDefinition => {
            let out = cloud
                .ecs
                .register_task_definition()
                .family(prop_str(props, "family")?)
                .cpu(prop_i64(props, "cpu")?.to_string())
                .memory(prop_i64(props, "memory")?.to_string())
                .network_mode(NetworkMode::Awsvpc)
                .requires_compatibilities(Compatibility::Fargate)
                .runtime_platform(
                    RuntimePlatform::builder()
                        .operating_system_family(OsFamily::Linux)
                        .cpu_architecture(CpuArchitecture::from(prop_str(
                            props,
                            "cpu_architecture",
                        )?))
                        .build(),
                )
                .execution_role_arn(prop_str(props, "execution_role_arn")?)
                .task_role_arn(prop_str(props, "task_role_arn")?)
                .container_definitions(container_definition(props)?)
                .set_tags(tags)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("RegisterTaskDefinition", e))?;
            out.task_definition()
                .and_then(|t| t.task_definition_arn())
                .map(str::to_string)
                .ok_or_else(|| {
                    CloudError::invalid("RegisterTaskDefinition", "no task definition ARN")
                })
        }
        Kind::EcsService => create_service(cloud, props, tags).await,
        other => Err(not_ours(other)),
    }
}

/// See the module contract in [`super`].
pub async fn update(
    cloud: &Cloud,
    kind: Kind,
    id: &str,
    props: &Props,
    changed: &[String],
) -> Result<()> {
    let has = |name: &str| changed.iter().any(|c| c == name);
    match kind {
        Kind::EcsCluster => {
            if has("container_insights") {
                // UpdateCluster takes the same settings as UpdateClusterSettings,
                // which moto does not implement.
                cloud
                    .ecs
                    .update_cluster()
                    .cluster(id)
                    .settings(insights(prop_bool(props, "container_insights")?))
                    .send()
                    .await
                    .map_err(|e| CloudError::from_sdk("UpdateCluster", e))?;
            }
        }
        Kind::EcsService => {
            if has("desired_count") || has("task_definition_arn") {
                let mut request = cloud
                    .ecs
                    .update_service()
                    .cluster(cluster_of_service(id))
                    .service(id);
                if has("desired_count") {
                    request = request.desired_count(prop_i32(props, "desired_count")?);
                }
                if has("task_definition_arn") {
                    request = request.task_definition(prop_str(props, "task_definition_arn")?);
                }
                request
                    .send()
                    .await
                    .map_err(|e| CloudError::from_sdk("UpdateService", e))?;
            }
        }
        Kind::TaskDefinition => {
            return Err(CloudError::invalid(
                "update",
                "a task definition is never changed in place",
            ))
        }
        other => return Err(not_ours(other)),
    }
    if has("tags") {
        update_tags(cloud, kind, id, props).await?;
    }
    Ok(())
}

/// See the module contract in [`super`].
pub async fn delete(cloud: &Cloud, kind: Kind, id: &str) -> Result<()> {
    match kind {
        Kind::EcsCluster => match cloud.ecs.delete_cluster().cluster(id).send().await {
            Ok(_) => Ok(()),
            Err(e) => ok_if(CloudError::from_sdk("DeleteCluster", e), GONE),
        },
        Kind::TaskDefinition => {
            if describe_task_definition(cloud, id).await?.is_none() {
                return Ok(());
            }
            cloud
                .ecs
                .deregister_task_definition()
                .task_definition(id)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("DeregisterTaskDefinition", e))?;
            Ok(())
        }
        Kind::EcsService => delete_service(cloud, id).await,
        other => Err(not_ours(other)),
    }
}

/// See the module contract in [`super`].
pub async fn list_tagged(cloud: &Cloud) -> Result<Vec<(Kind, String)>> {
    let mut found = Vec::new();
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
        for cluster in out.clusters() {
            let (Some(arn), Some("ACTIVE")) = (cluster.cluster_arn(), cluster.status()) else {
                continue;
            };
            if is_stack(cloud, &ecs_tags(cluster.tags())) {
                found.push((Kind::EcsCluster, arn.to_string()));
            }
            active.push(arn.to_string());
        }
    }
    for cluster in active {
        let mut service_arns = Vec::new();
        let mut pages = cloud
            .ecs
            .list_services()
            .cluster(&cluster)
            .into_paginator()
            .items()
            .send();
        while let Some(arn) = pages.next().await {
            match arn {
                Ok(arn) => service_arns.push(arn),
                Err(e) => {
                    // A cluster deleted meanwhile has no services left.
                    let e = CloudError::from_sdk("ListServices", e);
                    if GONE.contains(&e.code.as_str()) {
                        break;
                    }
                    return Err(e);
                }
            }
        }
        for chunk in service_arns.chunks(10) {
            let out = cloud
                .ecs
                .describe_services()
                .cluster(&cluster)
                .set_services(Some(chunk.to_vec()))
                .include(ServiceField::Tags)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("DescribeServices", e))?;
            for service in out.services() {
                if service.status() == Some("INACTIVE")
                    || !is_stack(cloud, &ecs_tags(service.tags()))
                {
                    continue;
                }
                if let Some(arn) = service.service_arn() {
                    found.push((Kind::EcsService, arn.to_string()));
                }
            }
        }
    }
    // Task definition families are named after the stack.
    let mut families = cloud
        .ecs
        .list_task_definition_families()
        .family_prefix(&cloud.stack)
        .status(TaskDefinitionFamilyStatus::Active)
        .into_paginator()
        .items()
        .send();
    let mut family_names = Vec::new();
    while let Some(family) = families.next().await {
        family_names
            .push(family.map_err(|e| CloudError::from_sdk("ListTaskDefinitionFamilies", e))?);
    }
    for family in family_names {
        let revisions = active_revisions(cloud, &family).await?;
        for arn in revisions {
            if let Some((_, tags)) = describe_task_definition(cloud, &arn).await? {
                if is_stack(cloud, &tags) {
                    found.push((Kind::TaskDefinition, arn));
                }
            }
        }
    }
    Ok(found)
}

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

/// The family's active revisions, newest first.
async fn active_revisions(cloud: &Cloud, family: &str) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut pages = cloud
        .ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc)
        .into_paginator()
        .items()
        .send();
    while let Some(arn) = pages.next().await {
        arns.push(arn.map_err(|e| CloudError::from_sdk("ListTaskDefinitions", e))?);
    }
    // moto ignores `sort`, so order by revision here.
    let revision = |arn: &String| {
        arn.rsplit_once(':')
            .and_then(|(_, r)| r.parse::<u64>().ok())
            .unwrap_or(0)
    };
    arns.sort_by_key(|arn| std::cmp::Reverse(revision(arn)));
    Ok(arns)
}

async fn read_cluster(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let Some(cluster) = describe_cluster(cloud, id).await? else {
        return Ok(None);
    };
    let insights = cluster.settings().iter().any(|s| {
        s.name() == Some(&ClusterSettingName::ContainerInsights)
            && matches!(s.value(), Some("enabled" | "enhanced"))
    });
    let name = opt_str(cluster.cluster_name());
    let props = Props::from([
        ("name".into(), name.clone()),
        ("container_insights".into(), Value::Bool(insights)),
        ("tags".into(), tags_value(ecs_tags(cluster.tags()))),
    ]);
    let outputs = Props::from([
        ("arn".into(), opt_str(cluster.cluster_arn())),
        ("name".into(), name),
    ]);
    Ok(Some(Observed { props, outputs }))
}

async fn read_task_definition(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let Some((task, tags)) = describe_task_definition(cloud, id).await? else {
        return Ok(None);
    };
    let number = |text: Option<&str>| {
        text.and_then(|t| t.parse::<i64>().ok())
            .map_or(Value::Null, Value::from)
    };
    let container = match task.container_definitions().first() {
        Some(c) => container_value(c),
        None => Value::Null,
    };
    let props = Props::from([
        ("family".into(), opt_str(task.family())),
        ("cpu".into(), number(task.cpu())),
        ("memory".into(), number(task.memory())),
        (
            "execution_role_arn".into(),
            opt_str(task.execution_role_arn()),
        ),
        ("task_role_arn".into(), opt_str(task.task_role_arn())),
        (
            "cpu_architecture".into(),
            opt_str(
                task.runtime_platform()
                    .and_then(|p| p.cpu_architecture())
                    .map(|a| a.as_str()),
            ),
        ),
        ("container".into(), container),
        ("tags".into(), tags_value(tags)),
    ]);
    let outputs = Props::from([("arn".into(), opt_str(task.task_definition_arn()))]);
    Ok(Some(Observed { props, outputs }))
}

async fn read_service(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let Some(service) = describe_service(cloud, &cluster_of_service(id), id).await? else {
        return Ok(None);
    };
    if service.status() == Some("INACTIVE") {
        return Ok(None);
    }
    let vpc = service
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration());
    let mut subnets = vpc.map(|v| v.subnets().to_vec()).unwrap_or_default();
    subnets.sort();
    let mut groups = vpc
        .map(|v| v.security_groups().to_vec())
        .unwrap_or_default();
    groups.sort();
    let public = vpc.and_then(|v| v.assign_public_ip()) == Some(&AssignPublicIp::Enabled);
    let (target_group, container_name, container_port) = match service.load_balancers().first() {
        Some(lb) => (
            opt_str(lb.target_group_arn()),
            opt_str(lb.container_name()),
            lb.container_port().map_or(Value::Null, Value::from),
        ),
        // Without a load balancer the container is the task definition's one.
        None => {
            let name = match service.task_definition() {
                Some(arn) => describe_task_definition(cloud, arn)
                    .await?
                    .and_then(|(t, _)| {
                        t.container_definitions()
                            .first()
                            .and_then(|c| c.name())
                            .map(str::to_string)
                    }),
                None => None,
            };
            (
                Value::Null,
                name.map_or(Value::Null, Value::String),
                Value::Null,
            )
        }
    };
    let name = opt_str(service.service_name());
    let props = Props::from([
        ("name".into(), name.clone()),
        ("cluster_arn".into(), opt_str(service.cluster_arn())),
        (
            "task_definition_arn".into(),
            opt_str(service.task_definition()),
        ),
        ("desired_count".into(), Value::from(service.desired_count())),
        ("subnet_ids".into(), Value::from(subnets)),
        ("security_group_ids".into(), Value::from(groups)),
        ("assign_public_ip".into(), Value::Bool(public)),
        ("target_group_arn".into(), target_group),
        ("container_name".into(), container_name),
        ("container_port".into(), container_port),
        ("tags".into(), tags_value(ecs_tags(service.tags()))),
    ]);
    let outputs = Props::from([
        ("arn".into(), opt_str(service.service_arn())),
        ("name".into(), name),
    ]);
    Ok(Some(Observed { props, outputs }))
}

async fn create_service(cloud: &Cloud, props: &Props, tags: Option<Vec<Tag>>) -> Result<String> {
    let public = if prop_bool(props, "assign_public_ip")? {
        AssignPublicIp::Enabled
    } else {
        AssignPublicIp::Disabled
    };
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(prop_strings(props, "subnet_ids")?))
        .set_security_groups(Some(prop_strings(props, "security_group_ids")?))
        .assign_public_ip(public)
        .build()
        .map_err(|e| CloudError::invalid("CreateService", e.to_string()))?;
    let deployment = DeploymentConfiguration::builder()
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .build();
    let mut request = cloud
        .ecs
        .create_service()
        .cluster(prop_str(props, "cluster_arn")?)
        .service_name(prop_str(props, "name")?)
        .task_definition(prop_str(props, "task_definition_arn")?)
        .desired_count(prop_i32(props, "desired_count")?)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        )
        .deployment_configuration(deployment)
        .propagate_tags(PropagateTags::Service)
        .enable_ecs_managed_tags(true)
        .set_tags(tags);
    if let Some(Value::String(target_group)) = props.get("target_group_arn") {
        request = request
            .load_balancers(
                LoadBalancer::builder()
                    .target_group_arn(target_group)
                    .container_name(prop_str(props, "container_name")?)
                    .container_port(prop_i32(props, "container_port")?)
                    .build(),
            )
            .health_check_grace_period_seconds(HEALTH_CHECK_GRACE_SECONDS);
    }
    let out = request
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("CreateService", e))?;
    out.service()
        .and_then(|s| s.service_arn())
        .map(str::to_string)
        .ok_or_else(|| CloudError::invalid("CreateService", "no service ARN"))
}

async fn delete_service(cloud: &Cloud, id: &str) -> Result<()> {
    let cluster = cluster_of_service(id);
    match describe_service(cloud, &cluster, id).await? {
        None => return Ok(()),
        Some(s) if s.status() == Some("INACTIVE") => return Ok(()),
        Some(_) => {}
    }
    // Scaling to zero first lets the tasks drain through the load balancer.
    if let Err(e) = cloud
        .ecs
        .update_service()
        .cluster(&cluster)
        .service(id)
        .desired_count(0)
        .send()
        .await
    {
        ok_if(
            CloudError::from_sdk("UpdateService", e),
            &[
                "ServiceNotActiveException",
                "ServiceNotFoundException",
                "ClusterNotFoundException",
            ],
        )?;
    }
    if let Err(e) = cloud
        .ecs
        .delete_service()
        .cluster(&cluster)
        .service(id)
        .force(true)
        .send()
        .await
    {
        ok_if(CloudError::from_sdk("DeleteService", e), GONE)?;
    }
    // The service holds its target group and security groups until it is inactive.
    let deadline = Instant::now() + SERVICE_DELETE_TIMEOUT;
    loop {
        match describe_service(cloud, &cluster, id).await? {
            None => return Ok(()),
            Some(s) if s.status() == Some("INACTIVE") => return Ok(()),
            Some(_) if Instant::now() > deadline => {
                return Err(CloudError {
                    operation: "DeleteService".into(),
                    code: "ResourceInUse".into(),
                    message: format!("{id} is still draining 10 minutes after its deletion"),
                })
            }
            Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// The cluster by name or ARN; `None` when missing or inactive.
async fn describe_cluster(
    cloud: &Cloud,
    cluster: &str,
) -> Result<Option<aws_sdk_ecs::types::Cluster>> {
    let out = cloud
        .ecs
        .describe_clusters()
        .clusters(cluster)
        .include(ClusterField::Tags)
        .include(ClusterField::Settings)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeClusters", e))?;
    Ok(out
        .clusters()
        .iter()
        .find(|c| c.status() != Some("INACTIVE"))
        .cloned())
}

/// The active task definition with its tags; `None` when missing or inactive.
async fn describe_task_definition(
    cloud: &Cloud,
    id: &str,
) -> Result<Option<(TaskDefinition, Tags)>> {
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
async fn describe_service(cloud: &Cloud, cluster: &str, service: &str) -> Result<Option<Service>> {
    match cloud
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .include(ServiceField::Tags)
        .send()
        .await
    {
        Ok(out) => Ok(out.services().first().cloned()),
        Err(e) => {
            let e = CloudError::from_sdk("DescribeServices", e);
            if GONE.contains(&e.code.as_str()) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

async fn update_tags(cloud: &Cloud, kind: Kind, arn: &str, props: &Props) -> Result<()> {
    let desired: Tags = prop_tags(props)?.into_iter().collect();
    let current = match kind {
        Kind::EcsCluster => describe_cluster(cloud, arn)
            .await?
            .map(|c| ecs_tags(c.tags()))
            .unwrap_or_default(),
        _ => describe_service(cloud, &cluster_of_service(arn), arn)
            .await?
            .map(|s| ecs_tags(s.tags()))
            .unwrap_or_default(),
    };
    let stale = stale_tag_keys(current.keys(), props)?;
    if !stale.is_empty() {
        cloud
            .ecs
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("UntagResource", e))?;
    }
    if !desired.is_empty() {
        cloud
            .ecs
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags_of_props(props)?))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("TagResource", e))?;
    }
    Ok(())
}

fn container_definition(props: &Props) -> Result<ContainerDefinition> {
    let container = match props.get("container") {
        Some(Value::Object(map)) => map.clone().into_iter().collect::<Props>(),
        _ => {
            return Err(CloudError::invalid(
                "container",
                "property `container` must be a table",
            ))
        }
    };
    let name = prop_str(&container, "name")?;
    let port = match container.get("port") {
        None | Some(Value::Null) => None,
        Some(_) => Some(prop_i32(&container, "port")?),
    };
    let mut definition = ContainerDefinition::builder()
        .name(name)
        .image(prop_str(&container, "image")?)
        .essential(true);
    if let Some(port) = port {
        definition = definition.port_mappings(
            PortMapping::builder()
                .container_port(port)
                .protocol(TransportProtocol::Tcp)
                .build(),
        );
    }
    for (key, value) in string_map(&container, "environment")? {
        definition = definition.environment(KeyValuePair::builder().name(key).value(value).build());
    }
    for (key, arn) in string_map(&container, "secrets")? {
        let secret = Secret::builder()
            .name(key)
            .value_from(arn)
            .build()
            .map_err(|e| CloudError::invalid("secrets", e.to_string()))?;
        definition = definition.secrets(secret);
    }
    let logs = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", prop_str(&container, "log_group")?)
        .options("awslogs-region", prop_str(&container, "log_region")?)
        .options("awslogs-stream-prefix", name)
        .build()
        .map_err(|e| CloudError::invalid("log_group", e.to_string()))?;
    definition = definition.log_configuration(logs);
    let command = prop_strings(&container, "health_check")?;
    if !command.is_empty() {
        let check = HealthCheck::builder()
            .set_command(Some(command))
            .interval(10)
            .retries(3)
            .start_period(15)
            .build()
            .map_err(|e| CloudError::invalid("health_check", e.to_string()))?;
        definition = definition.health_check(check);
    }
    Ok(definition.build())
}

/// The container as the `container` property.
fn container_value(c: &ContainerDefinition) -> Value {
    let port = c
        .port_mappings()
        .first()
        .and_then(|p| p.container_port())
        .map_or(Value::Null, Value::from);
    let environment: Map<String, Value> = c
        .environment()
        .iter()
        .filter_map(|kv| {
            Some((
                kv.name()?.to_string(),
                Value::String(kv.value()?.to_string()),
            ))
        })
        .collect();
    let secrets: Map<String, Value> = c
        .secrets()
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                Value::String(s.value_from().to_string()),
            )
        })
        .collect();
    let options = c.log_configuration().and_then(|l| l.options());
    let option = |key: &str| opt_str(options.and_then(|o| o.get(key)).map(String::as_str));
    let health = c.health_check().map_or(Value::Null, |h| {
        Value::Array(
            h.command()
                .iter()
                .map(|c| Value::from(c.as_str()))
                .collect(),
        )
    });
    let mut map = Map::new();
    map.insert("name".into(), opt_str(c.name()));
    map.insert("image".into(), opt_str(c.image()));
    map.insert("port".into(), port);
    map.insert("environment".into(), Value::Object(environment));
    map.insert("secrets".into(), Value::Object(secrets));
    map.insert("log_group".into(), option("awslogs-group"));
    map.insert("log_region".into(), option("awslogs-region"));
    map.insert("health_check".into(), health);
    Value::Object(map)
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

fn string_map(props: &Props, name: &str) -> Result<BTreeMap<String, String>> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .ok_or_else(|| {
                        CloudError::invalid(name, format!("`{name}.{k}` must be a string"))
                    })
            })
            .collect(),
        Some(_) => Err(CloudError::invalid(
            name,
            format!("property `{name}` must be a table"),
        )),
    }
}

fn insights(enabled: bool) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(if enabled { "enabled" } else { "disabled" })
        .build()
}

fn tags_of_props(props: &Props) -> Result<Vec<Tag>> {
    Ok(prop_tags(props)?
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect())
}

fn ecs_tags(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

fn is_stack(cloud: &Cloud, tags: &Tags) -> bool {
    tags.get(STACK_TAG) == Some(&cloud.stack)
}

fn prop_i32(props: &Props, name: &str) -> Result<i32> {
    i32::try_from(prop_i64(props, name)?)
        .map_err(|_| CloudError::invalid(name, format!("property `{name}` is out of range")))
}

fn opt_str(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// Error codes meaning the cluster or service is already gone.
const GONE: &[&str] = &["ClusterNotFoundException", "ServiceNotFoundException"];

fn ok_if(e: CloudError, codes: &[&str]) -> Result<()> {
    if codes.contains(&e.code.as_str()) {
        Ok(())
    } else {
        Err(e)
    }
}

fn not_ours(kind: Kind) -> CloudError {
    CloudError::invalid("ecs", format!("{kind} is not an ECS kind"))
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

super::legacy::legacy_family!();
