//! `provision run-local`: the deployed stack's tasks on this machine, behind
//! a load balancer that follows the deployed listener rules.
//!
//! Everything comes from the cloud, not the blueprint ([`deployed`]): each
//! ECS service's task definition and desired count, the listener's rules
//! and the target groups' health checks. Each task runs its image, pulled
//! by digest with the execution role's credentials ([`task`]), with the task
//! definition's environment, its secrets read from SSM with the execution
//! role's credentials, and its task role's credentials served as ECS serves
//! them ([`credentials`]). The one value changed is the broker's address:
//! the task definitions name the broker instance's private address, which
//! this machine cannot reach. The load balancer ([`balancer`], decisions in
//! [`routing`]) re-reads the rules every [`RULES_REFRESH`].

pub mod balancer;
pub mod credentials;
pub mod deployed;
pub mod routing;
pub mod task;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use aws_config::SdkConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio_util::sync::CancellationToken;

use crate::blueprint::Blueprint;
use crate::cloud::Cloud;
use crate::image::registry::{parse_endpoint, Registry};
use crate::state::StateFile;
use balancer::LoadBalancer;
use credentials::{role_name, Assumer, CredentialServer};
use deployed::DeployedService;
use task::TaskPlan;

/// How often the load balancer re-reads the listener rules and target groups.
pub const RULES_REFRESH: Duration = Duration::from_secs(5);

/// The broker address variable, the one value changed from the task definitions.
const BROKER_VARIABLE: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// Options of `run-local`.
#[derive(Debug, Clone)]
pub struct RunLocalOptions {
    /// The load balancer's port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// A Kafka broker here; `None` starts an embedded one.
    pub kafka: Option<String>,
    /// The state folder (the stack's state file, and the tasks' files beside it).
    pub state_dir: PathBuf,
}

/// Status lines on stdout (write errors are ignored: a closed stdout must
/// not stop the tasks).
#[derive(Debug, Clone, Default)]
pub struct Report;

impl Report {
    /// One line.
    pub fn say(&self, line: &str) {
        let time = chrono::Utc::now().format("%H:%M:%S");
        let _ = writeln!(std::io::stdout(), "{time} {line}");
    }

    /// One line about task `id`.
    pub fn task(&self, id: &str, what: &str) {
        self.say(&format!("task {id}: {what}"));
    }
}

