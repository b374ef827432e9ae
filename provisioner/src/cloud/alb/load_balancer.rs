//! The application load balancer itself. Its id is its ARN; its outputs are
//! the ARN, its DNS name and its `metric_dimension` (the alarms' name for it).

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
};
use serde::{Deserialize, Serialize};

use super::{
    created, describe_load_balancer, find_ours, ids, in_stack_only, load_balancer_state,
    load_balancers, metric_dimension, observed, prop_elb_tags, read_tagged, retag, GONE,
};
use crate::cloud::resource::{Probe, Readiness, ResourceKind, Update};
use crate::cloud::support::{absent, from_props, opt_str, required, sent, sent_ok, wait_until};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// A load balancer's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerProps {
    /// Its name, unique in the account and region.
    pub name: Option<String>,
    /// `internet-facing` or `internal`.
    pub scheme: Option<String>,
    /// The security groups of its network interfaces, sorted.
    pub security_group_ids: Vec<String>,
    /// The subnets it has a node in, sorted.
    pub subnet_ids: Vec<String>,
}

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
        let p: LoadBalancerProps = from_props(props)?;
        let request = cloud.elb.describe_load_balancers();
        let request = request.names(required(p.name, "name")?);
        let described = sent("DescribeLoadBalancers", request.send()).await;
        let listed = described.map(|out| ids(out.load_balancers(), |lb| lb.load_balancer_arn()));
        find_ours(cloud, address, listed).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let ids = [id.to_string()];
        Ok(read_tagged(cloud, &ids, observe).await?.pop().flatten())
    }

    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        read_tagged(cloud, ids, observe).await
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: LoadBalancerProps = from_props(props)?;
        let scheme = required(p.scheme, "scheme")?;
        let request = cloud
            .elb
            .create_load_balancer()
            .name(required(p.name, "name")?)
            .set_subnets(Some(p.subnet_ids))
            .set_security_groups(Some(p.security_group_ids))
            .scheme(LoadBalancerSchemeEnum::from(scheme.as_str()))
            .r#type(LoadBalancerTypeEnum::Application)
            .ip_address_type(IpAddressType::Ipv4)
            .set_tags(prop_elb_tags(props)?);
        let out = sent("CreateLoadBalancer", request.send()).await?;
        let arn = out
            .load_balancers()
            .first()
            .and_then(|lb| lb.load_balancer_arn());
        created("CreateLoadBalancer", "load balancer", arn)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: LoadBalancerProps = from_props(props)?;
        if change.has("security_group_ids") {
            let request = cloud.elb.set_security_groups().load_balancer_arn(id);
            let request = request.set_security_groups(Some(p.security_group_ids));
            sent_ok("SetSecurityGroups", request.send()).await?;
        }
        retag(cloud, id, props, changed).await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.elb.delete_load_balancer().load_balancer_arn(id);
        if absent(sent("DeleteLoadBalancer", request.send()).await, GONE)?.is_none() {
            return Ok(());
        }
        // Its network interfaces hold the security groups until it is really gone.
        let gone = || async move { Ok(load_balancer_state(cloud, id).await?.is_none()) };
        wait_until(cloud, gone, || CloudError {
            operation: "DeleteLoadBalancer".into(),
            code: "ResourceInUse".into(),
            message: format!(
                "{id} still exists {}s after its deletion",
                cloud.poll.timeout.as_secs()
            ),
        })
        .await
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
    let Some(lb) = describe_load_balancer(cloud, id).await? else {
        return Ok(None);
    };
    let mut subnet_ids = ids(lb.availability_zones(), |az| az.subnet_id());
    subnet_ids.sort();
    let mut security_group_ids = lb.security_groups().to_vec();
    security_group_ids.sort();
    let typed = LoadBalancerProps {
        name: lb.load_balancer_name().map(str::to_string),
        scheme: lb.scheme().map(|s| s.as_str().to_string()),
        security_group_ids,
        subnet_ids,
    };
    let mut observed = observed(id, &typed);
    observed
        .outputs
        .insert("dns_name".into(), opt_str(lb.dns_name()));
    let dimension = metric_dimension(id);
    observed
        .outputs
        .insert("metric_dimension".into(), dimension);
    Ok(Some(observed))
}
