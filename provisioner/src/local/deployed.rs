//! The deployed stack as the cloud has it, not as the blueprint says: each
//! ECS service's task definition and desired count, and the load balancer's
//! listener rules and target groups. `run-local` runs exactly this.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use aws_sdk_ecs::types::ContainerDefinition;
use aws_sdk_elasticloadbalancingv2::types::{Action as ElbAction, ActionTypeEnum, Listener};

use super::routing::{Action, HealthCheck, Matcher, PathPattern, Routes, Rule};
use crate::cloud::Cloud;

/// One ECS service.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployedService {
    /// The service's name.
    pub name: String,
    /// Tasks ECS keeps running.
    pub desired_count: u32,
    /// Its task definition.
    pub task: TaskSpec,
    /// The target group its tasks register with, and the container port.
    pub target: Option<(String, u16)>,
}

/// A task definition's one container, as ECS would start it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// `REGISTRY/REPOSITORY@sha256:...`.
    pub image: String,
    /// The container's environment.
    pub environment: BTreeMap<String, String>,
    /// Environment variables filled from SSM parameters (name -> ARN or name).
    pub secrets: BTreeMap<String, String>,
    /// The container's health check (exec form, without `CMD`).
    pub health_check: Option<ContainerCheck>,
    /// Role whose credentials the task gets.
    pub task_role_arn: Option<String>,
    /// Role ECS pulls the image and reads the secrets with.
    pub execution_role_arn: Option<String>,
    /// Overrides of the image's entrypoint and command.
    pub entry_point: Vec<String>,
    /// Overrides of the image's command.
    pub command: Vec<String>,
}

/// A container health check.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerCheck {
    /// The command, run inside the container.
    pub command: Vec<String>,
    /// Time between checks.
    pub interval: Duration,
    /// A check running longer fails.
    pub timeout: Duration,
    /// Failures in a row that make the container unhealthy.
    pub retries: u32,
    /// Failures in this time after the start do not count.
    pub start_period: Duration,
}

/// A target group.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroup {
    /// Its name.
    pub name: String,
    /// How its targets are checked.
    pub check: HealthCheck,
}

/// The load balancer's listener that `run-local` serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Balancer {
    /// The listener's port and protocol in the cloud.
    pub listener: String,
    /// Its rules.
    pub routes: Routes,
    /// Every target group of the load balancer, by ARN.
    pub target_groups: BTreeMap<String, TargetGroup>,
}

