//! Temporary: the facts and waits of the kinds not yet in files of their
//! own, as they were in the model and the walk. Goes when the last family
//! module implements `ResourceKind` per kind.

use serde_json::Value;

use super::resource::{Probe, Readiness};
use super::{alb, ecs, network, Cloud, Observed, Result};
use crate::model::{Kind, Props};

pub fn updatable(kind: Kind) -> &'static [&'static str] {
match kind {
        Kind::Vpc => &["enable_dns_hostnames", "enable_dns_support", "tags"],
        Kind::Subnet => &["map_public_ip_on_launch", "tags"],
        Kind::InternetGateway | Kind::RouteTable => &["tags"],
        Kind::Route => &["gateway_id"],
        Kind::RouteTableAssociation | Kind::Image => &[],
        Kind::SecurityGroup => &["ingress", "tags"],
        Kind::Instance => &["tags"],
        Kind::EcrRepository => &["scan_on_push", "tag_mutability", "keep_images", "tags"],
        // Everything AWS changes in place: a replace deletes the data.
        Kind::DynamodbTable => &[
            "point_in_time_recovery",
            "ttl_attribute",
            "deletion_protection",
            "tags",
        ],
        Kind::S3Bucket => &[
            "versioning",
            "encryption",
            "block_public_access",
            "tls_only",
            "archive_after_days",
            "archive_storage_class",
            "expire_after_days",
            "tags",
        ],
        Kind::IamRole => &[
            "trust_account",
            "inline_policy",
            "managed_policies",
            "instance_profile",
            "tags",
        ],
        // A new value would need the secret again; the parameter is only retagged.
        Kind::SsmParameter => &["tags"],
        Kind::LogGroup => &["retention_days", "tags"],
        Kind::LoadBalancer => &["security_group_ids", "tags"],
        Kind::TargetGroup => &["health_check_path", "deregistration_delay_seconds", "tags"],
        Kind::Listener => &[
            "default_target_group_arn",
            "redirect_to_https",
            "ssl_policy",
            "tags",
        ],
        Kind::ListenerRule => &["path_patterns", "fixed_status", "target_group_arn", "tags"],
        Kind::EcsCluster => &["container_insights", "tags"],
        Kind::TaskDefinition => &[],
        Kind::EcsService => &["desired_count", "task_definition_arn", "tags"],
    }
}

pub fn tagged(kind: Kind) -> bool {
    !matches!(kind, Kind::Route | Kind::RouteTableAssociation | Kind::Image)
}

pub fn holds_data(kind: Kind, recorded: &Props) -> bool {
    match kind {
        Kind::DynamodbTable | Kind::S3Bucket => true,
        // A broker whose setup failed never served the stack: nothing on it to lose.
        Kind::Instance => recorded.get("setup_failed") != Some(&Value::Bool(true)),
        _ => false,
    }
}

pub fn destroy_rank(kind: Kind) -> u8 {
    match kind {
        Kind::EcsService => 0,
        Kind::ListenerRule | Kind::TaskDefinition | Kind::Image => 1,
        Kind::Listener | Kind::EcsCluster => 2,
        Kind::TargetGroup | Kind::LoadBalancer => 3,
        Kind::Instance
        | Kind::EcrRepository
        | Kind::S3Bucket
        | Kind::DynamodbTable
        | Kind::SsmParameter
        | Kind::IamRole => 4,
        Kind::SecurityGroup => 5,
        Kind::Route | Kind::RouteTableAssociation => 6,
        Kind::RouteTable | Kind::InternetGateway => 7,
        Kind::Subnet => 8,
        Kind::Vpc => 9,
        Kind::LogGroup => 10,
    }
}

pub async fn users(cloud: &Cloud, kind: Kind, id: &str) -> Result<Vec<String>> {
    match kind {
        Kind::SecurityGroup => network::blocking_interfaces(cloud, id).await,
        _ => Ok(Vec::new()),
    }
}