/// Runs the deployed stack of `blueprint` until `shutdown`, then stops every
/// task. Not `Send`: the embedded broker lives on the calling task.
pub async fn run(
    blueprint: &Blueprint,
    options: RunLocalOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    ensure_root()?;
    let report = Report;
    let stack = blueprint.stack();
    let state = StateFile::read(&options.state_dir, stack)?.state;
    let id_of = |address: &str| {
        state
            .resources
            .get(address)
            .map(|r| r.id.clone())
            .with_context(|| {
                format!("the state of {stack} has no {address}: apply the stack first")
            })
    };
    let cluster = id_of("ecs_cluster.main")?;
    let load_balancer = id_of("load_balancer.main")?;
    let config = crate::stack::Stack::sdk_config(blueprint).await;
    let cloud = Cloud::new(&config, stack);

    let services = deployed::services(&cloud, &cluster).await?;
    let rules = deployed::balancer(&cloud, &load_balancer).await?;
    let assumer = Assumer::new(&config);
    let roles: BTreeSet<&String> = services
        .iter()
        .flat_map(|s| [&s.task.task_role_arn, &s.task.execution_role_arn])
        .flatten()
        .collect();
    for arn in &roles {
        assumer.ensure_trusted(arn).await?;
    }
    let credentials = CredentialServer::start(&assumer, roles).await?;

    let (_embedded, broker) = match &options.kafka {
        Some(addr) => (None, addr.clone()),
        None => {
            let cluster = embedded_broker()?;
            let addr = cluster.bootstrap_servers();
            (Some(cluster), addr)
        }
    };

    let work = options.state_dir.join(format!("{stack}.run-local"));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .with_context(|| format!("binding the load balancer to 127.0.0.1:{}", options.port))?;
    let port = listener.local_addr()?.port();
    let balancer = LoadBalancer::new(&rules, report.clone(), port);
    let stop = CancellationToken::new();

    let mut plans = Vec::new();
    for service in &services {
        let execution = service
            .task
            .execution_role_arn
            .as_deref()
            .with_context(|| format!("service {}: no execution role", service.name))?;
        let execution_config = credentials
            .current(role_name(execution))
            .context("execution role credentials")?
            .sdk_config(&config);
        let image = pull(blueprint, &execution_config, &service.task.image)
            .await
            .with_context(|| format!("service {}: pulling {}", service.name, service.task.image))?;
        let secrets = secrets(&execution_config, service).await?;
        for n in 1..=service.desired_count {
            let plan = task_plan(service, n, &image, &secrets, &credentials, &broker, &work)?;
            plans.push(plan);
        }
    }

    report.say(&format!(
        "load balancer: http://127.0.0.1:{port} ({} rules of {}, re-read every {} s)",
        rules.routes.rule_count(),
        rules.listener,
        RULES_REFRESH.as_secs()
    ));
    let broker_note = match &options.kafka {
        Some(_) => "--kafka",
        None => "the embedded broker",
    };
    let replaced: BTreeSet<&String> = services
        .iter()
        .filter_map(|s| s.task.environment.get(BROKER_VARIABLE))
        .collect();
    for from in replaced {
        report.say(&format!("substituted: {BROKER_VARIABLE}={from} -> {broker} ({broker_note}; the broker instance's private address is not reachable from here)"));
    }
    for plan in &plans {
        if let Some(port) = &plan.port_substitution {
            report.task(
                &plan.id,
                &format!("substituted {port} (tasks of one service share this machine's network)"),
            );
        }
        report.task(&plan.id, &format!("log {}", plan.log_path().display()));
    }

    let mut running = tokio::task::JoinSet::new();
    running.spawn(balancer.clone().serve(listener, stop.clone()));
    for plan in plans {
        let (balancer, report, stop) = (balancer.clone(), report.clone(), stop.clone());
        running.spawn(async move {
            task::supervise(plan, balancer, report, stop).await;
            Ok(())
        });
    }
    running.spawn(refresh_rules(
        cloud.clone(),
        load_balancer,
        balancer.clone(),
        report.clone(),
        stop.clone(),
    ));

    shutdown.await;
    report.say("stopping every task (SIGTERM, then SIGKILL after 30 s)");
    stop.cancel();
    while let Some(done) = running.join_next().await {
        if let Ok(Err(e)) = done {
            report.say(&format!("load balancer: {e}"));
        }
    }
    report.say("run-local stopped");
    Ok(())
}

/// chroot needs root: say so before anything else.
fn ensure_root() -> anyhow::Result<()> {
    // /proc/self belongs to the process's effective user.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .context("reading /proc/self")?;
    if uid != 0 {
        bail!(
            "run-local runs each task's image in its own root filesystem with chroot, which needs root: \
             run it as root (for example with sudo)"
        );
    }
    Ok(())
}

/// A Kafka-protocol broker in this process with the stack's topics.
fn embedded_broker() -> anyhow::Result<MockCluster<'static, DefaultProducerContext>> {
    let cluster = MockCluster::new(1).context("starting the embedded broker")?;
    for (topic, partitions) in event_common::platform::TOPICS {
        let partitions = i32::try_from(partitions).unwrap_or(1);
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("creating {topic} on the embedded broker"))?;
    }
    Ok(cluster)
}

/// Pulls `reference` (`HOST/REPOSITORY@DIGEST`) as the execution role would:
/// with the registry password from ECR's `GetAuthorizationToken`, over
/// plain HTTP only when the blueprint's `images.registry` says so.
async fn pull(
    blueprint: &Blueprint,
    config: &SdkConfig,
    reference: &str,
) -> anyhow::Result<Arc<crate::image::registry::Pulled>> {
    let (name, digest) = reference
        .split_once('@')
        .with_context(|| format!("{reference}: not pinned to a digest"))?;
    let (host, repository) = name
        .split_once('/')
        .with_context(|| format!("{reference}: no registry host"))?;
    let url = match blueprint
        .spec
        .images
        .registry
        .as_deref()
        .filter(|url| parse_endpoint(url).is_some_and(|(_, h)| h == host))
    {
        Some(url) => url.to_string(),
        None => format!("https://{host}"),
    };
    let ecr = aws_sdk_ecr::Client::new(config);
    let registry = Registry::connect(&ecr, Some(&url)).await?;
    Ok(Arc::new(registry.pull(repository, digest).await?))
}

