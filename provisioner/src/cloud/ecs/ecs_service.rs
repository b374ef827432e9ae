//! An ECS service on Fargate: tasks of one task definition in the stack's
//! subnets, optionally behind a target group, deployed with the circuit
//! breaker. Its id and `arn` output are its ARN; it also outputs its `name`.

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    LaunchType, LoadBalancer, NetworkConfiguration, PropagateTags, ServiceField, Tag,
};
use serde_json::Value;

use super::{
    active_clusters, cluster_of_service, deployment_failure, describe_service,
    describe_task_definition, ecs_tags, opt_str, prop_ecs_tags, prop_i32, retag, service_stable,
    GONE,
};
use crate::cloud::alb;
use crate::cloud::resource::{Probe, Readiness, ResourceKind};
use crate::cloud::support::{
    absent, gone_ok, in_stack, ours, poll, prop_bool, prop_str, prop_strings, tags_value,
};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// Health check grace period of a service behind a load balancer: how long
/// the load balancer's failing checks of a new task are ignored. It covers
/// a cold Fargate start (ENI, image pull: up to about 90 s) and the
/// service's own start (under 1 s to `/health/ready`, see BENCHMARKS.md),
/// with room for the broker connection's first retries.
pub const HEALTH_CHECK_GRACE_SECONDS: i32 = 120;

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
        let cluster = prop_str(props, "cluster_arn")?;
        Ok(describe_service(cloud, cluster, prop_str(props, "name")?)
            .await?
            .filter(|s| s.status() == Some("ACTIVE") && ours(cloud, &ecs_tags(s.tags()), address))
            .and_then(|s| s.service_arn().map(str::to_string)))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
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
        let (target_group, container_name, container_port) = match service.load_balancers().first()
        {
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

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        create_service(cloud, props, Some(prop_ecs_tags(props)?)).await
    }

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        let has = |name: &str| changed.iter().any(|c| c == name);
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
        if has("tags") {
            let current = describe_service(cloud, &cluster_of_service(id), id)
                .await?
                .map(|s| ecs_tags(s.tags()))
                .unwrap_or_default();
            retag(cloud, id, current, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let cluster = &cluster_of_service(id);
        match describe_service(cloud, cluster, id).await? {
            None => return Ok(()),
            Some(s) if s.status() == Some("INACTIVE") => return Ok(()),
            Some(_) => {}
        }
        // Scaling to zero first lets the tasks drain through the load balancer.
        let scaled = cloud
            .ecs
            .update_service()
            .cluster(cluster)
            .service(id)
            .desired_count(0)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("UpdateService", e));
        gone_ok(
            scaled,
            &[
                "ServiceNotActiveException",
                "ServiceNotFoundException",
                "ClusterNotFoundException",
            ],
        )?;
        let deleted = cloud
            .ecs
            .delete_service()
            .cluster(cluster)
            .service(id)
            .force(true)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteService", e));
        gone_ok(deleted, GONE)?;
        // The service holds its target group and security groups until it is inactive.
        let inactive = poll(cloud, || async move {
            Ok(match describe_service(cloud, cluster, id).await? {
                Some(s) if s.status() != Some("INACTIVE") => None,
                _ => Some(()),
            })
        })
        .await?;
        match inactive {
            Some(()) => Ok(()),
            None => Err(CloudError {
                operation: "DeleteService".into(),
                code: "ResourceInUse".into(),
                message: format!(
                    "{id} is still draining {}s after its deletion",
                    cloud.poll.timeout.as_secs()
                ),
            }),
        }
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for cluster in active_clusters(cloud).await? {
            let Some(cluster) = cluster.cluster_arn() else {
                continue;
            };
            let mut service_arns = Vec::new();
            let mut pages = cloud
                .ecs
                .list_services()
                .cluster(cluster)
                .into_paginator()
                .items()
                .send();
            while let Some(arn) = pages.next().await {
                let listed = arn.map_err(|e| CloudError::from_sdk("ListServices", e));
                // A cluster deleted meanwhile has no services left.
                let Some(arn) = absent(listed, GONE)? else {
                    break;
                };
                service_arns.push(arn);
            }
            for chunk in service_arns.chunks(10) {
                let out = cloud
                    .ecs
                    .describe_services()
                    .cluster(cluster)
                    .set_services(Some(chunk.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
                    .await
                    .map_err(|e| CloudError::from_sdk("DescribeServices", e))?;
                found.extend(
                    out.services()
                        .iter()
                        .filter(|s| {
                            s.status() != Some("INACTIVE") && in_stack(cloud, &ecs_tags(s.tags()))
                        })
                        .filter_map(|s| s.service_arn().map(str::to_string)),
                );
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
        let task_definition = observed
            .props
            .get("task_definition_arn")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(failure) = deployment_failure(cloud, id, task_definition).await? {
            return Ok(Probe::failed(failure));
        }
        let stable = service_stable(cloud, id).await?;
        let target_group = observed
            .props
            .get("target_group_arn")
            .and_then(Value::as_str);
        let want = observed
            .props
            .get("desired_count")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        let (healthy, total) = match target_group {
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