pub fn readiness(kind: Kind, id: &str) -> Option<Readiness> {
    let (what, advice) = match kind {
        Kind::Instance => ("broker ready (Redpanda running, topics created)", format!(
            "Read the broker's setup log: `aws ec2 get-console-output --instance-id {id} --latest --output text` (or /var/log/event-platform-broker.log on the instance); fix the cause (`broker.repository_setup_url`, `broker.redpanda_version`, the route out), then run apply again, which replaces a broker whose setup failed"
        )),
        Kind::LoadBalancer => ("active", "Look at the load balancer's state in the EC2 console".to_string()),
        Kind::EcsService => ("stable with healthy targets", "Look at the service's events and stopped tasks in the ECS console (image pull, health check, secrets)".to_string()),
        _ => return None,
    };
    Some(Readiness { what, advice })
}

pub async fn probe(cloud: &Cloud, kind: Kind, id: &str, observed: &Observed) -> Result<Probe> {
    Ok(match kind {
        Kind::Instance => match network::instance_status(cloud, id).await? {
            None => Probe::waiting("instance not found"),
            Some((state, None)) => Probe::waiting(format!("state {state}, setup not reported yet")),
            Some((_, Some(report))) if report.starts_with("failed") => {
                Probe::failed(format!("its setup reported `{report}`"))
            }
            Some((state, Some(report))) => Probe::when(
                state == "running" && report == "ready",
                format!("state {state}, setup `{report}`"),
            ),
        },
        Kind::LoadBalancer => {
            let state = alb::load_balancer_state(cloud, id).await?;
            Probe::when(
                state.as_deref() == Some("active"),
                format!("state {}", state.unwrap_or_else(|| "unknown".into())),
            )
        }
        Kind::EcsService => {
            let task_definition = observed
                .props
                .get("task_definition_arn")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(failure) = ecs::deployment_failure(cloud, id, task_definition).await? {
                return Ok(Probe::failed(failure));
            }
            let stable = ecs::service_stable(cloud, id).await?;
            let target_group = observed.props.get("target_group_arn").and_then(Value::as_str);
            let want = observed
                .props
                .get("desired_count")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
            let (healthy, total) = match target_group {
                Some(tg) => alb::target_health(cloud, tg).await?,
                None => (want, want),
            };
            Probe::when(
                stable && healthy >= want,
                format!(
                    "deployment {}, {healthy} of {total} targets healthy (want {want})",
                    if stable { "stable" } else { "in progress" }
                ),
            )
        }
        _ => Probe::ready("exists"),
    })
}

/// A family module's five functions as one `ResourceKind` per kind.
macro_rules! legacy_family {
    () => {
        /// Temporary adaptor: this module's functions for one kind.
        pub struct Legacy(pub Kind);

        #[async_trait::async_trait]
        impl super::resource::ResourceKind for Legacy {
            fn updatable(&self) -> &'static [&'static str] {
                super::legacy::updatable(self.0)
            }
            fn tagged(&self) -> bool {
                super::legacy::tagged(self.0)
            }
            fn holds_data(&self, recorded: &Props) -> bool {
                super::legacy::holds_data(self.0, recorded)
            }
            fn destroy_rank(&self) -> u8 {
                super::legacy::destroy_rank(self.0)
            }
            async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
                find(cloud, self.0, address, props).await
            }
            async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
                read(cloud, self.0, id).await
            }
            async fn create(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<String> {
                create(cloud, self.0, address, props).await
            }
            async fn update(&self, cloud: &Cloud, id: &str, props: &Props, changed: &[String]) -> Result<()> {
                update(cloud, self.0, id, props, changed).await
            }
            async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
                delete(cloud, self.0, id).await
            }
            async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
                Ok(list_tagged(cloud)
                    .await?
                    .into_iter()
                    .filter(|(kind, _)| *kind == self.0)
                    .map(|(_, id)| id)
                    .collect())
            }
            async fn users(&self, cloud: &Cloud, id: &str) -> Result<Vec<String>> {
                super::legacy::users(cloud, self.0, id).await
            }
            fn readiness(&self, id: &str) -> Option<super::resource::Readiness> {
                super::legacy::readiness(self.0, id)
            }
            async fn probe(&self, cloud: &Cloud, id: &str, observed: &Observed) -> Result<super::resource::Probe> {
                super::legacy::probe(cloud, self.0, id, observed).await
            }
        }
    };
}
pub(crate) use legacy_family;