/// The task definition's secrets, read from SSM with the execution role's
/// credentials in one `GetParameters`, as the ECS agent reads them.
async fn secrets(
    config: &SdkConfig,
    service: &DeployedService,
) -> anyhow::Result<Vec<(String, String)>> {
    if service.task.secrets.is_empty() {
        return Ok(Vec::new());
    }
    let names: BTreeMap<String, &String> = service
        .task
        .secrets
        .iter()
        .map(|(variable, from)| (parameter_name(from), variable))
        .collect();
    let out = aws_sdk_ssm::Client::new(config)
        .get_parameters()
        .set_names(Some(names.keys().cloned().collect()))
        .with_decryption(true)
        .send()
        .await
        .with_context(|| format!("service {}: ssm GetParameters", service.name))?;
    if let Some(missing) = out.invalid_parameters().first() {
        bail!("service {}: no SSM parameter {missing}", service.name);
    }
    let mut values = Vec::new();
    for parameter in out.parameters() {
        let name = parameter.name().unwrap_or_default();
        let (Some(variable), Some(value)) = (names.get(name), parameter.value()) else {
            continue;
        };
        values.push(((*variable).clone(), value.to_string()));
    }
    ensure!(
        values.len() == names.len(),
        "service {}: SSM answered {} of the {} secrets",
        service.name,
        values.len(),
        names.len()
    );
    Ok(values)
}

/// An SSM parameter's name from a task definition's `valueFrom` (its ARN,
/// or its name); a hierarchical name keeps its leading `/`.
fn parameter_name(value_from: &str) -> String {
    match value_from
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":parameter/"))
    {
        Some((_, name)) if name.contains('/') => format!("/{name}"),
        Some((_, name)) => name.to_string(),
        None => value_from.to_string(),
    }
}

/// Slot `n` of `service`: its environment is the image's, then exactly the
/// task definition's with the broker substituted, its secrets, and where to
/// find its credentials.
fn task_plan(
    service: &DeployedService,
    n: u32,
    image: &Arc<crate::image::registry::Pulled>,
    secrets: &[(String, String)],
    credentials: &CredentialServer,
    broker: &str,
    work: &std::path::Path,
) -> anyhow::Result<TaskPlan> {
    let id = format!("{}/{n}", service.name);
    let (argv, user) = task::argv_and_user(
        &image.config,
        &service.task.entry_point,
        &service.task.command,
    )
    .with_context(|| format!("task {id}"))?;
    let mut env: BTreeMap<String, String> = task::image_env(&image.config).into_iter().collect();
    env.extend(service.task.environment.clone());
    env.insert(BROKER_VARIABLE.into(), broker.into());
    env.extend(secrets.iter().cloned());
    let role = service
        .task
        .task_role_arn
        .as_deref()
        .with_context(|| format!("service {}: no task role", service.name))?;
    env.extend(credentials.env_for(role_name(role)));
    // Tasks after a service's first share this machine's network with it,
    // so they listen elsewhere: a free `PORT` (the services behind the load
    // balancer) or `METRICS_PORT` (the processor's health and metrics).
    let mut listen_port = None;
    if n > 1 {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let variable = if service.target.is_some() {
            "PORT"
        } else {
            "METRICS_PORT"
        };
        env.insert(variable.into(), free.to_string());
        listen_port = Some((variable, free));
    }
    let target = service.target.as_ref().map(|(group, port)| {
        let port = listen_port.map_or(*port, |(_, free)| free);
        (
            group.clone(),
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
    });
    let dir = work.join(format!("{}-{n}", service.name));
    std::fs::create_dir_all(&dir)?;
    Ok(TaskPlan {
        port_substitution: listen_port.map(|(variable, port)| format!("{variable}={port}")),
        id,
        image: image.clone(),
        env: env.into_iter().collect(),
        argv,
        user,
        dir,
        target,
        check: service.task.health_check.clone(),
    })
}

async fn refresh_rules(
    cloud: Cloud,
    load_balancer: String,
    balancer: Arc<LoadBalancer>,
    report: Report,
    stop: CancellationToken,
) -> std::io::Result<()> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RULES_REFRESH) => {}
            _ = stop.cancelled() => return Ok(()),
        }
        match deployed::balancer(&cloud, &load_balancer).await {
            Ok(rules) => balancer.update(&rules),
            Err(e) => report.say(&format!(
                "load balancer: re-reading the rules failed: {e:#}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_come_from_arns_or_stay_names() {
        assert_eq!(
            parameter_name("arn:aws:ssm:us-east-1:123456789012:parameter/ep-local/jwt"),
            "/ep-local/jwt"
        );
        assert_eq!(
            parameter_name("arn:aws:ssm:us-east-1:123456789012:parameter/jwt"),
            "jwt"
        );
        assert_eq!(parameter_name("/ep-local/jwt"), "/ep-local/jwt");
    }
}
