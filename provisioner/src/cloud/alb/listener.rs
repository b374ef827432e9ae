//! A listener of the load balancer: a port and protocol (HTTPS with a
//! certificate and TLS policy), whose default action forwards to a target
//! group or redirects to HTTPS. Its id and `arn` output are its ARN.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};
use serde_json::Value;

use super::{
    all_listeners, find_ours, forward, forward_target, in_stack_only, listeners_of, one_tags,
    opt_str, prop_elb_tags, prop_i32, retag, GONE,
};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::{absent, gone_ok, prop_str, tags_value};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

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
        let listed = listeners_of(cloud, prop_str(props, "load_balancer_arn")?).await;
        let Some(candidates) = absent(listed, GONE)? else {
            return Ok(None);
        };
        find_ours(cloud, address, candidates).await
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        Ok(absent(observe(cloud, id).await, GONE)?.flatten())
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let tags = Some(prop_elb_tags(props)?);
        let certificates = match props.get("certificate_arn") {
            Some(Value::String(arn)) => {
                Some(vec![Certificate::builder().certificate_arn(arn).build()])
            }
            _ => None,
        };
        let out = cloud
            .elb
            .create_listener()
            .load_balancer_arn(prop_str(props, "load_balancer_arn")?)
            .port(prop_i32(props, "port")?)
            .protocol(ProtocolEnum::from(prop_str(props, "protocol")?))
            .set_certificates(certificates)
            .set_ssl_policy(ssl_policy(props))
            .default_actions(listener_action(props)?)
            .set_tags(tags)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateListener", e))?;
        out.listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .map(str::to_string)
            .ok_or_else(|| CloudError::invalid("CreateListener", "no listener ARN"))
    }

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        let has = |name: &str| changed.iter().any(|c| c == name);
        if has("default_target_group_arn") || has("redirect_to_https") || has("ssl_policy") {
            let mut request = cloud.elb.modify_listener().listener_arn(id);
            if has("default_target_group_arn") || has("redirect_to_https") {
                request = request.default_actions(listener_action(props)?);
            }
            if has("ssl_policy") {
                request = request.set_ssl_policy(ssl_policy(props));
            }
            request
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("ModifyListener", e))?;
        }
        if has("tags") {
            retag(cloud, id, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .elb
            .delete_listener()
            .listener_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteListener", e));
        gone_ok(deleted, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        in_stack_only(cloud, all_listeners(cloud).await?).await
    }
}

async fn observe(cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
    let out = cloud
        .elb
        .describe_listeners()
        .listener_arns(id)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeListeners", e))?;
    let Some(listener) = out.listeners().first() else {
        return Ok(None);
    };
    let certificate = listener
        .certificates()
        .first()
        .and_then(|c| c.certificate_arn());
    let props = Props::from([
        (
            "load_balancer_arn".into(),
            opt_str(listener.load_balancer_arn()),
        ),
        (
            "port".into(),
            listener.port().map_or(Value::Null, Value::from),
        ),
        (
            "protocol".into(),
            opt_str(listener.protocol().map(|p| p.as_str())),
        ),
        ("certificate_arn".into(), opt_str(certificate)),
        // moto reports a policy on HTTP listeners too; AWS has one only for HTTPS.
        (
            "ssl_policy".into(),
            opt_str(
                listener
                    .ssl_policy()
                    .filter(|_| listener.protocol() == Some(&ProtocolEnum::Https)),
            ),
        ),
        (
            "redirect_to_https".into(),
            Value::Bool(redirects_to_https(listener.default_actions())),
        ),
        (
            "default_target_group_arn".into(),
            opt_str(forward_target(listener.default_actions())),
        ),
        ("tags".into(), tags_value(one_tags(cloud, id).await?)),
    ]);
    let outputs = Props::from([("arn".into(), Value::String(id.to_string()))]);
    Ok(Some(Observed { props, outputs }))
}

/// `ssl_policy` of an HTTPS listener (`None` for HTTP).
fn ssl_policy(props: &Props) -> Option<String> {
    props
        .get("ssl_policy")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A listener's default action: a permanent redirect to HTTPS on 443 with
/// `redirect_to_https`, else forward to `default_target_group_arn`.
fn listener_action(props: &Props) -> Result<Action> {
    if props.get("redirect_to_https").and_then(Value::as_bool) != Some(true) {
        return Ok(forward(prop_str(props, "default_target_group_arn")?));
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
