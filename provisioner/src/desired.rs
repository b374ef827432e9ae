//! The desired resources: what a blueprint asks for, expanded into every
//! resource of the stack with its properties and dependencies. A pure
//! function, so the same blueprint always gives the same resources, and the
//! planner can be tested without a network.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::blueprint::{Blueprint, Broker, Service};
use crate::cloud::alb::{ListenerProps, ListenerRuleProps, LoadBalancerProps, TargetGroupProps};
use crate::cloud::ecs::{ContainerProps, EcsClusterProps, EcsServiceProps, TaskDefinitionProps};
use crate::cloud::monitoring::{AlarmProps, TopicProps};
use crate::cloud::network::{
    IngressRule, InstanceProps, InternetGatewayProps, RouteProps, RouteTableAssociationProps,
    RouteTableProps, SecurityGroupProps, SubnetProps, VpcProps,
};
use crate::cloud::support::to_props;
use crate::cloud::{
    bucket::BucketProps, ecr::EcrRepositoryProps, iam::IamRoleProps, image::ImageProps,
    logs::LogGroupProps, secret::SecretProps, table::TableProps,
};
use crate::image::{self, Architecture};
use crate::model::{reference, stack_tags, Kind, Props, Resource, BROKER_SETUP_TAG, STACK_TAG};
use crate::plan::UNKNOWN;
use crate::state::State;

/// The managed policy every ECS task execution role needs (pull images, write logs).
pub const EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";

/// Images kept per ECR repository.
pub const KEEP_IMAGES: u32 = 20;

/// The HTTPS listener's security policy: TLS 1.3 and 1.2 only. Without one,
/// ELB picks `ELBSecurityPolicy-2016-08`, which still accepts TLS 1.0.
pub const TLS_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

/// Paths the load balancer answers 404 itself: the services' metrics and
/// health pages (sorted, as the planner compares them).
pub const INTERNAL_PATHS: [&str; 4] = ["/health", "/health/*", "/metrics", "/metrics/*"];

/// The broker's Kafka port.
pub const KAFKA_PORT: u16 = 9092;

/// The service principal of ECS tasks.
const ECS_TASKS: &str = "ecs-tasks.amazonaws.com";

/// The image built for a service, as the desired resources pin its task definition to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePin {
    /// `sha256:...` of the image's manifest.
    pub digest: String,
    /// The image's CPU architecture.
    pub architecture: Architecture,
}

/// The pinned image of each service (by name) that the blueprint does not
/// give an image of its own.
pub type ImagePins = BTreeMap<String, ImagePin>;

/// The ECR repository of `service` in `stack`.
pub fn repository_name(stack: &str, service: &str) -> String {
    format!("{stack}/{service}")
}

/// Every resource of the blueprint's stack in AWS account `account`, in a
/// stable order. A service without a pin gets an image whose digest is
/// unknown (enough for destroy, which builds nothing; plan and apply pin
/// every image first).
pub fn resources(blueprint: &Blueprint, account: &str, pins: &ImagePins) -> Vec<Resource> {
    Graph::new(blueprint, account).build(pins)
}

/// Keeps the names a state records for the table and the bucket when the
/// blueprint names neither: a stack applied when the defaults were
/// `EventsHot` and `STACK-raw-events` keeps its data instead of having it
/// replaced by a new default.
pub fn keep_recorded_data_names(blueprint: &Blueprint, desired: &mut [Resource], state: &State) {
    let spec = &blueprint.spec;
    for resource in desired.iter_mut() {
        let named_in_blueprint = match resource.kind {
            Kind::DynamodbTable => spec.table.name.is_some(),
            Kind::S3Bucket => spec.bucket.name.is_some(),
            _ => continue,
        };
        let recorded = state
            .resources
            .get(&resource.address)
            .and_then(|r| r.props.get("name"))
            .filter(|name| name.is_string());
        if let (false, Some(name)) = (named_in_blueprint, recorded) {
            resource.props.insert("name".into(), name.clone());
        }
    }
}

