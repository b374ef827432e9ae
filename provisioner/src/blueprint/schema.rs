//! What a blueprint file may say: every table and key, and the defaults
//! of what it leaves out. Unknown keys are rejected when parsing.

use std::collections::BTreeMap;

use event_common::platform::{GRAPHQL_PATHS, INGEST_PATHS};
use serde::Deserialize;

/// The blueprint file's top level.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Name, region, endpoint, tags.
    pub stack: StackSettings,
    /// VPC and subnets.
    pub network: Network,
    /// The Redpanda broker instance.
    #[serde(default)]
    pub broker: Broker,
    /// The hot table.
    #[serde(default)]
    pub table: Table,
    /// The raw-events bucket.
    #[serde(default)]
    pub bucket: Bucket,
    /// The load balancer.
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// Log groups.
    #[serde(default)]
    pub logs: Logs,
    /// The three services.
    #[serde(default)]
    pub services: Services,
    /// Where the services send their traces.
    #[serde(default)]
    pub telemetry: Telemetry,
    /// Who the CloudWatch alarms notify.
    #[serde(default)]
    pub alarms: Alarms,
    /// Where service images are pushed.
    #[serde(default)]
    pub images: Images,
}

/// `[images]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// An OCI registry (`http://127.0.0.1:5001`) that receives the images
    /// instead of ECR's endpoint; the ECR repositories are still created.
    /// For emulators, whose ECR has no registry API.
    pub registry: Option<String>,
}

/// `[stack]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackSettings {
    /// Stack name: prefix of every resource name, value of the stack tag.
    pub name: String,
    /// AWS region.
    pub region: String,
    /// An emulator's URL (LocalStack, moto); `AWS_ENDPOINT_URL` also works.
    pub endpoint: Option<String>,
    /// Extra tags on every resource.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Wait for instances, the load balancer and services to be ready.
    /// An emulator that runs no tasks sets this to false.
    #[serde(default = "yes")]
    pub waits: bool,
    /// Let this account's own principals (its users and roles allowed
    /// `sts:AssumeRole`) assume the services' task and execution roles, so
    /// `provision run-local` can run the tasks on a workstation with their
    /// real permissions. Off by default: on ECS only `ecs-tasks` needs to.
    #[serde(default)]
    pub allow_run_local: bool,
}

/// `[network]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The VPC's IPv4 CIDR.
    pub vpc_cidr: String,
    /// Public subnets, at least two in two zones.
    pub subnets: Vec<Subnet>,
}

/// `[[network.subnets]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// Name in the address (`subnet.NAME`).
    pub name: String,
    /// IPv4 CIDR inside the VPC.
    pub cidr: String,
    /// Availability zone.
    pub zone: String,
}

/// `[broker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Broker {
    /// EC2 instance type.
    pub instance_type: String,
    /// Redpanda version installed by user-data (a supported release: each
    /// is supported for a year after it ships).
    pub redpanda_version: String,
    /// The script that adds Redpanda's RPM repository; a mirror's URL
    /// where the instance cannot reach Redpanda's host.
    pub repository_setup_url: String,
    /// Root volume size.
    pub disk_gib: u32,
}

/// Redpanda's RPM repository setup script, on the host it documents since
/// the old `dl.redpanda.com` repository shut down (2026-09-28).
pub const REDPANDA_REPOSITORY_SETUP: &str = "https://linux.pkg.redpanda.com/setup-redpanda.rpm.sh";

impl Default for Broker {
    fn default() -> Self {
        Self {
            instance_type: "t3.medium".into(),
            redpanda_version: "26.1.14".into(),
            repository_setup_url: REDPANDA_REPOSITORY_SETUP.into(),
            disk_gib: 50,
        }
    }
}

/// `[table]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Table {
    /// Table name (default `STACK-events-hot`: table names are per account
    /// and region, so two stacks there need two names).
    pub name: Option<String>,
    /// Days before hot events expire (the processor's `HOT_TTL_DAYS`).
    pub ttl_days: u32,
    /// Point-in-time recovery.
    pub point_in_time_recovery: bool,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            name: None,
            ttl_days: 30,
            point_in_time_recovery: true,
        }
    }
}

/// `[bucket]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bucket {
    /// Bucket name (default `STACK-raw-events-ACCOUNT-REGION`: bucket names
    /// are global across all accounts).
    pub name: Option<String>,
    /// Days before objects move to Glacier Instant Retrieval.
    pub archive_after_days: u32,
    /// Days before objects expire.
    pub expire_after_days: u32,
    /// A bucket policy refusing every request not made over TLS. An
    /// emulator on plain HTTP needs it off, or the services' writes are refused.
    pub tls_only: bool,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            name: None,
            archive_after_days: 30,
            expire_after_days: 365,
            tls_only: true,
        }
    }
}

/// `[load_balancer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadBalancer {
    /// An ACM certificate: adds an HTTPS listener on 443.
    pub certificate_arn: Option<String>,
    /// Who may reach the load balancer.
    pub ingress_cidrs: Vec<String>,
}

