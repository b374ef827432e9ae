//! The network family against moto: every kind created in dependency order,
//! read back equal to what was asked, found again by address, updated in
//! place, listed by stack tag, then deleted in reverse order.

use std::collections::BTreeMap;

use event_store::aws::{sdk_config, AwsSettings};
use provisioner::cloud::{network, Cloud};
use provisioner::model::{stack_tags, Kind, Props};
use serde_json::{json, Value};
use test_support::backend::AwsEmulator;

const STACK: &str = "rt-stack";

fn props(value: Value) -> Props {
    match value {
        Value::Object(map) => map.into_iter().collect(),
        _ => Props::new(),
    }
}

fn tags(address: &str, extra: &[(&str, &str)]) -> Value {
    let extra: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    stack_tags(STACK, address, &extra)
}

/// Tags the instance with its setup report, as the broker's user-data does.
async fn report_setup(cloud: &Cloud, instance_id: &str, report: &str) -> anyhow::Result<()> {
    let tag = aws_sdk_ec2::types::Tag::builder()
        .key(provisioner::model::BROKER_SETUP_TAG)
        .value(report)
        .build();
    cloud
        .ec2
        .create_tags()
        .resources(instance_id)
        .tags(tag)
        .send()
        .await?;
    Ok(())
}

/// Creates, reads back equal, finds by address; returns the id and outputs.
async fn create(
    cloud: &Cloud,
    kind: Kind,
    address: &str,
    wanted: &Props,
) -> anyhow::Result<(String, Props)> {
    let id = cloud.create(kind, address, wanted).await?;
    let observed = cloud.read(kind, &id).await?;
    let observed = observed.ok_or_else(|| anyhow::anyhow!("{address} ({id}) not readable"))?;
    assert_eq!(&observed.props, wanted, "{address} reads back as created");
    assert_eq!(
        cloud.find(kind, address, wanted).await?,
        Some(id.clone()),
        "{address} found"
    );
    Ok((id, observed.outputs))
}

/// Updates `changed` to `wanted` and checks the read shows it.
async fn update(
    cloud: &Cloud,
    kind: Kind,
    id: &str,
    wanted: &Props,
    changed: &[&str],
) -> anyhow::Result<()> {
    let changed: Vec<String> = changed.iter().map(|c| c.to_string()).collect();
    cloud.update(kind, id, wanted, &changed).await?;
    let observed = cloud.read(kind, id).await?.map(|o| o.props);
    assert_eq!(
        observed.as_ref(),
        Some(wanted),
        "{kind} {id} after updating {changed:?}"
    );
    Ok(())
}

