//! `provision status`: how the applied stack is doing, read from AWS, and
//! whether that is what the blueprint wants. Gathering calls AWS (and the
//! broker, when it can be reached); judging and rendering are pure.

use std::fmt::Write as _;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::blueprint::Blueprint;
use crate::cloud::support::sent;
use crate::cloud::{ecs, network, Cloud};
use crate::stack::Outputs;
use crate::state::State;
use event_common::platform::{CONSUMER_GROUP, EVENTS_TOPIC};

/// How long the lag lookup waits for the broker before saying it is unreachable.
const BROKER_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything `provision status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The stack's name.
    pub stack: String,
    /// Its region.
    pub region: String,
    /// One per service the blueprint has.
    pub services: Vec<ServiceStatus>,
    /// One per target group (the services behind the load balancer).
    pub target_groups: Vec<TargetGroupStatus>,
    /// The broker's instance.
    pub broker: Option<BrokerStatus>,
    /// The load balancer.
    pub load_balancer: Option<LoadBalancerStatus>,
    /// How far the processor is behind.
    pub consumer_lag: ConsumerLag,
    /// What differs from what the blueprint wants; empty when nothing does.
    pub problems: Vec<String>,
}

/// One ECS service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// Tasks the blueprint wants.
    pub wanted: i64,
    /// Tasks ECS is asked for (`None`: the service is missing).
    pub desired: Option<i64>,
    /// Tasks running.
    pub running: i64,
    /// Tasks starting.
    pub pending: i64,
    /// The primary deployment's rollout state (`COMPLETED`, `IN_PROGRESS`, `FAILED`).
    pub rollout: Option<String>,
    /// Its reason, as ECS gives it.
    pub rollout_reason: Option<String>,
    /// Deployments at once (more than one while a deployment rolls).
    pub deployments: usize,
    /// A failed deployment or a circuit-breaker rollback, with why the
    /// last tasks stopped.
    pub failure: Option<String>,
}

/// One target group's targets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetGroupStatus {
    /// The service behind it.
    pub service: String,
    /// Whether the blueprint runs tasks for it (none wanted: no target needed).
    pub wanted: bool,
    /// Every registered target.
    pub targets: Vec<Target>,
}

/// A target and its health, as the load balancer reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// `IP:PORT`.
    pub id: String,
    /// `healthy`, `unhealthy`, `initial`, `draining`, `unused`, `unavailable`.
    pub state: String,
    /// AWS's reason code (`Target.ResponseCodeMismatch`, ...).
    pub reason: Option<String>,
    /// AWS's words for it.
    pub description: Option<String>,
}

/// The broker's instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokerStatus {
    /// The instance id.
    pub instance_id: String,
    /// `running`, `stopped`, ... (`missing`: gone).
    pub state: String,
    /// EC2's system status check (`ok`, `impaired`, `initializing`, ...).
    pub system_check: Option<String>,
    /// EC2's instance status check.
    pub instance_check: Option<String>,
    /// What its setup reported (`ready`, `failed: ...`).
    pub setup: Option<String>,
}

/// The load balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadBalancerStatus {
    /// `active`, `provisioning`, `failed` (`missing`: gone).
    pub state: String,
    /// Where clients reach it.
    pub url: Option<String>,
}

/// The processor's consumer lag on the events topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerLag {
    /// The broker asked.
    pub broker: Option<String>,
    /// Events not yet processed, over all partitions (`None`: not known).
    pub events: Option<i64>,
    /// Partitions of the topic.
    pub partitions: usize,
    /// Why it is not known.
    pub unknown_because: Option<String>,
}

impl Status {
    /// Reads the stack's services, targets, broker and load balancer as
    /// `state` records them, and the lag from `kafka` (default: the broker's
    /// private address, reachable from inside the VPC only; none for a
    /// stack on an emulator).
    pub async fn gather(
        cloud: &Cloud,
        blueprint: &Blueprint,
        state: &State,
        kafka: Option<&str>,
    ) -> anyhow::Result<Self> {
        let recorded = |address: &str| state.resources.get(address);
        let mut services = Vec::new();
        let mut target_groups = Vec::new();
        for service in blueprint.services() {
            let wanted = i64::from(service.desired_count);
            let name = service.name.to_string();
            let task_definition = recorded(&format!("task_definition.{name}")).map(|r| &r.id);
            let status = match recorded(&format!("ecs_service.{name}")) {
                Some(r) => service_status(cloud, &r.id, &name, wanted, task_definition).await?,
                None => ServiceStatus::missing(&name, wanted),
            };
            services.push(status);
            if let Some(tg) = recorded(&format!("target_group.{name}")) {
                target_groups.push(TargetGroupStatus {
                    service: name,
                    wanted: wanted > 0,
                    targets: targets(cloud, &tg.id).await?,
                });
            }
        }
        let broker = match recorded("instance.broker") {
            Some(r) => Some(broker_status(cloud, &r.id).await?),
            None => None,
        };
        let outputs = Outputs::of(state);
        let load_balancer = match recorded("load_balancer.main") {
            Some(r) => Some(LoadBalancerStatus {
                state: load_balancer_state(cloud, &r.id).await?,
                url: outputs.dashboard_url,
            }),
            None => None,
        };
        // An emulator's broker address is not a real one: nothing is sent to it.
        let recorded_broker = outputs.broker_address.filter(|_| !blueprint.on_emulator());
        let consumer_lag = match kafka.map(str::to_string).or(recorded_broker) {
            Some(address) => {
                let lookup = address.clone();
                tokio::task::spawn_blocking(move || consumer_lag(&lookup))
                    .await
                    .unwrap_or_else(|e| ConsumerLag::unknown(Some(address), e.to_string()))
            }
            None if blueprint.on_emulator() => ConsumerLag::unknown(
                None,
                "the stack is on an emulator, whose broker address is not real (pass --kafka HOST:PORT)".into(),
            ),
            None => ConsumerLag::unknown(None, "the stack has no broker".into()),
        };
        let mut status = Self {
            stack: blueprint.stack().to_string(),
            region: blueprint.spec.stack.region.clone(),
            services,
            target_groups,
            broker,
            load_balancer,
            consumer_lag,
            problems: Vec::new(),
        };
        status.problems = status.judge(state.resources.is_empty());
        Ok(status)
    }

    /// What is not as the blueprint wants.
    pub fn judge(&self, nothing_applied: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if nothing_applied {
            problems.push("nothing is applied: run `provision apply`".to_string());
            return problems;
        }
        for s in &self.services {
            let name = &s.name;
            match s.desired {
                None => problems.push(format!("{name}: the ECS service is missing")),
                Some(desired) if desired != s.wanted => problems.push(format!(
                    "{name}: {desired} task(s) desired, the blueprint wants {}",
                    s.wanted
                )),
                Some(desired) if s.running != desired || s.pending > 0 => problems.push(format!(
                    "{name}: {} of {desired} task(s) running, {} pending",
                    s.running, s.pending
                )),
                Some(_) => {}
            }
            if let Some(failure) = &s.failure {
                problems.push(format!("{name}: {failure}"));
            } else if s.desired.is_some()
                && (s.deployments > 1 || s.rollout.as_deref().is_some_and(|r| r != "COMPLETED"))
            {
                problems.push(format!(
                    "{name}: deployment {}",
                    s.rollout_reason
                        .as_deref()
                        .or(s.rollout.as_deref())
                        .unwrap_or("in progress")
                ));
            }
        }
        for tg in &self.target_groups {
            let healthy = tg.targets.iter().filter(|t| t.state == "healthy").count();
            if tg.wanted && healthy == 0 {
                problems.push(format!("{}: no healthy target", tg.service));
            }
            for t in tg.targets.iter().filter(|t| t.state == "unhealthy") {
                problems.push(format!(
                    "{}: target {} unhealthy ({})",
                    tg.service,
                    t.id,
                    t.description
                        .as_deref()
                        .or(t.reason.as_deref())
                        .unwrap_or("no reason given")
                ));
            }
        }
        match &self.broker {
            None => problems.push("broker: no instance recorded".into()),
            Some(b) => {
                let checks = [("system", &b.system_check), ("instance", &b.instance_check)];
                if b.state != "running" {
                    problems.push(format!("broker: instance {}", b.state));
                }
                for (check, result) in checks {
                    if b.state == "running" && result.as_deref() != Some("ok") {
                        problems.push(format!(
                            "broker: {check} status check {}",
                            result.as_deref().unwrap_or("not reported")
                        ));
                    }
                }
                match b.setup.as_deref() {
                    Some("ready") => {}
                    Some(report) => problems.push(format!("broker: setup reported `{report}`")),
                    None => problems.push("broker: setup not reported yet".into()),
                }
            }
        }
        match &self.load_balancer {
            Some(lb) if lb.state != "active" => {
                problems.push(format!("load balancer: {}", lb.state))
            }
            Some(_) => {}
            None => problems.push("load balancer: none recorded".into()),
        }
        problems
    }

    /// Exit 0 when the stack is as the blueprint wants, 2 when not.
    pub fn exit_code(&self) -> u8 {
        if self.problems.is_empty() {
            0
        } else {
            2
        }
    }

    /// The one screen.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.problems.is_empty() {
            "as the blueprint wants"
        } else {
            "NOT as the blueprint wants"
        };
        let _ = writeln!(out, "Stack {} ({}): {verdict}", self.stack, self.region);
        let _ = writeln!(
            out,
            "\nServices            tasks (desired/wanted)  running  pending  deployment"
        );
        for s in &self.services {
            let desired = s.desired.map_or("-".to_string(), |d| d.to_string());
            let rollout = match (&s.failure, &s.rollout) {
                (Some(_), _) => "FAILED".to_string(),
                (None, Some(r)) if s.deployments > 1 => {
                    format!("{r} ({} deployments)", s.deployments)
                }
                (None, Some(r)) => r.clone(),
                (None, None) if s.desired.is_none() => "missing".to_string(),
                (None, None) => "-".to_string(),
            };
            let _ = writeln!(
                out,
                "  {:<18}{:>10}/{:<13}{:>7}{:>9}  {rollout}",
                s.name, desired, s.wanted, s.running, s.pending
            );
        }
        let _ = writeln!(out, "\nTargets             healthy  unhealthy  other");
        for tg in &self.target_groups {
            let count = |state: &str| tg.targets.iter().filter(|t| t.state == state).count();
            let (healthy, unhealthy) = (count("healthy"), count("unhealthy"));
            let other = tg.targets.len() - healthy - unhealthy;
            let _ = writeln!(
                out,
                "  {:<18}{healthy:>7}{unhealthy:>11}{other:>7}",
                tg.service
            );
            for t in tg.targets.iter().filter(|t| t.state != "healthy") {
                let why = [t.reason.as_deref(), t.description.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                let _ = writeln!(out, "    {} {} {why}", t.id, t.state);
            }
        }
        if let Some(b) = &self.broker {
            let check = |c: &Option<String>| c.clone().unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "\nBroker              {} {}, system check {}, instance check {}, setup {}",
                b.instance_id,
                b.state,
                check(&b.system_check),
                check(&b.instance_check),
                b.setup.as_deref().unwrap_or("not reported")
            );
        }
        if let Some(lb) = &self.load_balancer {
            let _ = writeln!(
                out,
                "Load balancer       {} {}",
                lb.state,
                lb.url.as_deref().unwrap_or("")
            );
        }
        let lag = &self.consumer_lag;
        let _ = match (lag.events, &lag.unknown_because) {
            (Some(events), _) => writeln!(
                out,
                "Consumer lag        {events} event(s) behind on {EVENTS_TOPIC} ({} partitions, group {CONSUMER_GROUP})",
                lag.partitions
            ),
            (None, Some(why)) => writeln!(out, "Consumer lag        unknown: {why}"),
            (None, None) => writeln!(out, "Consumer lag        unknown"),
        };
        if !self.problems.is_empty() {
            let _ = writeln!(out, "\nNot as the blueprint wants:");
            for problem in &self.problems {
                let _ = writeln!(out, "  - {problem}");
            }
        }
        out
    }
}

impl ServiceStatus {
    fn missing(name: &str, wanted: i64) -> Self {
        Self {
            name: name.to_string(),
            wanted,
            desired: None,
            running: 0,
            pending: 0,
            rollout: None,
            rollout_reason: None,
            deployments: 0,
            failure: None,
        }
    }
}

impl ConsumerLag {
    fn unknown(broker: Option<String>, why: String) -> Self {
        Self {
            broker,
            events: None,
            partitions: 0,
            unknown_because: Some(why),
        }
    }
}

async fn service_status(
    cloud: &Cloud,
    arn: &str,
    name: &str,
    wanted: i64,
    task_definition: Option<&String>,
) -> anyhow::Result<ServiceStatus> {
    let Some(service) = ecs::describe(cloud, arn).await? else {
        return Ok(ServiceStatus::missing(name, wanted));
    };
    if service.status() != Some("ACTIVE") {
        return Ok(ServiceStatus::missing(name, wanted));
    }
    let primary = service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"));
    let failure = match task_definition {
        Some(task_definition) => ecs::deployment_failure(cloud, arn, task_definition).await?,
        None => None,
    };
    Ok(ServiceStatus {
        name: name.to_string(),
        wanted,
        desired: Some(service.desired_count().into()),
        running: service.running_count().into(),
        pending: service.pending_count().into(),
        rollout: primary
            .and_then(|d| d.rollout_state())
            .map(|r| r.as_str().to_string()),
        rollout_reason: primary
            .and_then(|d| d.rollout_state_reason())
            .map(str::to_string),
        deployments: service.deployments().len(),
        failure,
    })
}

async fn targets(cloud: &Cloud, target_group: &str) -> anyhow::Result<Vec<Target>> {
    let request = cloud.elb.describe_target_health();
    let out = sent(
        "DescribeTargetHealth",
        request.target_group_arn(target_group).send(),
    )
    .await?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .map(|d| {
            let target = d.target();
            let health = d.target_health();
            Target {
                id: format!(
                    "{}:{}",
                    target.and_then(|t| t.id()).unwrap_or("?"),
                    target
                        .and_then(|t| t.port())
                        .map_or("?".into(), |p| p.to_string())
                ),
                state: health
                    .and_then(|h| h.state())
                    .map_or("unknown".into(), |s| s.as_str().to_string()),
                reason: health
                    .and_then(|h| h.reason())
                    .map(|r| r.as_str().to_string()),
                description: health.and_then(|h| h.description()).map(str::to_string),
            }
        })
        .collect())
}

async fn broker_status(cloud: &Cloud, id: &str) -> anyhow::Result<BrokerStatus> {
    let Some((state, setup)) = network::instance_status(cloud, id).await? else {
        return Ok(BrokerStatus {
            instance_id: id.to_string(),
            state: "missing".into(),
            system_check: None,
            instance_check: None,
            setup: None,
        });
    };
    let request = cloud
        .ec2
        .describe_instance_status()
        .instance_ids(id)
        .include_all_instances(true);
    let out = sent("DescribeInstanceStatus", request.send()).await?;
    let checks = out.instance_statuses().first();
    let summary = |s: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
        s.and_then(|s| s.status()).map(|s| s.as_str().to_string())
    };
    Ok(BrokerStatus {
        instance_id: id.to_string(),
        state,
        system_check: summary(checks.and_then(|c| c.system_status())),
        instance_check: summary(checks.and_then(|c| c.instance_status())),
        setup,
    })
}

async fn load_balancer_state(cloud: &Cloud, arn: &str) -> anyhow::Result<String> {
    Ok(crate::cloud::alb::load_balancer_state(cloud, arn)
        .await?
        .unwrap_or_else(|| "missing".into()))
}

/// The processor group's lag on the events topic: the high watermark
/// minus the committed offset of every partition (a partition with no
/// commit counts from its low watermark).
fn consumer_lag(bootstrap: &str) -> ConsumerLag {
    let unknown = |why: String| ConsumerLag::unknown(Some(bootstrap.to_string()), why);
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", CONSUMER_GROUP)
        .set("socket.connection.setup.timeout.ms", "2000")
        .create()
    {
        Ok(consumer) => consumer,
        Err(e) => return unknown(e.to_string()),
    };
    let metadata = match consumer.fetch_metadata(Some(EVENTS_TOPIC), BROKER_TIMEOUT) {
        Ok(metadata) => metadata,
        Err(e) => {
            return unknown(format!(
                "the broker at {bootstrap} did not answer ({e}); it is reachable from inside the VPC only (or pass --kafka HOST:PORT)"
            ))
        }
    };
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect();
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition(EVENTS_TOPIC, *p);
    }
    let committed = match consumer.committed_offsets(list, BROKER_TIMEOUT) {
        Ok(committed) => committed,
        Err(e) => return unknown(format!("committed offsets: {e}")),
    };
    let mut events = 0;
    for p in &partitions {
        let (low, high) = match consumer.fetch_watermarks(EVENTS_TOPIC, *p, BROKER_TIMEOUT) {
            Ok(marks) => marks,
            Err(e) => return unknown(format!("watermarks of partition {p}: {e}")),
        };
        let done = committed
            .find_partition(EVENTS_TOPIC, *p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(low);
        events += (high - done).max(0);
    }
    ConsumerLag {
        broker: Some(bootstrap.to_string()),
        events: Some(events),
        partitions: partitions.len(),
        unknown_because: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled() -> Status {
        let service = |name: &str| ServiceStatus {
            name: name.into(),
            wanted: 1,
            desired: Some(1),
            running: 1,
            pending: 0,
            rollout: Some("COMPLETED".into()),
            rollout_reason: None,
            deployments: 1,
            failure: None,
        };
        let target = |state: &str| Target {
            id: "10.40.0.7:8000".into(),
            state: state.into(),
            reason: None,
            description: None,
        };
        Status {
            stack: "ep".into(),
            region: "eu-west-1".into(),
            services: vec![service("ingest"), service("processor")],
            target_groups: vec![TargetGroupStatus {
                service: "ingest".into(),
                wanted: true,
                targets: vec![target("healthy")],
            }],
            broker: Some(BrokerStatus {
                instance_id: "i-1".into(),
                state: "running".into(),
                system_check: Some("ok".into()),
                instance_check: Some("ok".into()),
                setup: Some("ready".into()),
            }),
            load_balancer: Some(LoadBalancerStatus {
                state: "active".into(),
                url: None,
            }),
            consumer_lag: ConsumerLag::unknown(None, "test".into()),
            problems: Vec::new(),
        }
    }

    #[test]
    fn a_settled_stack_has_no_problem_and_each_departure_is_named() {
        assert_eq!(settled().judge(false), Vec::<String>::new());
        assert_eq!(
            settled().judge(true),
            ["nothing is applied: run `provision apply`"]
        );
        type Change = Box<dyn Fn(&mut Status)>;
        let cases: Vec<(&str, Change)> = vec![
            ("ingest: 0 task(s) desired, the blueprint wants 1", Box::new(|s| s.services[0].desired = Some(0))),
            ("ingest: 0 of 1 task(s) running, 1 pending", Box::new(|s| { s.services[0].running = 0; s.services[0].pending = 1; })),
            ("processor: the circuit breaker rolled the service back to td:3", Box::new(|s| s.services[1].failure = Some("the circuit breaker rolled the service back to td:3".into()))),
            ("ingest: deployment ECS deployment ecs-svc/1 in progress.", Box::new(|s| { s.services[0].rollout = Some("IN_PROGRESS".into()); s.services[0].rollout_reason = Some("ECS deployment ecs-svc/1 in progress.".into()); })),
            ("ingest: the ECS service is missing", Box::new(|s| s.services[0].desired = None)),
            ("ingest: no healthy target", Box::new(|s| s.target_groups[0].targets.clear())),
            ("ingest: target 10.40.0.7:8000 unhealthy (Health checks failed with these codes: [503])", Box::new(|s| {
                let t = &mut s.target_groups[0].targets[0];
                t.state = "unhealthy".into();
                t.reason = Some("Target.ResponseCodeMismatch".into());
                t.description = Some("Health checks failed with these codes: [503]".into());
            })),
            ("broker: instance stopped", Box::new(|s| if let Some(b) = &mut s.broker { b.state = "stopped".into() })),
            ("broker: system status check impaired", Box::new(|s| if let Some(b) = &mut s.broker { b.system_check = Some("impaired".into()) })),
            ("broker: setup reported `failed: topics`", Box::new(|s| if let Some(b) = &mut s.broker { b.setup = Some("failed: topics".into()) })),
            ("load balancer: provisioning", Box::new(|s| if let Some(lb) = &mut s.load_balancer { lb.state = "provisioning".into() })),
        ];
        for (expected, change) in cases {
            let mut status = settled();
            change(&mut status);
            let problems = status.judge(false);
            assert!(
                problems.iter().any(|p| p == expected),
                "{expected}: {problems:?}"
            );
            status.problems = problems;
            assert_eq!(status.exit_code(), 2);
            assert!(status.render().contains(expected), "{}", status.render());
        }
        let mut idle = settled();
        idle.target_groups[0].wanted = false;
        idle.target_groups[0].targets.clear();
        assert_eq!(
            idle.judge(false),
            Vec::<String>::new(),
            "no task wanted, no target needed"
        );
    }
}
