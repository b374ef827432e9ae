//! An ECS service on Fargate: tasks of one task definition in the stack's
//! subnets, optionally behind a target group, deployed with the circuit
//! breaker. Its id and `arn` output are its ARN; it also outputs its `name`.

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    LaunchType, LoadBalancer, NetworkConfiguration, PropagateTags, Service,
};
use serde::{Deserialize, Serialize};

use super::{
    active_clusters, cluster_of_service, created, deployment_failure, describe_service,
    describe_services, describe_task_definition, in_stack_arns, observed, ours_arn, prop_ecs_tags,
    retag, service_stable, GONE,
};
use crate::cloud::alb;
use crate::cloud::resource::{Probe, Readiness, ResourceKind, Update};
use crate::cloud::support::{
    absent, deleted, fit_i32, from_props, not_in_place, required, sent, sent_ok, unbuilt,
    wait_until,
};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// Health check grace period of a service behind a load balancer: how long
/// the load balancer's failing checks of a new task are ignored. It covers
/// a cold Fargate start (ENI, image pull: up to about 90 s) and the
/// service's own start (under 1 s to `/health/ready`, see BENCHMARKS.md),
/// with room for the broker connection's first retries.
pub const HEALTH_CHECK_GRACE_SECONDS: i32 = 120;

/// A service's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsServiceProps {
    /// Whether its tasks get a public IP (to reach ECR and SSM without a
    /// NAT gateway).
    pub assign_public_ip: bool,
    /// The ARN of its cluster.
    pub cluster_arn: Option<String>,
    /// The container the load balancer sends to; without a load balancer,
    /// the task definition's one.
    pub container_name: Option<String>,
    /// The container's port the load balancer sends to; `None` without one.
    pub container_port: Option<i64>,
    /// Tasks ECS keeps running.
    pub desired_count: i64,
    /// The service's name.
    pub name: Option<String>,
    /// Its tasks' security groups, sorted.
    pub security_group_ids: Vec<String>,
    /// The subnets its tasks run in, sorted.
    pub subnet_ids: Vec<String>,
    /// The target group its tasks register with; `None` without a load
    /// balancer.
    pub target_group_arn: Option<String>,
    /// The task definition revision it runs.
    pub task_definition_arn: Option<String>,
}

/// An ECS service.
pub struct EcsService;

