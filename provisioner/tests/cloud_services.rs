//! Round trips of the service families (IAM roles, the load balancer chain,
//! ECS) against an AWS emulator: create, read back exactly what was asked,
//! find by tags, update in place, list by stack tag, delete twice.

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use event_store::aws::{sdk_config, AwsSettings};
use provisioner::cloud::{alb, ecs, Cloud};
use provisioner::model::{stack_tags, Kind, Props};
use serde_json::{json, Value};
use test_support::backend::AwsEmulator;

const STACK: &str = "rt-stack";
const EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
const LOGS_POLICY: &str = "arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess";

async fn cloud(emulator: &AwsEmulator) -> Cloud {
    let config = sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    Cloud::new(&config, STACK)
}

/// Changes attributes that only make sense together in one update, and
/// checks the read shows them.
async fn update_together<const N: usize>(
    cloud: &Cloud,
    kind: Kind,
    id: &str,
    before: &Props,
    changes: [(&str, Value); N],
) -> anyhow::Result<()> {
    let mut after = before.clone();
    let mut changed = Vec::new();
    for (name, value) in changes {
        after.insert(name.to_string(), value);
        changed.push(name.to_string());
    }
    cloud.update(kind, id, &after, &changed).await?;
    let read = cloud.read(kind, id).await?;
    assert_eq!(
        read.map(|o| o.props),
        Some(after),
        "{kind} after {changed:?}"
    );
    Ok(())
}

fn props(address: &str, fields: Value) -> Props {
    let mut props: Props = match fields {
        Value::Object(map) => map.into_iter().collect(),
        _ => Props::new(),
    };
    let extra = BTreeMap::from([("team".to_string(), "services".to_string())]);
    props.insert("tags".into(), stack_tags(STACK, address, &extra));
    props
}

/// Creates, reads back, finds, then applies each change in turn (the last
/// one also swapping a tag) and reads it back; checks the stack listing.
/// Returns the id and the final properties.
/// A certificate in moto's ACM (it checks listeners' certificates), asked
/// for with one JSON call: the SDK's ACM client is no dependency of ours.
async fn acm_certificate(emulator: &AwsEmulator) -> anyhow::Result<String> {
    let answer: Value = reqwest::Client::new()
        .post(emulator.endpoint())
        .header("X-Amz-Target", "CertificateManager.RequestCertificate")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/acm/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(r#"{"DomainName": "events.example.com"}"#)
        .send()
        .await?
        .json()
        .await?;
    answer["CertificateArn"]
        .as_str()
        .map(str::to_string)
        .context("no certificate ARN from moto's ACM")
}

async fn round_trip(
    cloud: &Cloud,
    kind: Kind,
    address: &str,
    desired: &Props,
    changes: Vec<(&str, Value)>,
) -> anyhow::Result<(String, Props)> {
    let id = cloud.create(kind, address, desired).await?;
    let observed = cloud.read(kind, &id).await?.context("read after create")?;
    assert_eq!(&observed.props, desired, "{kind} reads back as created");
    assert_eq!(
        cloud.find(kind, address, desired).await?,
        Some(id.clone()),
        "{kind} found"
    );
    assert_eq!(cloud.find(kind, "other.address", desired).await?, None);

    let mut current = desired.clone();
    let count = changes.len();
    for (step, (name, value)) in changes.into_iter().enumerate() {
        current.insert(name.into(), value);
        let mut changed = vec![name.to_string()];
        if step + 1 == count {
            // Tags: one added, one removed, the stack's own kept.
            let mut tags = stack_tags(STACK, address, &BTreeMap::new());
            tags["owner"] = json!("platform");
            current.insert("tags".into(), tags);
            changed.push("tags".into());
        }
        cloud.update(kind, &id, &current, &changed).await?;
        let observed = cloud.read(kind, &id).await?.context("read after update")?;
        assert_eq!(
            observed.props, current,
            "{kind} reads back after changing {name}"
        );
    }
    let listed = cloud.list_tagged().await?;
    ensure!(
        listed.contains(&(kind, id.clone())),
        "{kind} {id} missing from the stack listing {listed:?}"
    );
    Ok((id, current))
}

async fn delete_twice(cloud: &Cloud, kind: Kind, id: &str) -> anyhow::Result<()> {
    cloud.delete(kind, id).await?;
    ensure!(
        cloud.read(kind, id).await?.is_none(),
        "{kind} {id} still there"
    );
    cloud.delete(kind, id).await?;
    let listed = cloud.list_tagged().await?;
    ensure!(
        !listed.iter().any(|(_, listed)| listed == id),
        "{kind} {id} still listed"
    );
    Ok(())
}

/// A VPC with two subnets in two zones and two security groups, made directly.
struct Network {
    vpc: String,
    subnets: Vec<String>,
    groups: Vec<String>,
}

async fn network(cloud: &Cloud, cidr: &str) -> anyhow::Result<Network> {
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Vpc)
        .tags(Tag::builder().key("Name").value("rt-services").build())
        .build();
    let vpc = cloud
        .ec2
        .create_vpc()
        .cidr_block(format!("{cidr}.0.0/16"))
        .tag_specifications(tags)
        .send()
        .await?
        .vpc
        .and_then(|v| v.vpc_id)
        .context("vpc id")?;
    let mut subnets = Vec::new();
    for (i, zone) in ["a", "b"].iter().enumerate() {
        let subnet = cloud
            .ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("{cidr}.{i}.0/24"))
            .availability_zone(format!("{}{zone}", cloud.region))
            .send()
            .await?
            .subnet
            .and_then(|s| s.subnet_id)
            .context("subnet id")?;
        subnets.push(subnet);
    }
    let mut groups = Vec::new();
    for name in ["rt-alb", "rt-extra"] {
        let group = cloud
            .ec2
            .create_security_group()
            .vpc_id(&vpc)
            .group_name(name)
            .description("round trip")
            .send()
            .await?
            .group_id
            .context("group id")?;
        groups.push(group);
    }
    subnets.sort();
    groups.sort();
    Ok(Network {
        vpc,
        subnets,
        groups,
    })
}