/// Deletes, checks it is gone, and that deleting again is fine.
async fn delete(cloud: &Cloud, kind: Kind, id: &str) -> anyhow::Result<()> {
    cloud.delete(kind, id).await?;
    assert_eq!(cloud.read(kind, id).await?, None, "{kind} {id} gone");
    cloud.delete(kind, id).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_network_kind_round_trips() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let config = sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let cloud = Cloud::new(&config, STACK);

    // VPC.
    let mut vpc = props(json!({
        "cidr_block": "10.0.0.0/16",
        "enable_dns_hostnames": true,
        "enable_dns_support": true,
        "tags": tags("vpc.main", &[("team", "data")]),
    }));
    let (vpc_id, outputs) = create(&cloud, Kind::Vpc, "vpc.main", &vpc).await?;
    assert_eq!(outputs, props(json!({"id": vpc_id})));
    vpc.insert("enable_dns_hostnames".into(), json!(false));
    update(&cloud, Kind::Vpc, &vpc_id, &vpc, &["enable_dns_hostnames"]).await?;
    // One tag changed, one removed, one added.
    vpc.insert("tags".into(), tags("vpc.main", &[("owner", "ops")]));
    update(&cloud, Kind::Vpc, &vpc_id, &vpc, &["tags"]).await?;

    // Subnet.
    let mut subnet = props(json!({
        "vpc_id": vpc_id,
        "cidr_block": "10.0.1.0/24",
        "availability_zone": "us-east-1a",
        "map_public_ip_on_launch": false,
        "tags": tags("subnet.a", &[]),
    }));
    let (subnet_id, _) = create(&cloud, Kind::Subnet, "subnet.a", &subnet).await?;
    subnet.insert("map_public_ip_on_launch".into(), json!(true));
    update(
        &cloud,
        Kind::Subnet,
        &subnet_id,
        &subnet,
        &["map_public_ip_on_launch"],
    )
    .await?;

    // Internet gateway, attached at creation.
    let mut igw = props(json!({"vpc_id": vpc_id, "tags": tags("internet_gateway.main", &[])}));
    let (igw_id, _) = create(&cloud, Kind::InternetGateway, "internet_gateway.main", &igw).await?;
    igw.insert(
        "tags".into(),
        tags("internet_gateway.main", &[("team", "data")]),
    );
    update(&cloud, Kind::InternetGateway, &igw_id, &igw, &["tags"]).await?;

    // Route table.
    let rt = props(json!({"vpc_id": vpc_id, "tags": tags("route_table.public", &[])}));
    let (rt_id, _) = create(&cloud, Kind::RouteTable, "route_table.public", &rt).await?;

    // Route: untagged, found by table and destination.
    let route = props(json!({
        "route_table_id": rt_id,
        "destination_cidr_block": "0.0.0.0/0",
        "gateway_id": igw_id,
    }));
    let (route_id, outputs) = create(&cloud, Kind::Route, "route.default", &route).await?;
    assert_eq!(route_id, format!("{rt_id}|0.0.0.0/0"));
    assert!(outputs.is_empty());
    // ReplaceRoute (to the only gateway a VPC can have).
    update(&cloud, Kind::Route, &route_id, &route, &["gateway_id"]).await?;

    // Association: untagged, found by table and subnet.
    let association = props(json!({"route_table_id": rt_id, "subnet_id": subnet_id}));
    let (association_id, outputs) = create(
        &cloud,
        Kind::RouteTableAssociation,
        "route_table_association.a",
        &association,
    )
    .await?;
    assert!(association_id.starts_with("rtbassoc-"), "{association_id}");
    assert_eq!(outputs, props(json!({"id": association_id})));

    // Two security groups, the second admitting the first.
    let alb_sg = props(json!({
        "name": "rt-stack-alb",
        "description": "load balancer",
        "vpc_id": vpc_id,
        "ingress": [
            {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0",
             "source_security_group_id": null, "description": "https"},
            {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr": "0.0.0.0/0",
             "source_security_group_id": null, "description": "http"},
        ],
        "tags": tags("security_group.alb", &[]),
    }));
    let mut alb_sg_sorted = alb_sg.clone();
    alb_sg_sorted.insert("ingress".into(), network::normalize(&alb_sg["ingress"]));
    assert_eq!(alb_sg_sorted["ingress"][0]["from_port"], json!(80));
    let (alb_sg_id, _) = create(
        &cloud,
        Kind::SecurityGroup,
        "security_group.alb",
        &alb_sg_sorted,
    )
    .await?;

    let broker_sg_rules = |rules: Value| {
        props(json!({
            "name": "rt-stack-broker",
            "description": "broker",
            "vpc_id": vpc_id,
            "ingress": network::normalize(&rules),
            "tags": tags("security_group.broker", &[]),
        }))
    };
    let from_alb = |description: &str| {
        json!({"protocol": "tcp", "from_port": 9092, "to_port": 9092, "cidr": null,
               "source_security_group_id": alb_sg_id, "description": description})
    };
    let ssh = json!({"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/16",
                     "source_security_group_id": null, "description": "ssh"});
    let admin = |description: &str| {
        json!({"protocol": "tcp", "from_port": 9644, "to_port": 9644, "cidr": "10.0.0.0/16",
               "source_security_group_id": null, "description": description})
    };
    let schema = json!({"protocol": "tcp", "from_port": 8081, "to_port": 8081,
                        "cidr": "10.0.0.0/16", "source_security_group_id": null,
                        "description": "schema registry"});
    let broker_sg = broker_sg_rules(json!([from_alb("kafka from alb"), ssh, admin("admin")]));
    let (broker_sg_id, _) = create(
        &cloud,
        Kind::SecurityGroup,
        "security_group.broker",
        &broker_sg,
    )
    .await?;
    // Adds one rule, removes one, and rewords one (a CIDR rule: moto 5.2.5
    // ignores new descriptions of source-group rules).
    let broker_sg = broker_sg_rules(json!([
        admin("redpanda admin"),
        schema,
        from_alb("kafka from alb")
    ]));
    update(
        &cloud,
        Kind::SecurityGroup,
        &broker_sg_id,
        &broker_sg,
        &["ingress"],
    )
    .await?;

    // The broker instance, running as a role through its instance profile.
    let role = props(json!({
        "name": "rt-stack-broker",
        "trust_service": "ec2.amazonaws.com",
        "trust_account": null,
        "managed_policies": [],
        "inline_policy": null,
        "instance_profile": true,
        "tags": tags("iam_role.broker", &[]),
    }));
    let (role_id, role_outputs) = create(&cloud, Kind::IamRole, "iam_role.broker", &role).await?;
    assert_eq!(role_outputs["instance_profile"], json!("rt-stack-broker"));
    let mut groups = vec![broker_sg_id.clone(), alb_sg_id.clone()];
    groups.sort();
    let mut instance = props(json!({
        "instance_type": "t3.small",
        "subnet_id": subnet_id,
        "security_group_ids": groups,
        "root_volume_gib": 20,
        "instance_profile": "rt-stack-broker",
        "user_data": "#!/bin/bash\necho 'broker' > /tmp/role\n",
        "setup_failed": false,
        "tags": tags("instance.broker", &[]),
    }));
    let (instance_id, outputs) =
        create(&cloud, Kind::Instance, "instance.broker", &instance).await?;
    // What the instance reports on its tag is read, not planned: a failed
    // setup reads as `setup_failed`, and the tags stay as desired.
    report_setup(&cloud, &instance_id, "failed: start Redpanda").await?;
    let reported = cloud
        .read(Kind::Instance, &instance_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("instance gone"))?;
    assert_eq!(reported.props["setup_failed"], json!(true));
    assert_eq!(reported.props["tags"], instance["tags"]);
    assert_eq!(
        network::instance_status(&cloud, &instance_id).await?,
        Some((
            "running".to_string(),
            Some("failed: start Redpanda".to_string())
        ))
    );
    report_setup(&cloud, &instance_id, "ready").await?;
    assert_eq!(outputs["id"], json!(instance_id));
    assert!(
        outputs["private_ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.0.1.")),
        "{outputs:?}"
    );
    assert!(
        outputs["image_id"]
            .as_str()
            .is_some_and(|ami| ami.starts_with("ami-")),
        "{outputs:?}"
    );
    let state = network::instance_state(&cloud, &instance_id).await?;
    assert!(
        matches!(state.as_deref(), Some("pending" | "running")),
        "{state:?}"
    );
    instance.insert(
        "tags".into(),
        tags("instance.broker", &[("role", "broker")]),
    );
    update(&cloud, Kind::Instance, &instance_id, &instance, &["tags"]).await?;
    let blocking = network::blocking_interfaces(&cloud, &broker_sg_id).await?;
    assert!(
        blocking.iter().any(|b| b.starts_with("eni-")),
        "{blocking:?}"
    );

    // Every kind's listing, without the broker's role (not a network kind).
    let listed: Vec<_> = cloud
        .list_tagged()
        .await?
        .into_iter()
        .filter(|(kind, _)| *kind != Kind::IamRole)
        .collect();
    for (kind, id) in [
        (Kind::Vpc, &vpc_id),
        (Kind::Subnet, &subnet_id),
        (Kind::InternetGateway, &igw_id),
        (Kind::RouteTable, &rt_id),
        (Kind::SecurityGroup, &alb_sg_id),
        (Kind::SecurityGroup, &broker_sg_id),
        (Kind::Instance, &instance_id),
    ] {
        assert!(
            listed.contains(&(kind, id.clone())),
            "{kind} {id} listed in {listed:?}"
        );
    }
    assert_eq!(listed.len(), 7, "{listed:?}");

    // Reverse order.
    // A Graviton broker boots the arm64 image (an x86_64 one fails RunInstances on AWS).
    let ami = |name: &'static str| {
        let ssm = cloud.ssm.clone();
        async move {
            let out = ssm.get_parameter().name(name).send().await?;
            anyhow::Ok(out.parameter().and_then(|p| p.value()).map(str::to_string))
        }
    };
    let x86 = ami("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64").await?;
    let arm = ami("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64").await?;
    assert_ne!(x86, arm);
    assert_eq!(outputs["image_id"].as_str(), x86.as_deref());
    let mut graviton = instance.clone();
    graviton.insert("instance_type".into(), json!("t4g.small"));
    graviton.insert("tags".into(), tags("instance.graviton", &[]));
    let (graviton_id, graviton_outputs) =
        create(&cloud, Kind::Instance, "instance.graviton", &graviton).await?;
    assert_eq!(graviton_outputs["image_id"].as_str(), arm.as_deref());
    delete(&cloud, Kind::Instance, &graviton_id).await?;

    delete(&cloud, Kind::Instance, &instance_id).await?;
    // A run stopped between the role's delete and its profile's leaves the
    // profile alone: destroy's final listing finds it, and deleting the
    // role of its name deletes it.
    cloud
        .iam
        .remove_role_from_instance_profile()
        .instance_profile_name(&role_id)
        .role_name(&role_id)
        .send()
        .await?;
    cloud.iam.delete_role().role_name(&role_id).send().await?;
    let left = cloud.list_tagged().await?;
    assert!(left.contains(&(Kind::IamRole, role_id.clone())), "{left:?}");
    delete(&cloud, Kind::IamRole, &role_id).await?;
    let profile = cloud
        .iam
        .get_instance_profile()
        .instance_profile_name("rt-stack-broker")
        .send()
        .await;
    assert!(profile.is_err(), "instance profile left: {profile:?}");
    assert_eq!(
        network::instance_state(&cloud, &instance_id)
            .await?
            .as_deref(),
        Some("terminated")
    );
    assert_eq!(
        cloud
            .find(Kind::Instance, "instance.broker", &instance)
            .await?,
        None
    );
    delete(&cloud, Kind::SecurityGroup, &broker_sg_id).await?;
    delete(&cloud, Kind::SecurityGroup, &alb_sg_id).await?;
    delete(&cloud, Kind::RouteTableAssociation, &association_id).await?;
    assert_eq!(
        cloud
            .find(
                Kind::RouteTableAssociation,
                "route_table_association.a",
                &association
            )
            .await?,
        None
    );
    delete(&cloud, Kind::Route, &route_id).await?;
    assert_eq!(
        cloud.find(Kind::Route, "route.default", &route).await?,
        None
    );
    delete(&cloud, Kind::RouteTable, &rt_id).await?;
    // A route in a table that is gone is gone too.
    cloud.delete(Kind::Route, &route_id).await?;
    assert_eq!(cloud.read(Kind::Route, &route_id).await?, None);
    delete(&cloud, Kind::InternetGateway, &igw_id).await?;
    delete(&cloud, Kind::Subnet, &subnet_id).await?;
    delete(&cloud, Kind::Vpc, &vpc_id).await?;
    assert_eq!(cloud.find(Kind::Vpc, "vpc.main", &vpc).await?, None);
    assert_eq!(cloud.list_tagged().await?, Vec::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_internet_gateway_reads_without_a_vpc() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let config = sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let cloud = Cloud::new(&config, STACK);
    let vpc = props(json!({
        "cidr_block": "10.9.0.0/16",
        "enable_dns_hostnames": false,
        "enable_dns_support": true,
        "tags": tags("vpc.other", &[]),
    }));
    let (vpc_id, _) = create(&cloud, Kind::Vpc, "vpc.other", &vpc).await?;
    let igw = props(json!({"vpc_id": vpc_id, "tags": tags("internet_gateway.other", &[])}));
    let (igw_id, _) = create(
        &cloud,
        Kind::InternetGateway,
        "internet_gateway.other",
        &igw,
    )
    .await?;
    // Detached behind our back: read says so, delete still works.
    cloud
        .ec2
        .detach_internet_gateway()
        .internet_gateway_id(&igw_id)
        .vpc_id(&vpc_id)
        .send()
        .await?;
    let observed = cloud.read(Kind::InternetGateway, &igw_id).await?;
    assert_eq!(
        observed.map(|o| o.props["vpc_id"].clone()),
        Some(Value::Null)
    );
    delete(&cloud, Kind::InternetGateway, &igw_id).await?;
    delete(&cloud, Kind::Vpc, &vpc_id).await?;
    Ok(())
}