#[async_trait]
impl ResourceKind for EcsService {
    fn updatable(&self) -> &'static [&'static str] {
        &["desired_count", "task_definition_arn", "tags"]
    }

    // First: its tasks hold its task definition, target group and security groups.
    fn destroy_rank(&self) -> u8 {
        0
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: EcsServiceProps = from_props(props)?;
        let cluster = required(p.cluster_arn.as_deref(), "cluster_arn")?;
        let service = describe_service(cloud, cluster, required(p.name.as_deref(), "name")?);
        let service = service.await?.filter(|s| s.status() == Some("ACTIVE"));
        Ok(ours_arn(cloud, address, service))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let service = describe_service(cloud, &cluster_of_service(id), id).await?;
        match service.filter(live) {
            Some(service) => observe(cloud, &service).await.map(Some),
            None => Ok(None),
        }
    }

    /// One DescribeServices per cluster (ten services a call) for all.
    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        let mut clusters: Vec<String> = ids.iter().map(|id| cluster_of_service(id)).collect();
        clusters.sort();
        clusters.dedup();
        let mut found = Vec::new();
        for cluster in &clusters {
            let in_cluster: Vec<String> = ids
                .iter()
                .filter(|id| cluster_of_service(id) == *cluster)
                .cloned()
                .collect();
            for chunk in in_cluster.chunks(10) {
                found.extend(describe_services(cloud, cluster, chunk).await?);
            }
        }
        let mut each = Vec::with_capacity(ids.len());
        for id in ids {
            let service = found.iter().find(|s| s.service_arn() == Some(id.as_str()));
            each.push(match service.filter(|s| live(s)) {
                Some(service) => Some(observe(cloud, service).await?),
                None => None,
            });
        }
        Ok(each)
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: EcsServiceProps = from_props(props)?;
        let tags = prop_ecs_tags(props)?;
        let public = if p.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        };
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(p.subnet_ids))
            .set_security_groups(Some(p.security_group_ids))
            .assign_public_ip(public)
            .build()
            .map_err(unbuilt("CreateService"))?;
        let network = NetworkConfiguration::builder().awsvpc_configuration(vpc);
        let circuit_breaker = DeploymentCircuitBreaker::builder()
            .enable(true)
            .rollback(true);
        let deployment = DeploymentConfiguration::builder()
            .deployment_circuit_breaker(circuit_breaker.build())
            .build();
        let mut request = cloud
            .ecs
            .create_service()
            .cluster(required(p.cluster_arn, "cluster_arn")?)
            .service_name(required(p.name, "name")?)
            .task_definition(required(p.task_definition_arn, "task_definition_arn")?)
            .desired_count(fit_i32(p.desired_count, "desired_count")?)
            .launch_type(LaunchType::Fargate)
            .network_configuration(network.build())
            .deployment_configuration(deployment)
            .propagate_tags(PropagateTags::Service)
            .enable_ecs_managed_tags(true)
            .set_tags(Some(tags));
        if let Some(target_group) = p.target_group_arn {
            let port = required(p.container_port, "container_port")?;
            let load_balancer = LoadBalancer::builder()
                .target_group_arn(target_group)
                .container_name(required(p.container_name, "container_name")?)
                .container_port(fit_i32(port, "container_port")?);
            request = request
                .load_balancers(load_balancer.build())
                .health_check_grace_period_seconds(HEALTH_CHECK_GRACE_SECONDS);
        }
        let out = sent("CreateService", request.send()).await?;
        created(
            "CreateService",
            "service",
            out.service().and_then(|s| s.service_arn()),
        )
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: EcsServiceProps = from_props(props)?;
        let updatable = self.updatable();
        if let Some(other) = changed.iter().find(|c| !updatable.contains(&c.as_str())) {
            return Err(not_in_place("UpdateService", other));
        }
        if change.has("desired_count") || change.has("task_definition_arn") {
            let request = cloud.ecs.update_service();
            let mut request = request.cluster(cluster_of_service(id)).service(id);
            if change.has("desired_count") {
                request = request.desired_count(fit_i32(p.desired_count, "desired_count")?);
            }
            if change.has("task_definition_arn") {
                let task_definition = required(p.task_definition_arn, "task_definition_arn")?;
                request = request.task_definition(task_definition);
            }
            sent_ok("UpdateService", request.send()).await?;
        }
        if change.has("tags") {
            let service = describe_service(cloud, &cluster_of_service(id), id).await?;
            retag(cloud, id, service, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let cluster = &cluster_of_service(id);
        let exists = || async move {
            let service = describe_service(cloud, cluster, id).await?;
            Ok(service.is_some_and(|s| live(&s)))
        };
        if !exists().await? {
            return Ok(());
        }
        // Scaling to zero first lets the tasks drain through the load balancer.
        let request = cloud.ecs.update_service().cluster(cluster).service(id);
        let not_active = &[
            "ServiceNotActiveException",
            "ServiceNotFoundException",
            "ClusterNotFoundException",
        ];
        deleted("UpdateService", not_active, request.desired_count(0).send()).await?;
        let request = cloud.ecs.delete_service().cluster(cluster).service(id);
        deleted("DeleteService", GONE, request.force(true).send()).await?;
        // The service holds its target group and security groups until it is inactive.
        let inactive = || async move { Ok(!exists().await?) };
        wait_until(cloud, inactive, || CloudError {
            operation: "DeleteService".into(),
            code: "ResourceInUse".into(),
            message: format!(
                "{id} is still draining {}s after its deletion",
                cloud.poll.timeout.as_secs()
            ),
        })
        .await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for cluster in active_clusters(cloud).await? {
            let Some(cluster) = cluster.cluster_arn() else {
                continue;
            };
            let pages = cloud.ecs.list_services().cluster(cluster);
            let pages = pages.into_paginator().items().send().try_collect();
            // A cluster deleted meanwhile has no services left.
            let listed = absent(sent("ListServices", pages).await, GONE)?;
            // DescribeServices takes at most 10.
            for chunk in listed.unwrap_or_default().chunks(10) {
                let services = describe_services(cloud, cluster, chunk).await?;
                found.extend(in_stack_arns(cloud, services.iter().filter(|s| live(s))));
            }
        }
        Ok(found)
    }

    fn readiness(&self, _id: &str) -> Option<Readiness> {
        Some(Readiness {
            what: "stable with healthy targets",
            advice: "Look at the service's events and stopped tasks in the ECS console (image pull, health check, secrets)".to_string(),
            ready: None,
        })
    }

    async fn probe(&self, cloud: &Cloud, id: &str, observed: &Observed) -> Result<Probe> {
        let p: EcsServiceProps = from_props(&observed.props)?;
        let task_definition = p.task_definition_arn.as_deref().unwrap_or_default();
        if let Some(failure) = deployment_failure(cloud, id, task_definition).await? {
            return Ok(Probe::failed(failure));
        }
        let stable = service_stable(cloud, id).await?;
        let want = usize::try_from(p.desired_count).unwrap_or(0);
        let (healthy, total) = match &p.target_group_arn {
            Some(tg) => alb::target_health(cloud, tg).await?,
            None => (want, want),
        };
        Ok(Probe::when(
            stable && healthy >= want,
            format!(
                "deployment {}, {healthy} of {total} targets healthy (want {want})",
                if stable { "stable" } else { "in progress" }
            ),
        ))
    }
}