impl Default for LoadBalancer {
    fn default() -> Self {
        Self {
            certificate_arn: None,
            ingress_cidrs: vec!["0.0.0.0/0".into()],
        }
    }
}

/// `[logs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logs {
    /// Retention of every log group.
    pub retention_days: u32,
}

impl Default for Logs {
    fn default() -> Self {
        Self { retention_days: 30 }
    }
}

/// `[telemetry]`: OpenTelemetry traces of the deployed services.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// OTLP/HTTP endpoint the services export to (`http://HOST:4318`: an
    /// ADOT collector or any OTLP receiver the tasks can reach); none: no traces.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces kept (0 to 1; default 1). A trace a caller
    /// started keeps its caller's decision.
    pub sample_ratio: Option<f64>,
}

/// `[alarms]`: the stack always has CloudWatch alarms on the load
/// balancer's 5xx answers, its targets' health and the broker's status
/// checks; this says who hears of them.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    /// An address subscribed by e-mail to the stack's alarm topic (SNS),
    /// told when an alarm fires and when it clears. SNS mails it a link to
    /// confirm first. None: no topic; the alarms show in the console only.
    pub email: Option<String>,
}

/// `[services]`: exactly the platform's three.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Services {
    /// `[services.ingest]`.
    pub ingest: ServiceOverrides,
    /// `[services.processor]`.
    pub processor: ServiceOverrides,
    /// `[services.graphql]`.
    pub graphql: ServiceOverrides,
}

/// What a blueprint may set for a service; the rest comes from [`Service::defaults`].
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceOverrides {
    /// Image URI (default: the stack's ECR repository at the image tag).
    pub image: Option<String>,
    /// Fargate CPU units.
    pub cpu: Option<u32>,
    /// Fargate memory (MiB).
    pub memory: Option<u32>,
    /// Tasks to run.
    pub desired_count: Option<u32>,
    /// HTTP port (none for the processor).
    pub port: Option<u16>,
    /// Health check path.
    pub health_path: Option<String>,
    /// ALB path patterns routed to it.
    pub path_patterns: Option<Vec<String>>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A service with every setting decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// `ingest`, `processor` or `graphql`.
    pub name: &'static str,
    /// Image URI, or `None` for the stack's ECR repository.
    pub image: Option<String>,
    /// Fargate CPU units.
    pub cpu: u32,
    /// Fargate memory (MiB).
    pub memory: u32,
    /// Tasks to run.
    pub desired_count: u32,
    /// HTTP port, if it serves HTTP.
    pub port: Option<u16>,
    /// Health check path.
    pub health_path: String,
    /// ALB path patterns.
    pub path_patterns: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
}

impl Service {
    /// The platform's defaults for `name`.
    fn defaults(name: &'static str) -> Self {
        let (port, patterns): (Option<u16>, &[&str]) = match name {
            "ingest" => (Some(8000), &INGEST_PATHS),
            "graphql" => (Some(8001), &GRAPHQL_PATHS),
            _ => (None, &[]),
        };
        Self {
            name,
            image: None,
            cpu: 256,
            memory: 512,
            desired_count: if name == "processor" { 1 } else { 2 },
            port,
            health_path: "/health/ready".into(),
            path_patterns: patterns.iter().map(|p| p.to_string()).collect(),
            env: BTreeMap::new(),
        }
    }

    pub(super) fn with(name: &'static str, o: &ServiceOverrides) -> Self {
        let d = Self::defaults(name);
        Self {
            name,
            image: o.image.clone(),
            cpu: o.cpu.unwrap_or(d.cpu),
            memory: o.memory.unwrap_or(d.memory),
            desired_count: o.desired_count.unwrap_or(d.desired_count),
            port: o.port.or(d.port),
            health_path: o.health_path.clone().unwrap_or(d.health_path),
            path_patterns: o.path_patterns.clone().unwrap_or(d.path_patterns),
            env: o.env.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The CPU architecture of an EC2 instance type (`t3.medium` x86_64,
/// `t4g.small` and the other Graviton types arm64), `None` when it is not
/// shaped like one (`FAMILY.SIZE`). Graviton families carry a `g` right
/// after their generation (`m7g`, `c6gn`, `im4gn`); `a1` is the first.
pub fn instance_architecture(instance_type: &str) -> Option<crate::image::Architecture> {
    use crate::image::Architecture;
    let (family, size) = instance_type.split_once('.')?;
    let well_formed = !size.is_empty()
        && family
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
        && family
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return None;
    }
    let after_generation = family
        .find(|c: char| c.is_ascii_digit())
        .map(|i| family[i..].trim_start_matches(|c: char| c.is_ascii_digit()))?;
    if family == "a1" || after_generation.starts_with('g') {
        Some(Architecture::Arm64)
    } else {
        Some(Architecture::Amd64)
    }
}
