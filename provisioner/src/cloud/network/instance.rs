//! The broker's EC2 instance: Amazon Linux 2023 for its architecture, an
//! encrypted gp3 root volume tagged like it, IMDSv2 only. Its setup reports
//! on the [`BROKER_SETUP_TAG`], which the walk waits for.

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    self, BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState,
    IamInstanceProfileSpecification, InstanceAttributeName, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, ResourceType, VolumeType,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{
    answered, described, filter, first_at, gone_ok, instance_state, instance_status, observed,
    retag, stack_filters, tag_spec,
};
use crate::blueprint::instance_architecture;
use crate::cloud::resource::{Probe, Readiness, ResourceKind, Update};
use crate::cloud::support::{
    fit_i32, from_props, only_tags, opt_str, required, sent, sent_ok, wait_until,
};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::image::Architecture;
use crate::model::{Props, BROKER_SETUP_TAG};

/// The broker instance's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceProps {
    /// Its EC2 instance type; its architecture picks the image.
    pub instance_type: Option<String>,
    /// The subnet it runs in.
    pub subnet_id: Option<String>,
    /// Its security groups, sorted.
    pub security_group_ids: Vec<String>,
    /// The size of its root volume; `None` when the volume cannot be read.
    pub root_volume_gib: Option<i64>,
    /// The script it runs at first boot (its setup).
    pub user_data: String,
    /// The instance profile it runs as.
    pub instance_profile: Option<String>,
    /// Whether its setup reported failure on the [`BROKER_SETUP_TAG`]; a
    /// broker whose setup failed is replaced by the next apply.
    pub setup_failed: bool,
}

/// The broker's EC2 instance.
pub struct Instance;

#[async_trait]
impl ResourceKind for Instance {
    fn updatable(&self) -> &'static [&'static str] {
        &["tags"]
    }

    // A broker whose setup failed never served the stack: nothing on it to lose.
    fn holds_data(&self, recorded: &Props) -> bool {
        // `recorded` may hold only the attributes a plan changes: read the one.
        recorded.get("setup_failed") != Some(&serde_json::Value::Bool(true))
    }

    // After the services that use the broker; before its security groups
    // and subnet, which cannot go while it runs.
    fn destroy_rank(&self) -> u8 {
        4
    }

    async fn find(&self, cloud: &Cloud, address: &str, _props: &Props) -> Result<Option<String>> {
        // A terminated instance keeps its tags for a while: only a live one
        // is the one at `address`.
        let live = ["pending", "running", "stopping", "stopped"];
        let live = filter("instance-state-name", live);
        first_at(cloud, address, |filters| ids(cloud, filters, live)).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(instance) = describe(cloud, id).await? else {
            return Ok(None);
        };
        let state = instance.state().and_then(|s| s.name());
        if matches!(
            state,
            Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
        ) {
            return Ok(None);
        }
        let mut security_group_ids: Vec<String> = instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .map(str::to_string)
            .collect();
        security_group_ids.sort_unstable();

        let root_volume_gib = match root_volume_id(&instance) {
            Some(volume_id) => {
                let request = cloud.ec2.describe_volumes().volume_ids(volume_id);
                let out = described("DescribeVolumes", request.send()).await?;
                // A volume gone between the two calls reads as no size.
                out.and_then(|o| o.volumes().first().and_then(|v| v.size()))
            }
            None => None,
        };

        // The profile's name ends its ARN (`arn:aws:iam::ACCOUNT:instance-profile/NAME`).
        let instance_profile = instance
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .and_then(|arn| arn.rsplit('/').next());

        let request = cloud.ec2.describe_instance_attribute().instance_id(id);
        let request = request.attribute(InstanceAttributeName::UserData);
        let Some(out) = described("DescribeInstanceAttribute", request.send()).await? else {
            return Ok(None);
        };
        let encoded = out.user_data().and_then(|u| u.value()).unwrap_or_default();
        let decoded = STANDARD.decode(encoded).map_err(|e| {
            CloudError::invalid("DescribeInstanceAttribute", format!("userData: {e}"))
        })?;

        let p = InstanceProps {
            instance_type: instance.instance_type().map(|t| t.as_str().to_string()),
            subnet_id: instance.subnet_id().map(str::to_string),
            security_group_ids,
            root_volume_gib: root_volume_gib.map(i64::from),
            user_data: String::from_utf8_lossy(&decoded).into_owned(),
            instance_profile: instance_profile.map(str::to_string),
            setup_failed: setup_failed(&instance),
        };
        let mut observed = observed(&p, instance.tags(), id);
        let private_ip = opt_str(instance.private_ip_address());
        observed.outputs.insert("private_ip".into(), private_ip);
        let image_id = opt_str(instance.image_id());
        observed.outputs.insert("image_id".into(), image_id);
        Ok(Some(observed))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: InstanceProps = from_props(props)?;
        let instance_type = required(p.instance_type, "instance_type")?;
        let architecture = instance_architecture(&instance_type).ok_or_else(|| {
            CloudError::invalid(
                "instance_type",
                format!("`{instance_type}` is not an EC2 instance type"),
            )
        })?;
        let request = cloud.ssm.get_parameter().name(ami_parameter(architecture));
        let parameter = sent("GetParameter", request.send()).await?;
        let image_id = parameter.parameter().and_then(|p| p.value());
        let image_id = answered(image_id, "GetParameter", "Parameter.Value")?;
        let size = required(p.root_volume_gib, "root_volume_gib")?;
        let volume = EbsBlockDevice::builder()
            .volume_size(fit_i32(size, "root_volume_gib")?)
            .volume_type(VolumeType::Gp3)
            .encrypted(true)
            .delete_on_termination(true)
            .build();
        // One token per launch: a token fixed per address would make EC2 hand
        // back the old, terminated instance when the broker is replaced. A
        // retried launch is found by its tags instead (the walk looks first).
        let client_token: String = format!("{}-{}", cloud.stack, uuid::Uuid::new_v4().simple())
            .chars()
            .take(64)
            .collect();
        let request = cloud
            .ec2
            .run_instances()
            .image_id(image_id)
            .instance_type(InstanceType::from(instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(required(p.subnet_id, "subnet_id")?)
            .set_security_group_ids(Some(p.security_group_ids))
            .user_data(STANDARD.encode(p.user_data))
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(required(p.instance_profile, "instance_profile")?)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(ROOT_DEVICE)
                    .ebs(volume)
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .build(),
            )
            .tag_specifications(tag_spec(props, ResourceType::Instance)?)
            .tag_specifications(tag_spec(props, ResourceType::Volume)?)
            .client_token(client_token);
        let out = sent("RunInstances", request.send()).await?;
        let id = out.instances().first().and_then(|i| i.instance_id());
        answered(id, "RunInstances", "InstanceId")
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        only_tags("UpdateInstance", changed, || async {
            retag(cloud, id, props).await?;
            // The root volume was tagged with the instance; keep them alike.
            let instance = describe(cloud, id).await?;
            match instance.as_ref().and_then(root_volume_id) {
                Some(volume_id) => retag(cloud, &volume_id, props).await,
                None => Ok(()),
            }
        })
        .await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        gone_ok(terminate(cloud, id).await)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let live = ["pending", "running", "shutting-down", "stopping", "stopped"];
        let live = filter("instance-state-name", live);
        ids(cloud, stack_filters(cloud), live).await
    }

    fn readiness(&self, id: &str) -> Option<Readiness> {
        Some(Readiness {
            what: "broker ready (Redpanda running, topics created)",
            advice: format!(
                "Read the broker's setup log: `aws ec2 get-console-output --instance-id {id} --latest --output text` (or /var/log/event-platform-broker.log on the instance); fix the cause (`broker.repository_setup_url`, `broker.redpanda_version`, the route out), then run apply again, which replaces a broker whose setup failed"
            ),
            ready: Some("broker ready"),
        })
    }

    async fn probe(&self, cloud: &Cloud, id: &str, _observed: &Observed) -> Result<Probe> {
        Ok(match instance_status(cloud, id).await? {
            None => Probe::waiting("instance not found"),
            Some((state, None)) => Probe::waiting(format!("state {state}, setup not reported yet")),
            Some((_, Some(report))) if report.starts_with("failed") => {
                Probe::failed(format!("its setup reported `{report}`"))
            }
            Some((state, Some(report))) => Probe::when(
                state == "running" && report == "ready",
                format!("state {state}, setup `{report}`"),
            ),
        })
    }
}