/// Whether the service is not (yet) `INACTIVE`, that is deleted.
/// The service as `read` answers it.
async fn observe(cloud: &Cloud, service: &Service) -> Result<Observed> {
    let vpc = service
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration());
    let sorted = |ids: Option<&[String]>| {
        let mut ids = ids.unwrap_or_default().to_vec();
        ids.sort();
        ids
    };
    let load_balancer = service.load_balancers().first();
    let container_name = match load_balancer {
        Some(lb) => lb.container_name().map(str::to_string),
        // Without a load balancer the container is the task definition's one.
        None => container_of(cloud, service.task_definition()).await?,
    };
    let owned = |text: Option<&str>| text.map(str::to_string);
    let typed = EcsServiceProps {
        assign_public_ip: vpc.and_then(|v| v.assign_public_ip()) == Some(&AssignPublicIp::Enabled),
        cluster_arn: owned(service.cluster_arn()),
        container_name,
        container_port: load_balancer
            .and_then(|lb| lb.container_port())
            .map(i64::from),
        desired_count: service.desired_count().into(),
        name: owned(service.service_name()),
        security_group_ids: sorted(vpc.map(|v| v.security_groups())),
        subnet_ids: sorted(vpc.map(|v| v.subnets())),
        target_group_arn: owned(load_balancer.and_then(|lb| lb.target_group_arn())),
        task_definition_arn: owned(service.task_definition()),
    };
    Ok(observed(service, &typed))
}

fn live(service: &Service) -> bool {
    service.status() != Some("INACTIVE")
}

/// The name of the container of the task definition `arn`, `None` without one.
async fn container_of(cloud: &Cloud, arn: Option<&str>) -> Result<Option<String>> {
    let Some(arn) = arn else {
        return Ok(None);
    };
    let task = describe_task_definition(cloud, arn).await?;
    Ok(task.and_then(|(t, _)| {
        let name = t.container_definitions().first()?.name()?;
        Some(name.to_string())
    }))
}
