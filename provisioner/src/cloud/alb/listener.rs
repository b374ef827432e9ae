//! A listener of the load balancer: a port and protocol (HTTPS with a
//! certificate and TLS policy), whose default action forwards to a target
//! group or redirects to HTTPS. Its id and `arn` output are its ARN.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};
use serde::{Deserialize, Serialize};

use super::{
    all_listeners, created, find_ours, forward, forward_target, in_stack_only, listeners_of,
    observed, prop_elb_tags, read_tagged, retag, GONE,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{deleted, fit_i32, from_props, required, sent, sent_ok};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// A listener's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerProps {
    /// The certificate of an HTTPS listener; `None` for HTTP.
    pub certificate_arn: Option<String>,
    /// The target group its default action forwards to; `None` when it
    /// redirects.
    pub default_target_group_arn: Option<String>,
    /// The load balancer it listens on.
    pub load_balancer_arn: Option<String>,
    /// The port it listens on.
    pub port: Option<i64>,
    /// `HTTP` or `HTTPS`.
    pub protocol: Option<String>,
    /// Whether its default action is a permanent redirect to HTTPS on 443.
    pub redirect_to_https: bool,
    /// The TLS policy of an HTTPS listener; `None` for HTTP.
    pub ssl_policy: Option<String>,
}

/// An ALB listener.
pub struct Listener;

#[async_trait]
impl ResourceKind for Listener {
    fn updatable(&self) -> &'static [&'static str] {
        &[
            "default_target_group_arn",
            "redirect_to_https",
            "ssl_policy",
            "tags",
        ]
    }

    // After its rules, before its load balancer and the target groups it forwards to.
    fn destroy_rank(&self) -> u8 {
        2
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: ListenerProps = from_props(props)?;
        let load_balancer = required(p.load_balancer_arn, "load_balancer_arn")?;
        find_ours(cloud, address, listeners_of(cloud, &load_balancer).await).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let ids = [id.to_string()];
        Ok(read_tagged(cloud, &ids, observe).await?.pop().flatten())
    }

    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        read_tagged(cloud, ids, observe).await
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: ListenerProps = from_props(props)?;
        let action = listener_action(&p)?;
        let load_balancer = required(p.load_balancer_arn, "load_balancer_arn")?;
        let protocol = required(p.protocol, "protocol")?;
        let certificate = |arn| Certificate::builder().certificate_arn(arn).build();
        let request = cloud
            .elb
            .create_listener()
            .load_balancer_arn(load_balancer)
            .port(fit_i32(required(p.port, "port")?, "port")?)
            .protocol(ProtocolEnum::from(protocol.as_str()))
            .set_certificates(p.certificate_arn.map(|arn| vec![certificate(arn)]))
            .set_ssl_policy(p.ssl_policy)
            .default_actions(action)
            .set_tags(prop_elb_tags(props)?);
        let out = sent("CreateListener", request.send()).await?;
        let arn = out.listeners().first().and_then(|l| l.listener_arn());
        created("CreateListener", "listener", arn)
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: ListenerProps = from_props(props)?;
        if change.has("default_target_group_arn")
            || change.has("redirect_to_https")
            || change.has("ssl_policy")
        {
            let mut request = cloud.elb.modify_listener().listener_arn(id);
            if change.has("default_target_group_arn") || change.has("redirect_to_https") {
                request = request.default_actions(listener_action(&p)?);
            }
            if change.has("ssl_policy") {
                request = request.set_ssl_policy(p.ssl_policy);
            }
            sent_ok("ModifyListener", request.send()).await?;
        }
        retag(cloud, id, props, changed).await
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.elb.delete_listener().listener_arn(id);
        deleted("DeleteListener", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        in_stack_only(cloud, all_listeners(cloud).await?).await
    }
}

async fn observe(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let request = cloud.elb.describe_listeners().listener_arns(id);
    let out = sent("DescribeListeners", request.send()).await?;
    let Some(listener) = out.listeners().first() else {
        return Ok(None);
    };
    let actions = listener.default_actions();
    let https = listener.protocol() == Some(&ProtocolEnum::Https);
    let typed = ListenerProps {
        certificate_arn: listener
            .certificates()
            .first()
            .and_then(|c| c.certificate_arn())
            .map(str::to_string),
        default_target_group_arn: forward_target(actions).map(str::to_string),
        load_balancer_arn: listener.load_balancer_arn().map(str::to_string),
        port: listener.port().map(i64::from),
        protocol: listener.protocol().map(|p| p.as_str().to_string()),
        redirect_to_https: redirects_to_https(actions),
        // moto reports a policy on HTTP listeners too; AWS has one only for HTTPS.
        ssl_policy: listener.ssl_policy().filter(|_| https).map(str::to_string),
    };
    Ok(Some(observed(id, &typed)))
}

/// A listener's default action: a permanent redirect to HTTPS on 443 with
/// `redirect_to_https`, else forward to `default_target_group_arn`.
fn listener_action(p: &ListenerProps) -> Result<Action> {
    if !p.redirect_to_https {
        let target = p.default_target_group_arn.as_deref();
        return Ok(forward(required(target, "default_target_group_arn")?));
    }
    let redirect = RedirectActionConfig::builder()
        .protocol("HTTPS")
        .port("443")
        .status_code(RedirectActionStatusCodeEnum::Http301)
        .build();
    Ok(Action::builder()
        .r#type(ActionTypeEnum::Redirect)
        .redirect_config(redirect)
        .build())
}

fn redirects_to_https(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        a.r#type() == Some(&ActionTypeEnum::Redirect)
            && a.redirect_config().and_then(|r| r.protocol()) == Some("HTTPS")
    })
}