async fn drop_network(cloud: &Cloud, network: Network) -> anyhow::Result<()> {
    for group in &network.groups {
        cloud
            .ec2
            .delete_security_group()
            .group_id(group)
            .send()
            .await?;
    }
    for subnet in &network.subnets {
        cloud.ec2.delete_subnet().subnet_id(subnet).send().await?;
    }
    cloud.ec2.delete_vpc().vpc_id(&network.vpc).send().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_role_round_trip() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let cloud = cloud(&emulator).await;
    let address = "iam_role.api";
    let policy = |action: &str| {
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Read", "Effect": "Allow", "Action": [action], "Resource": ["arn:aws:s3:::raw/*"]}
        ]})
    };
    let desired = props(
        address,
        json!({
            "name": format!("{STACK}-api"),
            "trust_service": "ecs-tasks.amazonaws.com",
            // The trust `stack.allow_run_local` adds, read back as written.
            "trust_account": "arn:aws:iam::123456789012:root",
            "managed_policies": [EXECUTION_POLICY],
            "inline_policy": policy("s3:GetObject"),
        }),
    );
    let (id, _) = round_trip(
        &cloud,
        Kind::IamRole,
        address,
        &desired,
        vec![
            ("inline_policy", policy("s3:PutObject")),
            ("managed_policies", json!([LOGS_POLICY, EXECUTION_POLICY])),
            ("managed_policies", json!([LOGS_POLICY])),
            ("inline_policy", Value::Null),
            ("trust_account", Value::Null),
        ],
    )
    .await?;
    assert_eq!(id, format!("{STACK}-api"));
    let observed = cloud.read(Kind::IamRole, &id).await?.context("role")?;
    assert_eq!(observed.outputs["name"], json!(id));
    assert!(observed.outputs["arn"]
        .as_str()
        .is_some_and(|a| a.ends_with(":role/rt-stack-api")));
    delete_twice(&cloud, Kind::IamRole, &id).await?;
    drop(emulator);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_chain_round_trip() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let cloud = cloud(&emulator).await;
    let net = network(&cloud, "10.20").await?;

    let lb_address = "load_balancer.main";
    let lb = props(
        lb_address,
        json!({
            "name": format!("{STACK}-alb"),
            "subnet_ids": net.subnets,
            "security_group_ids": [net.groups[0]],
            "scheme": "internet-facing",
        }),
    );
    let (lb_arn, _) = round_trip(
        &cloud,
        Kind::LoadBalancer,
        lb_address,
        &lb,
        vec![("security_group_ids", json!(net.groups))],
    )
    .await?;
    let observed = cloud
        .read(Kind::LoadBalancer, &lb_arn)
        .await?
        .context("lb")?;
    assert_eq!(observed.outputs["arn"], json!(lb_arn));
    assert!(observed.outputs["dns_name"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    let state = alb::load_balancer_state(&cloud, &lb_arn).await?;
    assert!(
        matches!(state.as_deref(), Some("active" | "provisioning")),
        "{state:?}"
    );

    let target_group = |name: &str| {
        props(
            &format!("target_group.{name}"),
            json!({
                "name": format!("{STACK}-{name}"),
                "port": 8080,
                "vpc_id": net.vpc,
                "health_check_path": "/health",
                "deregistration_delay_seconds": 30,
            }),
        )
    };
    let (tg_arn, _) = round_trip(
        &cloud,
        Kind::TargetGroup,
        "target_group.graphql",
        &target_group("graphql"),
        vec![
            ("deregistration_delay_seconds", json!(5)),
            ("health_check_path", json!("/ready")),
        ],
    )
    .await?;
    assert_eq!(alb::target_health(&cloud, &tg_arn).await?, (0, 0));
    let other_tg = cloud
        .create(
            Kind::TargetGroup,
            "target_group.ingest",
            &target_group("ingest"),
        )
        .await?;

    let listener_address = "listener.http";
    let listener = props(
        listener_address,
        json!({
            "load_balancer_arn": lb_arn,
            "port": 80,
            "protocol": "HTTP",
            "certificate_arn": null,
            "ssl_policy": null,
            "redirect_to_https": false,
            "default_target_group_arn": tg_arn,
        }),
    );
    let (listener_arn, _) = round_trip(
        &cloud,
        Kind::Listener,
        listener_address,
        &listener,
        vec![("default_target_group_arn", json!(other_tg))],
    )
    .await?;
    // With a certificate, plain HTTP only redirects (no token in cleartext).
    let redirect_address = "listener.http_redirect";
    let redirect = props(
        redirect_address,
        json!({
            "load_balancer_arn": lb_arn,
            "port": 8080,
            "protocol": "HTTP",
            "certificate_arn": null,
            "ssl_policy": null,
            "redirect_to_https": true,
            "default_target_group_arn": null,
        }),
    );
    let (redirect_arn, _) =
        round_trip(&cloud, Kind::Listener, redirect_address, &redirect, vec![]).await?;
    // Back to forwarding: both attributes change in one update.
    update_together(
        &cloud,
        Kind::Listener,
        &redirect_arn,
        &redirect,
        [
            ("redirect_to_https", json!(false)),
            ("default_target_group_arn", json!(tg_arn)),
        ],
    )
    .await?;
    delete_twice(&cloud, Kind::Listener, &redirect_arn).await?;
    // HTTPS with a current TLS policy (ELB's default still accepts TLS 1.0).
    let https_address = "listener.https";
    let https = props(
        https_address,
        json!({
            "load_balancer_arn": lb_arn,
            "port": 443,
            "protocol": "HTTPS",
            "certificate_arn": acm_certificate(&emulator).await?,
            "ssl_policy": provisioner::desired::TLS_POLICY,
            "redirect_to_https": false,
            "default_target_group_arn": tg_arn,
        }),
    );
    let (https_arn, _) = round_trip(
        &cloud,
        Kind::Listener,
        https_address,
        &https,
        vec![("ssl_policy", json!("ELBSecurityPolicy-TLS13-1-3-2021-06"))],
    )
    .await?;
    delete_twice(&cloud, Kind::Listener, &https_arn).await?;

    let rule_address = "listener_rule.ingest";
    let rule = props(
        rule_address,
        json!({
            "listener_arn": listener_arn,
            "priority": 10,
            "path_patterns": ["/events", "/events/*"],
            "fixed_status": null,
            "target_group_arn": other_tg,
        }),
    );
    let (rule_arn, _) = round_trip(
        &cloud,
        Kind::ListenerRule,
        rule_address,
        &rule,
        vec![
            ("path_patterns", json!(["/ingest/*"])),
            ("target_group_arn", json!(tg_arn)),
        ],
    )
    .await?;
    // Internals answered 404 at the listener, never forwarded.
    let internal_address = "listener_rule.internal";
    let internal = props(
        internal_address,
        json!({
            "listener_arn": listener_arn,
            "priority": 1,
            "path_patterns": provisioner::desired::INTERNAL_PATHS,
            "fixed_status": 404,
            "target_group_arn": null,
        }),
    );
    let (internal_arn, _) = round_trip(
        &cloud,
        Kind::ListenerRule,
        internal_address,
        &internal,
        vec![],
    )
    .await?;
    update_together(
        &cloud,
        Kind::ListenerRule,
        &internal_arn,
        &internal,
        [
            ("fixed_status", json!(null)),
            ("target_group_arn", json!(tg_arn)),
        ],
    )
    .await?;
    delete_twice(&cloud, Kind::ListenerRule, &internal_arn).await?;

    // Reverse order, as destroy does.
    delete_twice(&cloud, Kind::ListenerRule, &rule_arn).await?;
    delete_twice(&cloud, Kind::Listener, &listener_arn).await?;
    delete_twice(&cloud, Kind::TargetGroup, &tg_arn).await?;
    delete_twice(&cloud, Kind::TargetGroup, &other_tg).await?;
    delete_twice(&cloud, Kind::LoadBalancer, &lb_arn).await?;
    assert_eq!(alb::load_balancer_state(&cloud, &lb_arn).await?, None);
    drop_network(&cloud, net).await?;
    drop(emulator);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_cluster_task_definition_and_service_round_trip() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let cloud = cloud(&emulator).await;
    let net = network(&cloud, "10.30").await?;

    let cluster = props(
        "ecs_cluster.main",
        json!({"name": STACK, "container_insights": true}),
    );
    let (cluster_arn, _) = round_trip(
        &cloud,
        Kind::EcsCluster,
        "ecs_cluster.main",
        &cluster,
        vec![("container_insights", json!(false))],
    )
    .await?;
    let observed = cloud
        .read(Kind::EcsCluster, &cluster_arn)
        .await?
        .context("cluster")?;
    assert_eq!(observed.outputs["name"], json!(STACK));

    let task = |name: &str, port: Value, health: Value| {
        props(
            &format!("task_definition.{name}"),
            json!({
                "family": format!("{STACK}-{name}"),
                "cpu": 256,
                "memory": 512,
                "execution_role_arn": "arn:aws:iam::123456789012:role/rt-stack-execution",
                "task_role_arn": format!("arn:aws:iam::123456789012:role/rt-stack-{name}"),
                "cpu_architecture": "ARM64",
                "container": {
                    "name": name,
                    "image": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/rt-stack/{name}:1.0.0"),
                    "port": port,
                    "environment": {"AWS_REGION": "us-east-1", "ENVIRONMENT": "production"},
                    "secrets": {"JWT_SECRET_KEY": "arn:aws:ssm:us-east-1:123456789012:parameter/rt-stack/jwt"},
                    "log_group": format!("/ecs/{STACK}/{name}"),
                    "log_region": "us-east-1",
                    "health_check": health,
                },
            }),
        )
    };
    // Task definitions are never updated: create, read, find, list only.
    let api_task = task(
        "api",
        json!(8080),
        json!(["CMD", "/app/api", "healthcheck"]),
    );
    let api_task_arn = cloud
        .create(Kind::TaskDefinition, "task_definition.api", &api_task)
        .await?;
    let observed = cloud
        .read(Kind::TaskDefinition, &api_task_arn)
        .await?
        .context("task definition")?;
    assert_eq!(observed.props, api_task);
    assert_eq!(observed.outputs["arn"], json!(api_task_arn));
    assert_eq!(
        cloud
            .find(Kind::TaskDefinition, "task_definition.api", &api_task)
            .await?,
        Some(api_task_arn.clone())
    );
    // The same family at another address is not this resource.
    assert_eq!(
        cloud
            .find(Kind::TaskDefinition, "task_definition.other", &api_task)
            .await?,
        None
    );
    let worker_task = task("worker", Value::Null, Value::Null);
    let worker_task_arn = cloud
        .create(Kind::TaskDefinition, "task_definition.worker", &worker_task)
        .await?;
    let observed = cloud
        .read(Kind::TaskDefinition, &worker_task_arn)
        .await?
        .context("worker task definition")?;
    assert_eq!(observed.props, worker_task);
    let listed = cloud.list_tagged().await?;
    ensure!(
        listed.contains(&(Kind::TaskDefinition, api_task_arn.clone())),
        "{listed:?}"
    );

    // A service behind a target group (moto does not insist on a listener).
    let tg_arn = cloud
        .create(
            Kind::TargetGroup,
            "target_group.api",
            &props(
                "target_group.api",
                json!({
                    "name": format!("{STACK}-api"),
                    "port": 8080,
                    "vpc_id": net.vpc,
                    "health_check_path": "/health",
                    "deregistration_delay_seconds": 30,
                }),
            ),
        )
        .await?;
    let service = |name: &str, task_arn: &str, target: Value, port: Value| {
        props(
            &format!("ecs_service.{name}"),
            json!({
                "name": name,
                "cluster_arn": cluster_arn,
                "task_definition_arn": task_arn,
                "desired_count": 2,
                "subnet_ids": net.subnets,
                "security_group_ids": [net.groups[0]],
                "assign_public_ip": true,
                "target_group_arn": target,
                "container_name": name,
                "container_port": port,
            }),
        )
    };
    let api = service("api", &api_task_arn, json!(tg_arn), json!(8080));
    let (api_arn, _) = round_trip(
        &cloud,
        Kind::EcsService,
        "ecs_service.api",
        &api,
        vec![("desired_count", json!(3))],
    )
    .await?;
    assert!(
        api_arn.ends_with(&format!("service/{STACK}/api")),
        "{api_arn}"
    );
    // moto never runs tasks, so the service never settles there.
    let stable = ecs::service_stable(&cloud, &api_arn).await?;
    assert!(!stable);

    // A service without a load balancer, moved to a new task definition revision.
    let worker = service("worker", &worker_task_arn, Value::Null, Value::Null);
    let mut worker_task_2 = worker_task.clone();
    let container = worker_task_2.get_mut("container").context("container")?;
    container["environment"]["ENVIRONMENT"] = json!("staging");
    let worker_task_2_arn = cloud
        .create(
            Kind::TaskDefinition,
            "task_definition.worker",
            &worker_task_2,
        )
        .await?;
    assert!(
        worker_task_2_arn.ends_with(&format!("{STACK}-worker:2")),
        "{worker_task_2_arn}"
    );
    assert_eq!(
        cloud
            .find(
                Kind::TaskDefinition,
                "task_definition.worker",
                &worker_task_2
            )
            .await?,
        Some(worker_task_2_arn.clone()),
        "find picks the newest revision"
    );
    let (worker_arn, _) = round_trip(
        &cloud,
        Kind::EcsService,
        "ecs_service.worker",
        &worker,
        vec![
            ("task_definition_arn", json!(worker_task_2_arn)),
            ("desired_count", json!(1)),
        ],
    )
    .await?;

    // Reverse order, as destroy does.
    delete_twice(&cloud, Kind::EcsService, &worker_arn).await?;
    delete_twice(&cloud, Kind::EcsService, &api_arn).await?;
    cloud.delete(Kind::TargetGroup, &tg_arn).await?;
    delete_twice(&cloud, Kind::TaskDefinition, &worker_task_2_arn).await?;
    delete_twice(&cloud, Kind::TaskDefinition, &worker_task_arn).await?;
    delete_twice(&cloud, Kind::TaskDefinition, &api_task_arn).await?;
    delete_twice(&cloud, Kind::EcsCluster, &cluster_arn).await?;
    drop_network(&cloud, net).await?;
    drop(emulator);
    Ok(())
}
