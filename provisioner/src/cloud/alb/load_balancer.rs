//! The application load balancer itself. Its id is its ARN; its outputs are
//! the ARN and its DNS name.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
};
use serde_json::Value;

use super::{
    find_ours, in_stack_only, load_balancer_state, load_balancers, one_tags, opt_str,
    prop_elb_tags, retag, GONE,
};
use crate::cloud::resource::{Probe, Readiness, ResourceKind};
use crate::cloud::support::{absent, poll, prop_str, prop_strings, tags_value};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// An application load balancer.
pub struct LoadBalancer;

#[async_trait]
impl ResourceKind for LoadBalancer {
    fn updatable(&self) -> &'static [&'static str] {
        &["security_group_ids", "tags"]
    }

    // After its listeners; its network interfaces hold the security groups.
    fn destroy_rank(&self) -> u8 {
        3
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let name = prop_str(props, "name")?;
        let described = cloud
            .elb
            .describe_load_balancers()
            .names(name)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeLoadBalancers", e));
        let Some(out) = absent(described, GONE)? else {
            return Ok(None);
        };
        let candidates = out
            .load_balancers()
            .iter()
            .filter_map(|lb| lb.load_balancer_arn().map(str::to_string))
            .collect();
        find_ours(cloud, address, candidates).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        Ok(absent(observe(cloud, id).await, GONE)?.flatten())
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let tags = Some(prop_elb_tags(props)?);
        let out = cloud
            .elb
            .create_load_balancer()
            .name(prop_str(props, "name")?)
            .set_subnets(Some(prop_strings(props, "subnet_ids")?))
            .set_security_groups(Some(prop_strings(props, "security_group_ids")?))
            .scheme(LoadBalancerSchemeEnum::from(prop_str(props, "scheme")?))
            .r#type(LoadBalancerTypeEnum::Application)
            .ip_address_type(IpAddressType::Ipv4)
            .set_tags(tags)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateLoadBalancer", e))?;
        out.load_balancers()
            .first()
            .and_then(|lb| lb.load_balancer_arn())
            .map(str::to_string)
            .ok_or_else(|| CloudError::invalid("CreateLoadBalancer", "no load balancer ARN"))
    }

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        let has = |name: &str| changed.iter().any(|c| c == name);
        if has("security_group_ids") {
            cloud
                .elb
                .set_security_groups()
                .load_balancer_arn(id)
                .set_security_groups(Some(prop_strings(props, "security_group_ids")?))
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("SetSecurityGroups", e))?;
        }
        if has("tags") {
            retag(cloud, id, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .elb
            .delete_load_balancer()
            .load_balancer_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteLoadBalancer", e));
        if absent(deleted, GONE)?.is_none() {
            return Ok(());
        }
        // Its network interfaces hold the security groups until it is really gone.
        let gone = poll(cloud, || async move {
            Ok(load_balancer_state(cloud, id)
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        match gone {
            Some(()) => Ok(()),
            None => Err(CloudError {
                operation: "DeleteLoadBalancer".into(),
                code: "ResourceInUse".into(),
                message: format!(
                    "{id} still exists {}s after its deletion",
                    cloud.poll.timeout.as_secs()
                ),
            }),
        }
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        in_stack_only(cloud, load_balancers(cloud).await?).await
    }

    fn readiness(&self, _id: &str) -> Option<Readiness> {
        Some(Readiness {
            what: "active",
            advice: "Look at the load balancer's state in the EC2 console".to_string(),
            ready: None,
        })
    }

    async fn probe(&self, cloud: &Cloud, id: &str, _observed: &Observed) -> Result<Probe> {
        let state = load_balancer_state(cloud, id).await?;
        Ok(Probe::when(
            state.as_deref() == Some("active"),
            format!("state {}", state.unwrap_or_else(|| "unknown".into())),
        ))
    }
}

async fn observe(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let out = cloud
        .elb
        .describe_load_balancers()
        .load_balancer_arns(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeLoadBalancers", e))?;
    let Some(lb) = out.load_balancers().first() else {
        return Ok(None);
    };
    let mut subnets: Vec<String> = lb
        .availability_zones()
        .iter()
        .filter_map(|az| az.subnet_id().map(str::to_string))
        .collect();
    subnets.sort();
    let mut groups = lb.security_groups().to_vec();
    groups.sort();
    let props = Props::from([
        ("name".into(), opt_str(lb.load_balancer_name())),
        ("subnet_ids".into(), Value::from(subnets)),
        ("security_group_ids".into(), Value::from(groups)),
        ("scheme".into(), opt_str(lb.scheme().map(|s| s.as_str()))),
        ("tags".into(), tags_value(one_tags(cloud, id).await?)),
    ]);
    let outputs = Props::from([
        ("arn".into(), Value::String(id.to_string())),
        ("dns_name".into(), opt_str(lb.dns_name())),
    ]);
    Ok(Some(Observed { props, outputs }))
}