/// The stack's resources keyed by address.
pub fn by_address(resources: Vec<Resource>) -> BTreeMap<String, Resource> {
    resources
        .into_iter()
        .map(|r| (r.address.clone(), r))
        .collect()
}

struct Graph<'a> {
    bp: &'a Blueprint,
    account: &'a str,
    stack: &'a str,
    out: Vec<Resource>,
}

impl<'a> Graph<'a> {
    fn new(bp: &'a Blueprint, account: &'a str) -> Self {
        Self {
            bp,
            account,
            stack: bp.stack(),
            out: Vec::new(),
        }
    }

    /// Adds a resource; `props` gets the stack's tags when the kind is tagged.
    /// `props` is the kind's typed properties (see `cloud::support::to_props`).
    fn add(
        &mut self,
        kind: Kind,
        name: &str,
        props: impl serde::Serialize,
        extra_deps: &[String],
    ) -> String {
        let mut props: Props = to_props(&props);
        let address = format!("{}.{name}", kind.prefix());
        if kind.implementation().tagged() {
            props.insert(
                "tags".into(),
                stack_tags(self.stack, &address, &self.bp.spec.stack.tags),
            );
        }
        self.out.push(Resource::new(kind, name, props, extra_deps));
        address
    }

    fn build(mut self, pins: &ImagePins) -> Vec<Resource> {
        let spec = &self.bp.spec;
        let stack = self.stack.to_string();

        // Network.
        let vpc = self.add(
            Kind::Vpc,
            "main",
            VpcProps {
                cidr_block: Some(spec.network.vpc_cidr.clone()),
                enable_dns_hostnames: true,
                enable_dns_support: true,
            },
            &[],
        );
        let vpc_id = reference(&vpc, "id");
        let mut subnets = Vec::new();
        for subnet in &spec.network.subnets {
            subnets.push(self.add(
                Kind::Subnet,
                &subnet.name,
                SubnetProps {
                    vpc_id: Some(vpc_id.clone()),
                    cidr_block: Some(subnet.cidr.clone()),
                    availability_zone: Some(subnet.zone.clone()),
                    map_public_ip_on_launch: true,
                },
                &[],
            ));
        }
        let subnet_ids: Vec<String> = subnets.iter().map(|s| reference(s, "id")).collect();
        let in_vpc = Some(vpc_id.clone());
        let igw = self.add(
            Kind::InternetGateway,
            "main",
            InternetGatewayProps {
                vpc_id: in_vpc.clone(),
            },
            &[],
        );
        let rtb = self.add(
            Kind::RouteTable,
            "public",
            RouteTableProps { vpc_id: in_vpc },
            &[],
        );
        self.add(
            Kind::Route,
            "public_default",
            RouteProps {
                route_table_id: reference(&rtb, "id"),
                destination_cidr_block: "0.0.0.0/0".into(),
                gateway_id: Some(reference(&igw, "id")),
            },
            &[],
        );
        for subnet in &spec.network.subnets {
            self.add(
                Kind::RouteTableAssociation,
                &subnet.name,
                RouteTableAssociationProps {
                    route_table_id: Some(reference(&rtb, "id")),
                    subnet_id: Some(reference(&format!("subnet.{}", subnet.name), "id")),
                },
                &[],
            );
        }

        // Security groups: world -> ALB -> services -> broker, nothing else in.
        let mut alb_ingress = Vec::new();
        let mut ports = vec![80];
        if spec.load_balancer.certificate_arn.is_some() {
            ports.push(443);
        }
        for port in ports {
            for cidr in &spec.load_balancer.ingress_cidrs {
                alb_ingress.push(rule(port, Some(cidr), None, "HTTP(S) from clients"));
            }
        }
        let alb_sg =
            self.security_group("alb", "Event Platform load balancer", &vpc_id, alb_ingress);
        let services = self.bp.services();
        let mut service_ingress = Vec::new();
        for port in services
            .iter()
            .filter_map(|s| s.port)
            .collect::<BTreeSet<_>>()
        {
            service_ingress.push(rule(
                port,
                None,
                Some(&reference(&alb_sg, "id")),
                "from the load balancer",
            ));
        }
        let services_sg = self.security_group(
            "services",
            "Event Platform services",
            &vpc_id,
            service_ingress,
        );
        let broker_sg = self.security_group(
            "broker",
            "Event Platform broker",
            &vpc_id,
            vec![rule(
                KAFKA_PORT,
                None,
                Some(&reference(&services_sg, "id")),
                "Kafka from the services",
            )],
        );

        // The broker, with a role that lets it report its setup (see
        // `broker_user_data`) by tagging itself, and nothing else.
        let broker_role = self.role(
            "broker",
            "ec2.amazonaws.com",
            vec![],
            json!({"Version": "2012-10-17", "Statement": [{
                "Sid": "ReportSetup", "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": [format!("arn:aws:ec2:{}:{}:instance/*", spec.stack.region, self.account)],
                "Condition": {
                    "StringEquals": {format!("aws:ResourceTag/{STACK_TAG}"): stack},
                    "ForAllValues:StringEquals": {"aws:TagKeys": [BROKER_SETUP_TAG]}
                }
            }]}),
        );
        let broker = self.add(
            Kind::Instance,
            "broker",
            InstanceProps {
                instance_type: Some(spec.broker.instance_type.clone()),
                subnet_id: subnet_ids.first().cloned(),
                security_group_ids: vec![reference(&broker_sg, "id")],
                root_volume_gib: Some(spec.broker.disk_gib.into()),
                instance_profile: Some(reference(&broker_role, "instance_profile")),
                user_data: broker_user_data(&spec.broker, &spec.stack.region),
                setup_failed: false,
            },
            // The broker downloads Redpanda at boot: it needs the route out.
            &["route.public_default".to_string()],
        );

        // Data.
        let table = self.add(
            Kind::DynamodbTable,
            "events_hot",
            TableProps {
                name: self.bp.table_name(),
                point_in_time_recovery: spec.table.point_in_time_recovery,
                ttl_attribute: Some("expires_at".into()),
                deletion_protection: true,
            },
            &[],
        );
        let bucket = self.add(
            Kind::S3Bucket,
            "raw_events",
            BucketProps {
                name: self.bp.bucket_name(self.account),
                versioning: true,
                encryption: Some("AES256".into()),
                block_public_access: true,
                tls_only: spec.bucket.tls_only,
                archive_after_days: Some(spec.bucket.archive_after_days.into()),
                archive_storage_class: Some("GLACIER_IR".into()),
                expire_after_days: Some(spec.bucket.expire_after_days.into()),
            },
            &[],
        );
        let secret = self.add(
            Kind::SsmParameter,
            "jwt_secret",
            SecretProps {
                name: format!("/{stack}/jwt-secret"),
                description: "JWT signing secret of the Event Platform services".into(),
            },
            &[],
        );

        // Identity: one execution role, one least-privilege task role per service.
        let execution = self.role(
            "execution",
            ECS_TASKS,
            vec![EXECUTION_POLICY],
            json!({"Version": "2012-10-17", "Statement": [{
                "Sid": "ReadJwtSecret", "Effect": "Allow",
                "Action": ["ssm:GetParameters"],
                "Resource": [reference(&secret, "arn")]
            }]}),
        );
        let table_arn = reference(&table, "arn");
        let task_policy = |service: &str| -> Value {
            match service {
                "processor" => json!({"Version": "2012-10-17", "Statement": [
                    {"Sid": "WriteHotTable", "Effect": "Allow",
                     // What the store calls (checked by tests/service_permissions.rs);
                     // transactions are authorized per item (UpdateItem).
                     "Action": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                     "Resource": [table_arn, format!("{table_arn}/index/*")]},
                    {"Sid": "WriteRawEvents", "Effect": "Allow",
                     "Action": ["s3:AbortMultipartUpload", "s3:PutObject"],
                     "Resource": [format!("{}/raw/*", reference(&bucket, "arn"))]},
                    // Readiness calls HeadBucket, which IAM authorizes as ListBucket.
                    {"Sid": "CheckRawEventsBucket", "Effect": "Allow",
                     "Action": ["s3:ListBucket"],
                     "Resource": [reference(&bucket, "arn")]}
                ]}),
                "graphql" => json!({"Version": "2012-10-17", "Statement": [
                    {"Sid": "ReadHotTable", "Effect": "Allow",
                     "Action": ["dynamodb:BatchGetItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query"],
                     "Resource": [table_arn, format!("{table_arn}/index/*")]}
                ]}),
                _ => Value::Null,
            }
        };

        // Load balancer: HTTP (and HTTPS with a certificate); `/` goes to graphql's dashboard.
        let alb = self.add(
            Kind::LoadBalancer,
            "main",
            LoadBalancerProps {
                name: Some(format!("{stack}-alb")),
                subnet_ids: sorted(&subnet_ids),
                security_group_ids: vec![reference(&alb_sg, "id")],
                scheme: Some("internet-facing".into()),
            },
            // An internet-facing ALB needs the gateway attached first.
            std::slice::from_ref(&igw),
        );
        let mut target_groups = BTreeMap::new();
        for service in services.iter() {
            if let Some(port) = service.port {
                let tg = self.add(
                    Kind::TargetGroup,
                    service.name,
                    TargetGroupProps {
                        name: Some(format!("{stack}-{}", service.name)),
                        port: Some(port.into()),
                        vpc_id: Some(vpc_id.clone()),
                        health_check_path: Some(service.health_path.to_string()),
                        deregistration_delay_seconds: Some(30),
                    },
                    &[],
                );
                target_groups.insert(service.name, tg);
            }
        }
        let default_tg = target_groups
            .get("graphql")
            .or_else(|| target_groups.values().next())
            .map(|tg| reference(tg, "arn"));
        // With a certificate, plain HTTP only redirects: tokens never cross
        // the internet in cleartext.
        let certificate = spec.load_balancer.certificate_arn.clone();
        let mut listeners = vec![("http", 80, "HTTP", None, None, certificate.is_some())];
        if let Some(arn) = certificate {
            let policy = Some(TLS_POLICY.to_string());
            listeners.push(("https", 443, "HTTPS", Some(arn), policy, false));
        }
        let mut rules: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, port, protocol, certificate, ssl_policy, redirect) in listeners {
            let default_target = if redirect { None } else { default_tg.clone() };
            let listener = self.add(
                Kind::Listener,
                name,
                ListenerProps {
                    load_balancer_arn: Some(reference(&alb, "arn")),
                    port: Some(port),
                    protocol: Some(protocol.to_string()),
                    certificate_arn: certificate,
                    ssl_policy,
                    redirect_to_https: redirect,
                    default_target_group_arn: default_target,
                },
                &[],
            );
            if redirect {
                continue;
            }
            let suffix = if name == "http" {
                String::new()
            } else {
                format!("_{name}")
            };
            // Metrics and readiness details are for the VPC: the target
            // groups check health on the tasks directly, not through here.
            self.add(
                Kind::ListenerRule,
                &format!("internal{suffix}"),
                ListenerRuleProps {
                    listener_arn: Some(reference(&listener, "arn")),
                    priority: Some(1),
                    path_patterns: INTERNAL_PATHS.iter().map(|p| p.to_string()).collect(),
                    fixed_status: Some(404),
                    target_group_arn: None,
                },
                &[],
            );
            for (priority, service) in services.iter().enumerate() {
                let Some(tg) = target_groups.get(service.name) else {
                    continue;
                };
                if service.path_patterns.is_empty() {
                    continue;
                }
                let rule = self.add(
                    Kind::ListenerRule,
                    &format!("{}{suffix}", service.name),
                    ListenerRuleProps {
                        listener_arn: Some(reference(&listener, "arn")),
                        priority: Some((priority as i64 + 1) * 10),
                        path_patterns: sorted(&service.path_patterns),
                        fixed_status: None,
                        target_group_arn: Some(reference(tg, "arn")),
                    },
                    &[],
                );
                rules.entry(service.name).or_default().push(rule);
            }
        }

