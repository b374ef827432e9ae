//! The broker's EC2 instance: Amazon Linux 2023 for its architecture, an
//! encrypted gp3 root volume tagged like it, IMDSv2 only. Its setup reports
//! on the [`BROKER_SETUP_TAG`], which the walk waits for.

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    self, BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceAttributeName, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceStateName, InstanceType, ResourceType, VolumeType,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::{
    absent, address_filters, filter, gone_ok, instance_state, instance_status, not_updatable,
    opt_str, required, retag, stack_filters, tag_spec, tags_of,
};
use crate::blueprint::instance_architecture;
use crate::cloud::resource::{Probe, Readiness, ResourceKind};
use crate::cloud::support::{poll, prop_i64, prop_str, prop_strings};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::image::Architecture;
use crate::model::{Kind, Props, BROKER_SETUP_TAG};

/// The broker's EC2 instance.
pub struct Instance;

#[async_trait]
impl ResourceKind for Instance {
    fn updatable(&self) -> &'static [&'static str] {
        &["tags"]
    }

    // A broker whose setup failed never served the stack: nothing on it to lose.
    fn holds_data(&self, recorded: &Props) -> bool {
        recorded.get("setup_failed") != Some(&Value::Bool(true))
    }

    // After the services that use the broker; before its security groups
    // and subnet, which cannot go while it runs.
    fn destroy_rank(&self) -> u8 {
        4
    }

    async fn find(&self, cloud: &Cloud, address: &str, _props: &Props) -> Result<Option<String>> {
        let live = filter(
            "instance-state-name",
            ["pending", "running", "stopping", "stopped"],
        );
        let out = cloud
            .ec2
            .describe_instances()
            .set_filters(Some(address_filters(cloud, address)))
            .filters(live)
            .send()
            .await;
        let out = out.map_err(|e| CloudError::from_sdk("DescribeInstances", e))?;
        let mut ids = out.reservations().iter().flat_map(|r| r.instances());
        Ok(ids.find_map(|i| i.instance_id()).map(str::to_string))
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
        let mut groups: Vec<&str> = instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .collect();
        groups.sort_unstable();

        let root_volume_gib = match root_volume_id(&instance) {
            Some(volume_id) => {
                let out = cloud
                    .ec2
                    .describe_volumes()
                    .volume_ids(volume_id)
                    .send()
                    .await;
                let out = out.map_err(|e| CloudError::from_sdk("DescribeVolumes", e));
                // A volume gone between the two calls reads as no size.
                let size = absent(out)?.and_then(|o| o.volumes().first().and_then(|v| v.size()));
                size.map_or(Value::Null, |s| json!(s))
            }
            None => Value::Null,
        };

        // The profile's name ends its ARN (`arn:aws:iam::ACCOUNT:instance-profile/NAME`).
        let profile = instance
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .and_then(|arn| arn.rsplit('/').next());

        let out = cloud
            .ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeInstanceAttribute", e));
        let Some(out) = absent(out)? else {
            return Ok(None);
        };
        let encoded = out.user_data().and_then(|u| u.value()).unwrap_or_default();
        let decoded = STANDARD.decode(encoded).map_err(|e| {
            CloudError::invalid("DescribeInstanceAttribute", format!("userData: {e}"))
        })?;

        let props = Props::from([
            (
                "instance_type".into(),
                opt_str(instance.instance_type().map(|t| t.as_str())),
            ),
            ("subnet_id".into(), opt_str(instance.subnet_id())),
            ("security_group_ids".into(), json!(groups)),
            ("root_volume_gib".into(), root_volume_gib),
            ("user_data".into(), json!(String::from_utf8_lossy(&decoded))),
            ("instance_profile".into(), opt_str(profile)),
            // A broker whose setup failed is replaced by the next apply.
            ("setup_failed".into(), json!(setup_failed(&instance))),
            ("tags".into(), tags_of(instance.tags())),
        ]);
        let outputs = Props::from([
            ("id".into(), json!(id)),
            ("private_ip".into(), opt_str(instance.private_ip_address())),
            ("image_id".into(), opt_str(instance.image_id())),
        ]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let instance_type = prop_str(props, "instance_type")?;
        let architecture = instance_architecture(instance_type).ok_or_else(|| {
            CloudError::invalid(
                "instance_type",
                format!("`{instance_type}` is not an EC2 instance type"),
            )
        })?;
        let parameter = cloud
            .ssm
            .get_parameter()
            .name(ami_parameter(architecture))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("GetParameter", e))?;
        let image_id = parameter.parameter().and_then(|p| p.value());
        let image_id = required(image_id, "GetParameter", "Parameter.Value")?;
        let size = prop_i64(props, "root_volume_gib")?;
        let size = i32::try_from(size).map_err(|_| {
            CloudError::invalid("root_volume_gib", format!("{size} GiB is too large"))
        })?;
        let volume = EbsBlockDevice::builder()
            .volume_size(size)
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
        let out = cloud
            .ec2
            .run_instances()
            .image_id(image_id)
            .instance_type(InstanceType::from(prop_str(props, "instance_type")?))
            .min_count(1)
            .max_count(1)
            .subnet_id(prop_str(props, "subnet_id")?)
            .set_security_group_ids(Some(prop_strings(props, "security_group_ids")?))
            .user_data(STANDARD.encode(prop_str(props, "user_data")?))
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(prop_str(props, "instance_profile")?)
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
            .client_token(client_token)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("RunInstances", e))?;
        let id = out.instances().first().and_then(|i| i.instance_id());
        required(id, "RunInstances", "InstanceId")
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
                "tags" => {
                    retag(cloud, id, props).await?;
                    // The root volume was tagged with the instance; keep them alike.
                    if let Some(volume_id) =
                        describe(cloud, id).await?.as_ref().and_then(root_volume_id)
                    {
                        retag(cloud, &volume_id, props).await?;
                    }
                }
                _ => return Err(not_updatable(Kind::Instance, attribute)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        gone_ok(terminate(cloud, id).await)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        let live = filter(
            "instance-state-name",
            ["pending", "running", "shutting-down", "stopping", "stopped"],
        );
        let reservations = cloud
            .ec2
            .describe_instances()
            .set_filters(Some(stack_filters(cloud)))
            .filters(live)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeInstances", e))?;
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id())
            .map(str::to_string)
            .collect())
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
    cloud
        .ec2
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("TerminateInstances", e))?;
    let terminated = poll(cloud, || async {
        Ok(match instance_state(cloud, id).await? {
            None => Some(()),
            Some(state) if state == InstanceStateName::Terminated.as_str() => Some(()),
            Some(_) => None,
        })
    })
    .await?;
    terminated.ok_or_else(|| {
        CloudError::invalid(
            "TerminateInstances",
            format!(
                "instance {id} was not terminated after {}s",
                cloud.poll.timeout.as_secs()
            ),
        )
    })
}

/// The instance `id` in any state, `None` when EC2 does not know it.
pub(super) async fn describe(cloud: &Cloud, id: &str) -> Result<Option<types::Instance>> {
    let out = cloud.ec2.describe_instances().instance_ids(id).send().await;
    let out = out.map_err(|e| CloudError::from_sdk("DescribeInstances", e));
    Ok(absent(out)?.and_then(|o| {
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