/// SSM parameter naming the current Amazon Linux 2023 AMI for `architecture`.
fn ami_parameter(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Amd64 => {
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
        }
        Architecture::Arm64 => {
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
        }
    }
}

/// The broker's root device.
const ROOT_DEVICE: &str = "/dev/xvda";

/// Terminates, then waits for `terminated`: the instance's security groups
/// and subnet cannot be deleted before.
async fn terminate(cloud: &Cloud, id: &str) -> Result<()> {
    let request = cloud.ec2.terminate_instances().instance_ids(id);
    sent_ok("TerminateInstances", request.send()).await?;
    let terminated = || async {
        let state = instance_state(cloud, id).await?;
        Ok(state.is_none_or(|s| s == InstanceStateName::Terminated.as_str()))
    };
    wait_until(cloud, terminated, || {
        let timeout = cloud.poll.timeout.as_secs();
        let message = format!("instance {id} was not terminated after {timeout}s");
        CloudError::invalid("TerminateInstances", message)
    })
    .await
}

/// The ids of the instances that `filters` and `state` match.
async fn ids(cloud: &Cloud, filters: Vec<Filter>, state: Filter) -> Result<Vec<String>> {
    let request = cloud.ec2.describe_instances().set_filters(Some(filters));
    let items = request.filters(state).into_paginator().items().send();
    let reservations = sent("DescribeInstances", items.try_collect()).await?;
    let instances = reservations.iter().flat_map(|r| r.instances());
    Ok(instances
        .filter_map(|i| i.instance_id())
        .map(str::to_string)
        .collect())
}

/// The instance `id` in any state, `None` when EC2 does not know it.
pub(super) async fn describe(cloud: &Cloud, id: &str) -> Result<Option<types::Instance>> {
    let request = cloud.ec2.describe_instances().instance_ids(id);
    let out = described("DescribeInstances", request.send()).await?;
    Ok(out.and_then(|o| {
        let mut instances = o.reservations().iter().flat_map(|r| r.instances());
        instances.next().cloned()
    }))
}

fn root_volume_id(instance: &types::Instance) -> Option<String> {
    let root = instance.root_device_name().unwrap_or(ROOT_DEVICE);
    let mapping = instance
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root));
    mapping
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_id())
        .map(str::to_string)
}

/// What the instance's setup reported on the [`BROKER_SETUP_TAG`].
pub(super) fn setup_report(instance: &types::Instance) -> Option<String> {
    let tag = instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(BROKER_SETUP_TAG));
    tag.and_then(|t| t.value()).map(str::to_string)
}

fn setup_failed(instance: &types::Instance) -> bool {
    setup_report(instance).is_some_and(|r| r.starts_with("failed"))
}