        // Containers.
        let cluster = self.add(
            Kind::EcsCluster,
            "main",
            EcsClusterProps {
                name: Some(stack.clone()),
                container_insights: true,
            },
            &[],
        );
        for service in services.iter() {
            let repo = self.add(
                Kind::EcrRepository,
                service.name,
                EcrRepositoryProps {
                    name: repository_name(&stack, service.name),
                    scan_on_push: true,
                    tag_mutability: Some("MUTABLE".into()),
                    keep_images: Some(KEEP_IMAGES.into()),
                },
                &[],
            );
            let logs = self.add(
                Kind::LogGroup,
                service.name,
                LogGroupProps {
                    name: format!("/ecs/{stack}/{}", service.name),
                    retention_days: Some(spec.logs.retention_days.into()),
                },
                &[],
            );
            let task_role = self.role(service.name, ECS_TASKS, vec![], task_policy(service.name));
            // The task definition names the image by digest itself (so a
            // plan shows the new digest), and is registered after the push.
            let mut task_after = Vec::new();
            let (image, architecture) = match &service.image {
                Some(uri) => (uri.clone(), Architecture::Amd64),
                None => {
                    let pin = pins.get(service.name);
                    let registry = match self.bp.image_registry_host() {
                        Some(host) => host,
                        None => reference(&repo, "registry"),
                    };
                    let digest = pin.map_or(UNKNOWN, |p| p.digest.as_str());
                    let repository = reference(&repo, "name");
                    task_after.push(self.add(
                        Kind::Image,
                        service.name,
                        ImageProps {
                            registry: registry.clone(),
                            repository: repository.clone(),
                            digest: digest.to_string(),
                        },
                        &[],
                    ));
                    (
                        image::reference(&registry, &repository, digest),
                        pin.map_or(Architecture::Amd64, |p| p.architecture),
                    )
                }
            };
            let env = self.service_env(service, &broker, &table, &bucket);
            let task = self.add(
                Kind::TaskDefinition,
                service.name,
                TaskDefinitionProps {
                    family: Some(format!("{stack}-{}", service.name)),
                    cpu: Some(service.cpu.into()),
                    memory: Some(service.memory.into()),
                    execution_role_arn: Some(reference(&execution, "arn")),
                    task_role_arn: Some(reference(&task_role, "arn")),
                    cpu_architecture: Some(architecture.ecs().to_string()),
                    container: Some(ContainerProps {
                        name: Some(service.name.to_string()),
                        image: Some(image),
                        port: service.port.map(i64::from),
                        environment: env,
                        secrets: BTreeMap::from([(
                            "JWT_SECRET_KEY".to_string(),
                            reference(&secret, "arn"),
                        )]),
                        log_group: Some(reference(&logs, "name")),
                        log_region: Some(spec.stack.region.clone()),
                        // Exec form: the images have no shell (see `image`).
                        health_check: Some(vec![
                            "CMD".to_string(),
                            image::entrypoint(service.name),
                            event_common::lifecycle::HEALTHCHECK_ARG.to_string(),
                        ]),
                    }),
                },
                &task_after,
            );
            let tg = target_groups.get(service.name);
            // A target group must be behind a listener before a service can use it.
            let mut after: Vec<String> = rules.get(service.name).cloned().unwrap_or_default();
            after.push("route.public_default".to_string());
            self.add(
                Kind::EcsService,
                service.name,
                EcsServiceProps {
                    name: Some(service.name.to_string()),
                    cluster_arn: Some(reference(&cluster, "arn")),
                    task_definition_arn: Some(reference(&task, "arn")),
                    desired_count: service.desired_count.into(),
                    subnet_ids: sorted(&subnet_ids),
                    security_group_ids: vec![reference(&services_sg, "id")],
                    assign_public_ip: true,
                    target_group_arn: tg.map(|tg| reference(tg, "arn")),
                    container_name: Some(service.name.to_string()),
                    container_port: tg.and(service.port).map(i64::from),
                },
                &after,
            );
        }
        self.alarms(&alb, &target_groups, &broker);
        self.out
    }

    /// Alarms on what users notice first: the load balancer answering 5xx,
    /// a service without healthy targets (or with some failing), and the
    /// broker's instance failing its status checks; they notify the
    /// `[alarms]` e-mail through a topic when there is one.
    fn alarms(&mut self, alb: &str, target_groups: &BTreeMap<&str, String>, broker: &str) {
        let stack = self.stack.to_string();
        let actions = match &self.bp.spec.alarms.email {
            Some(email) => {
                let topic = self.add(
                    Kind::SnsTopic,
                    "alarms",
                    TopicProps {
                        name: format!("{stack}-alarms"),
                        emails: vec![email.clone()],
                    },
                    &[],
                );
                vec![reference(&topic, "arn")]
            }
            None => Vec::new(),
        };
        let alarm = |name: &str, description: &str, metric: (&str, &str), on: &[(&str, String)]| {
            AlarmProps {
                name: format!("{stack}-{}", name.replace('_', "-")),
                description: description.to_string(),
                namespace: metric.0.to_string(),
                metric_name: metric.1.to_string(),
                dimensions: on.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
                statistic: "Sum".into(),
                period_seconds: 60,
                evaluation_periods: 5,
                datapoints_to_alarm: 3,
                comparison: "GreaterThanOrEqualToThreshold".into(),
                threshold: 10.0,
                // No requests, no data: nothing is failing.
                treat_missing_data: "notBreaching".into(),
                actions: actions.clone(),
            }
        };
        let lb = ("LoadBalancer", reference(alb, "metric_dimension"));
        let mut wanted = vec![
            (
                "load_balancer_5xx".to_string(),
                alarm(
                    "load_balancer_5xx",
                    "The load balancer answered 5xx itself (502/503/504: no healthy target, \
                     a target refused or timed out) at least 10 times a minute in 3 of 5 minutes. \
                     Look at `provision status` and the services' logs.",
                    ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"),
                    std::slice::from_ref(&lb),
                ),
            ),
            (
                "services_5xx".to_string(),
                alarm(
                    "services_5xx",
                    "The services answered 5xx at least 10 times a minute in 3 of 5 minutes. \
                     Look at the services' logs.",
                    ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"),
                    std::slice::from_ref(&lb),
                ),
            ),
        ];
        for (service, tg) in target_groups {
            let on = [
                lb.clone(),
                ("TargetGroup", reference(tg, "metric_dimension")),
            ];
            wanted.push((
                format!("{service}_no_healthy_targets"),
                AlarmProps {
                    statistic: "Minimum".into(),
                    evaluation_periods: 3,
                    comparison: "LessThanThreshold".into(),
                    threshold: 1.0,
                    // A target group with no data has no task reporting.
                    treat_missing_data: "breaching".into(),
                    ..alarm(
                        &format!("{service}_no_healthy_targets"),
                        &format!(
                            "No healthy {service} task behind the load balancer for 3 minutes: \
                             its requests fail. Look at `provision status`."
                        ),
                        ("AWS/ApplicationELB", "HealthyHostCount"),
                        &on,
                    )
                },
            ));
            wanted.push((
                format!("{service}_unhealthy_targets"),
                AlarmProps {
                    statistic: "Maximum".into(),
                    evaluation_periods: 3,
                    threshold: 1.0,
                    ..alarm(
                        &format!("{service}_unhealthy_targets"),
                        &format!(
                            "A {service} task failed the load balancer's health check for 3 \
                             minutes. Look at `provision status` for the reason."
                        ),
                        ("AWS/ApplicationELB", "UnHealthyHostCount"),
                        &on,
                    )
                },
            ));
        }
        wanted.push((
            "broker_status_check".to_string(),
            AlarmProps {
                statistic: "Maximum".into(),
                evaluation_periods: 2,
                datapoints_to_alarm: 2,
                threshold: 1.0,
                // A stopped or terminated broker reports nothing.
                treat_missing_data: "breaching".into(),
                ..alarm(
                    "broker_status_check",
                    "The broker's instance failed its EC2 status checks (system or instance) \
                     for 2 minutes: events cannot be accepted or processed. Look at the \
                     instance in the EC2 console.",
                    ("AWS/EC2", "StatusCheckFailed"),
                    &[("InstanceId", reference(broker, "id"))],
                )
            },
        ));
        for (name, props) in wanted {
            self.add(Kind::Alarm, &name, props, &[]);
        }
    }

    fn security_group(
        &mut self,
        name: &str,
        description: &str,
        vpc_id: &str,
        ingress: Vec<IngressRule>,
    ) -> String {
        let props = SecurityGroupProps {
            name: Some(format!("{}-{name}", self.stack)),
            description: Some(description.to_string()),
            vpc_id: Some(vpc_id.to_string()),
            ingress,
        };
        self.add(Kind::SecurityGroup, name, props, &[])
    }

    /// A role that `trust_service` assumes; an EC2 role comes with its
    /// instance profile (of the same name).
    fn role(
        &mut self,
        name: &str,
        trust_service: &str,
        managed: Vec<&str>,
        inline: Value,
    ) -> String {
        let run_local = self.bp.spec.stack.allow_run_local && trust_service == ECS_TASKS;
        let props = IamRoleProps {
            name: format!("{}-{name}", self.stack),
            trust_service: Some(trust_service.to_string()),
            // `run-local` takes the ECS roles' credentials on a workstation.
            trust_account: run_local.then(|| format!("arn:aws:iam::{}:root", self.account)),
            managed_policies: managed.into_iter().map(str::to_string).collect(),
            inline_policy: (!inline.is_null()).then_some(inline),
            instance_profile: trust_service == "ec2.amazonaws.com",
        };
        self.add(Kind::IamRole, name, props, &[])
    }

    fn service_env(
        &self,
        service: &Service,
        broker: &str,
        table: &str,
        bucket: &str,
    ) -> BTreeMap<String, String> {
        let spec = &self.bp.spec;
        let mut env: BTreeMap<String, String> = BTreeMap::from([
            ("AWS_REGION".into(), spec.stack.region.clone()),
            ("ENVIRONMENT".into(), "production".into()),
            (
                "KAFKA_BOOTSTRAP_SERVERS".into(),
                format!("{}:{KAFKA_PORT}", reference(broker, "private_ip")),
            ),
        ]);
        if let Some(port) = service.port {
            env.insert("PORT".into(), port.to_string());
        }
        // A stack on an emulator: the tasks call the emulator, not AWS.
        if let Some(endpoint) = &spec.stack.endpoint {
            env.insert("AWS_ENDPOINT_URL".into(), endpoint.clone());
        }
        if service.name != "ingest" {
            env.insert("HOT_STORE".into(), "dynamodb".into());
            env.insert("DYNAMODB_TABLE".into(), reference(table, "name"));
        }
        if service.name == "processor" {
            env.insert("COLD_STORE".into(), "s3".into());
            env.insert("S3_BUCKET".into(), reference(bucket, "name"));
            env.insert("HOT_TTL_DAYS".into(), spec.table.ttl_days.to_string());
        }
        let telemetry = &spec.telemetry;
        if let Some(endpoint) = &telemetry.otlp_endpoint {
            env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone());
            env.insert("OTEL_SERVICE_NAME".into(), service.name.into());
            env.insert(
                "OTEL_RESOURCE_ATTRIBUTES".into(),
                format!("deployment.environment.name={}", spec.stack.name),
            );
            if let Some(ratio) = telemetry.sample_ratio {
                env.insert(
                    "OTEL_TRACES_SAMPLER".into(),
                    "parentbased_traceidratio".into(),
                );
                env.insert("OTEL_TRACES_SAMPLER_ARG".into(), ratio.to_string());
            }
        }
        // The blueprint's own per-service settings win, OTEL_* included.
        env.extend(service.env.clone());
        env
    }
}