/// Reads the services of the ECS cluster `cluster` (ARN or name).
pub async fn services(cloud: &Cloud, cluster: &str) -> anyhow::Result<Vec<DeployedService>> {
    let mut arns = Vec::new();
    let mut next = None;
    loop {
        let out = cloud
            .ecs
            .list_services()
            .cluster(cluster)
            .set_next_token(next)
            .send()
            .await
            .context("ecs ListServices")?;
        arns.extend(out.service_arns().iter().cloned());
        next = out.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    let mut services = Vec::new();
    // DescribeServices takes at most 10.
    for chunk in arns.chunks(10) {
        let out = cloud
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await
            .context("ecs DescribeServices")?;
        for service in out.services() {
            let name = service.service_name().unwrap_or_default().to_string();
            let definition = service
                .task_definition()
                .with_context(|| format!("service {name} has no task definition"))?;
            let task = task_spec(cloud, definition)
                .await
                .with_context(|| format!("service {name}"))?;
            let target = service.load_balancers().first().and_then(|lb| {
                let port = u16::try_from(lb.container_port()?).ok()?;
                Some((lb.target_group_arn()?.to_string(), port))
            });
            services.push(DeployedService {
                name,
                desired_count: u32::try_from(service.desired_count()).unwrap_or(0),
                task,
                target,
            });
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(services)
}

async fn task_spec(cloud: &Cloud, arn: &str) -> anyhow::Result<TaskSpec> {
    let out = cloud
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .context("ecs DescribeTaskDefinition")?;
    let task = out
        .task_definition()
        .with_context(|| format!("{arn}: no task definition"))?;
    let [container] = task.container_definitions() else {
        bail!(
            "{arn}: {} containers; run-local runs task definitions of one container, as the stack makes them",
            task.container_definitions().len()
        );
    };
    Ok(TaskSpec {
        image: container
            .image()
            .with_context(|| format!("{arn}: the container has no image"))?
            .to_string(),
        environment: container
            .environment()
            .iter()
            .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
            .collect(),
        secrets: container
            .secrets()
            .iter()
            .map(|s| (s.name().to_string(), s.value_from().to_string()))
            .collect(),
        health_check: container_check(container)?,
        task_role_arn: task.task_role_arn().map(str::to_string),
        execution_role_arn: task.execution_role_arn().map(str::to_string),
        entry_point: container.entry_point().to_vec(),
        command: container.command().to_vec(),
    })
}

fn container_check(container: &ContainerDefinition) -> anyhow::Result<Option<ContainerCheck>> {
    let Some(check) = container.health_check() else {
        return Ok(None);
    };
    let command = match check.command() {
        [kind, rest @ ..] if kind == "CMD" => rest.to_vec(),
        other => bail!(
            "health check {other:?}: run-local runs exec-form checks ([\"CMD\", ...]); the images have no shell"
        ),
    };
    // ECS's defaults.
    Ok(Some(ContainerCheck {
        command,
        interval: seconds(check.interval(), 30),
        timeout: seconds(check.timeout(), 5),
        retries: count(check.retries(), 3),
        start_period: seconds(check.start_period(), 0),
    }))
}

/// A number of seconds the API gives as `i32`, `default` when absent.
fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.and_then(|s| u64::try_from(s).ok()).unwrap_or(default))
}

/// A count the API gives as `i32`, `default` when absent.
fn count(value: Option<i32>, default: u32) -> u32 {
    value.and_then(|c| u32::try_from(c).ok()).unwrap_or(default)
}

/// Reads the load balancer `arn`: the listener to serve (the first that
/// does not only redirect, so HTTPS when HTTP only redirects to it), its
/// rules, and its target groups.
pub async fn balancer(cloud: &Cloud, arn: &str) -> anyhow::Result<Balancer> {
    let listeners = cloud
        .elb
        .describe_listeners()
        .load_balancer_arn(arn)
        .send()
        .await
        .context("elbv2 DescribeListeners")?;
    let mut listeners: Vec<&Listener> = listeners.listeners().iter().collect();
    listeners.sort_by_key(|l| l.port());
    let only_redirects = |l: &Listener| {
        l.default_actions()
            .iter()
            .all(|a| a.r#type() == Some(&ActionTypeEnum::Redirect))
    };
    let listener = listeners
        .iter()
        .find(|l| !only_redirects(l))
        .or(listeners.first())
        .with_context(|| format!("load balancer {arn} has no listener"))?;
    let listener_arn = listener.listener_arn().unwrap_or_default();
    let default = action(listener.default_actions())
        .with_context(|| format!("listener {listener_arn}: default action"))?;

    let mut rules = Vec::new();
    let mut marker = None;
    loop {
        let out = cloud
            .elb
            .describe_rules()
            .listener_arn(listener_arn)
            .set_marker(marker)
            .send()
            .await
            .context("elbv2 DescribeRules")?;
        for rule in out.rules() {
            if rule.is_default() == Some(true) || rule.priority() == Some("default") {
                continue;
            }
            let rule_arn = rule.rule_arn().unwrap_or_default();
            let priority = rule
                .priority()
                .and_then(|p| p.parse().ok())
                .with_context(|| format!("rule {rule_arn}: priority {:?}", rule.priority()))?;
            let mut patterns = Vec::new();
            for condition in rule.conditions() {
                let field = condition.field().unwrap_or_default();
                if field != "path-pattern" {
                    bail!("rule {rule_arn}: run-local matches path patterns only, not {field}");
                }
                for value in crate::cloud::alb::path_patterns(condition) {
                    patterns.push(
                        PathPattern::new(&value).map_err(|e| anyhow!("rule {rule_arn}: {e}"))?,
                    );
                }
            }
            rules.push(Rule {
                priority,
                path_patterns: patterns,
                action: action(rule.actions()).with_context(|| format!("rule {rule_arn}"))?,
            });
        }
        marker = out.next_marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }

    let groups = cloud
        .elb
        .describe_target_groups()
        .load_balancer_arn(arn)
        .send()
        .await
        .context("elbv2 DescribeTargetGroups")?;
    let mut target_groups = BTreeMap::new();
    for group in groups.target_groups() {
        let group_arn = group.target_group_arn().unwrap_or_default().to_string();
        // ALB's defaults where the cloud leaves a value out.
        let check = HealthCheck {
            path: group.health_check_path().unwrap_or("/").to_string(),
            interval: seconds(group.health_check_interval_seconds(), 30),
            timeout: seconds(group.health_check_timeout_seconds(), 5),
            healthy_threshold: count(group.healthy_threshold_count(), 5),
            unhealthy_threshold: count(group.unhealthy_threshold_count(), 2),
            matcher: Matcher::parse(group.matcher().and_then(|m| m.http_code()).unwrap_or("200"))
                .map_err(|e| anyhow!("target group {group_arn}: {e}"))?,
        };
        target_groups.insert(
            group_arn,
            TargetGroup {
                name: group.target_group_name().unwrap_or_default().to_string(),
                check,
            },
        );
    }
    Ok(Balancer {
        listener: format!(
            "{} :{}",
            listener
                .protocol()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            listener.port().unwrap_or_default()
        ),
        routes: Routes::new(rules, default),
        target_groups,
    })
}

/// The one action of a rule (ALB's last action is the one that answers;
/// authentication actions before it are not run locally).
fn action(actions: &[ElbAction]) -> anyhow::Result<Action> {
    let mut actions: Vec<&ElbAction> = actions.iter().collect();
    actions.sort_by_key(|a| a.order());
    let last = actions.last().context("no action")?;
    match last.r#type() {
        Some(ActionTypeEnum::Forward) => {
            let groups: Vec<&str> = match last.forward_config() {
                Some(config) => config
                    .target_groups()
                    .iter()
                    .filter_map(|g| g.target_group_arn())
                    .collect(),
                None => Vec::new(),
            };
            let arn = match (last.target_group_arn(), groups.as_slice()) {
                (Some(arn), _) => arn,
                (None, [arn]) => arn,
                (None, other) => bail!(
                    "a forward to {} target groups; run-local forwards to one",
                    other.len()
                ),
            };
            Ok(Action::Forward(arn.to_string()))
        }
        Some(ActionTypeEnum::FixedResponse) => {
            let config = last
                .fixed_response_config()
                .context("fixed-response without its config")?;
            Ok(Action::Fixed {
                status: config
                    .status_code()
                    .unwrap_or_default()
                    .parse()
                    .with_context(|| format!("status {:?}", config.status_code()))?,
                content_type: config.content_type().map(str::to_string),
                body: config.message_body().map(str::to_string),
            })
        }
        Some(ActionTypeEnum::Redirect) => {
            let config = last
                .redirect_config()
                .context("redirect without its config")?;
            let part = |v: Option<&str>, default: &str| v.unwrap_or(default).to_string();
            Ok(Action::Redirect {
                status: if config.status_code().map(|c| c.as_str()) == Some("HTTP_302") {
                    302
                } else {
                    301
                },
                protocol: part(config.protocol(), "#{protocol}"),
                host: part(config.host(), "#{host}"),
                port: part(config.port(), "#{port}"),
                path: part(config.path(), "/#{path}"),
                query: part(config.query(), "#{query}"),
            })
        }
        other => bail!("action {other:?}: run-local answers forward, fixed-response and redirect"),
    }
}