fn rule(port: u16, cidr: Option<&str>, source: Option<&str>, description: &str) -> IngressRule {
    IngressRule {
        protocol: "tcp".into(),
        from_port: port.into(),
        to_port: port.into(),
        cidr: cidr.map(str::to_string),
        source_security_group_id: source.map(str::to_string),
        description: description.to_string(),
    }
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}

/// User-data that installs Redpanda, creates the topics and reports the
/// outcome on the instance's `event-platform:broker-setup` tag: `ready`, or
/// `failed: STEP`, which `apply` waits for. Everything it prints goes to
/// the serial console too (`aws ec2 get-console-output --latest`).
/// The rpk commands and flags are those of Redpanda 26.1's documentation.
fn broker_user_data(broker: &Broker, region: &str) -> String {
    let version = &broker.redpanda_version;
    let setup_url = &broker.repository_setup_url;
    let topics: String = event_common::platform::TOPICS
        .iter()
        .map(|(topic, partitions)| {
            format!(
                "rpk topic create {topic} --partitions {partitions} --replicas 1 --if-not-exists\n"
            )
        })
        .collect();
    format!(
        r#"#!/bin/bash
# Event Platform broker: Redpanda {version}.
set -Eeuo pipefail
exec > >(tee -a /var/log/event-platform-broker.log > /dev/console) 2>&1
STEP="read the instance metadata"
report() {{
  aws ec2 create-tags --region {region} --resources "$ID" --tags "Key={BROKER_SETUP_TAG},Value=$1" \
    || echo "event-platform: could not tag the instance with: $1"
}}
trap 'echo "event-platform: broker setup failed: $STEP"; report "failed: $STEP"' ERR
fetch() {{ curl -fsS --retry 10 --retry-all-errors --retry-delay 3 "$@"; }}
TOKEN=$(fetch -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 900')
meta() {{ fetch -H "X-aws-ec2-metadata-token: $TOKEN" "http://169.254.169.254/latest/meta-data/$1"; }}
ID=$(meta instance-id)
IP=$(meta local-ipv4)
STEP="download the Redpanda repository setup from {setup_url}"
fetch -L -o /tmp/setup-redpanda.rpm.sh '{setup_url}'
STEP="add the Redpanda repository"
bash /tmp/setup-redpanda.rpm.sh
STEP="install redpanda-{version}"
dnf install -y --setopt=retries=10 'redpanda-{version}'
STEP="configure Redpanda"
rpk redpanda mode production
rpk redpanda config bootstrap --self "$IP" --ips "$IP" --advertised-kafka "$IP:{KAFKA_PORT}"
STEP="start Redpanda"
systemctl enable --now redpanda
STEP="wait for a healthy cluster"
timeout 600 rpk cluster health --watch --exit-when-healthy
STEP="create the topics"
rpk cluster config set auto_create_topics_enabled false
{topics}STEP="report ready"
echo "event-platform: broker ready"
report ready
"#
    )
}
