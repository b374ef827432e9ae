//! Golden-file tests of `plan`'s text, and planner tests with no network:
//! the cloud is a synthetic "everything applied" refresh.
//! Regenerate the files with `UPDATE_GOLDEN=1 cargo test -p provisioner --test plan_golden`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use provisioner::blueprint::{Blueprint, Severity};
use provisioner::cloud::Observed;
use provisioner::cost;
use provisioner::desired;
use provisioner::image::Architecture;
use provisioner::model::{Kind, Props, Resource};
use provisioner::plan::{plan, resolve_props, topological, Action, Current, Plan};
use provisioner::state::{Recorded, State};
use serde_json::{json, Value};

/// The account moto answers GetCallerIdentity with.
const ACCOUNT: &str = "123456789012";

fn blueprints() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints")
}

fn load(name: &str) -> anyhow::Result<Blueprint> {
    let path = blueprints().join(name);
    let text = std::fs::read_to_string(&path)?;
    // A fixed path in messages, wherever the checkout is.
    Ok(Blueprint::parse(
        Path::new(&format!("blueprints/{name}")),
        text,
    )?)
}

fn edit(name: &str, from: &str, to: &str) -> anyhow::Result<Blueprint> {
    let text = std::fs::read_to_string(blueprints().join(name))?;
    anyhow::ensure!(text.contains(from), "{name} does not contain {from:?}");
    Ok(Blueprint::parse(
        Path::new(&format!("blueprints/{name}")),
        text.replacen(from, to, 1),
    )?)
}

/// A fixed digest per service, as a build would pin them.
fn pins(changed: Option<&str>) -> desired::ImagePins {
    ["ingest", "processor", "graphql"]
        .iter()
        .enumerate()
        .map(|(i, service)| {
            let fill = if changed == Some(*service) {
                'f'
            } else {
                char::from(b'a' + i as u8)
            };
            (
                service.to_string(),
                desired::ImagePin {
                    digest: format!("sha256:{}", fill.to_string().repeat(64)),
                    architecture: Architecture::Amd64,
                },
            )
        })
        .collect()
}

/// The stack's resources with every image pinned.
fn resources(blueprint: &Blueprint) -> Vec<Resource> {
    desired::resources(blueprint, ACCOUNT, &pins(None))
}

/// Fake outputs for a resource, stable across runs.
fn outputs(resource: &Resource, props: &Props) -> Props {
    let name = resource
        .address
        .split_once('.')
        .map(|(_, n)| n)
        .unwrap_or("x");
    let mut out = Props::new();
    out.insert(
        "id".into(),
        json!(format!(
            "{}-{name}",
            resource.kind.prefix().replace('_', "")
        )),
    );
    out.insert(
        "arn".into(),
        json!(format!("arn:aws:test:::{}", resource.address)),
    );
    out.insert(
        "name".into(),
        props
            .get("name")
            .or(props.get("family"))
            .cloned()
            .unwrap_or(json!(name)),
    );
    out.insert(
        "url".into(),
        json!(format!("123456789012.dkr.ecr.test/{name}")),
    );
    out.insert("registry".into(), json!("123456789012.dkr.ecr.test"));
    if resource.kind == Kind::Image {
        let prop = |name: &str| props.get(name).and_then(Value::as_str).unwrap_or_default();
        let uri = format!(
            "{}/{}@{}",
            prop("registry"),
            prop("repository"),
            prop("digest")
        );
        out.insert("id".into(), json!(uri));
        out.insert("uri".into(), json!(uri));
    }
    out.insert("dns_name".into(), json!("ep-test-alb.elb.test"));
    out.insert("metric_dimension".into(), json!(format!("app/{name}/0123")));
    out.insert("private_ip".into(), json!("10.40.0.10"));
    out
}

/// The state and refresh of a stack where `desired` is fully applied.
fn applied(desired: &[Resource]) -> (State, BTreeMap<String, Current>) {
    let mut state = State::new("ep-local");
    let mut current = BTreeMap::new();
    for resource in topological(desired) {
        let lookup = |address: &str, output: &str| -> Option<Value> {
            state.resources.get(address)?.outputs.get(output).cloned()
        };
        let props = resolve_props(&resource.props, &lookup);
        let outs = outputs(resource, &props);
        let id = outs["id"].as_str().unwrap_or_default().to_string();
        current.insert(
            resource.address.clone(),
            Current {
                id: id.clone(),
                observed: Some(Observed {
                    props: props.clone(),
                    outputs: outs.clone(),
                }),
                adopted: false,
            },
        );
        state.resources.insert(
            resource.address.clone(),
            Recorded {
                kind: resource.kind,
                id,
                props,
                outputs: outs,
                deps: resource.deps.clone(),
            },
        );
    }
    (state, current)
}

fn golden(name: &str, plan: &Plan) -> anyhow::Result<()> {
    golden_text(name, &plan.render())
}

fn golden_text(name: &str, text: &str) -> anyhow::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text)?;
    }
    let want = std::fs::read_to_string(&path)?;
    assert_eq!(text, want, "text differs from {}", path.display());
    Ok(())
}

#[test]
fn plan_from_nothing_local() -> anyhow::Result<()> {
    let desired = resources(&load("local.toml")?);
    let plan = plan(&desired, &State::new("ep-local"), &BTreeMap::new());
    assert_eq!(plan.count(Action::Create), desired.len());
    golden("local-create.txt", &plan)
}

#[test]
fn plan_from_nothing_production_has_https_and_three_subnets() -> anyhow::Result<()> {
    let desired = resources(&load("production.toml")?);
    let plan = plan(&desired, &State::new("ep-prod"), &BTreeMap::new());
    let addresses: Vec<&str> = plan.changes.iter().map(|c| c.address.as_str()).collect();
    for a in [
        "listener.https",
        "listener_rule.ingest_https",
        "subnet.public_c",
    ] {
        assert!(addresses.contains(&a), "{a} missing");
    }
    golden("production-create.txt", &plan)
}

#[test]
fn an_applied_stack_plans_no_change() -> anyhow::Result<()> {
    let desired = resources(&load("local.toml")?);
    let (state, current) = applied(&desired);
    let plan = plan(&desired, &state, &current);
    assert!(!plan.has_changes(), "{}", plan.render());
    assert!(plan.drift.is_empty());
    assert_eq!(plan.unchanged, desired.len());
    golden("local-no-change.txt", &plan)
}

#[test]
fn a_changed_binary_replaces_its_image_and_task_definition_and_rolls_its_service(
) -> anyhow::Result<()> {
    let blueprint = load("local.toml")?;
    let (state, current) = applied(&resources(&blueprint));
    let plan = plan(
        &desired::resources(&blueprint, ACCOUNT, &pins(Some("ingest"))),
        &state,
        &current,
    );
    let changed: Vec<(&str, Action)> = plan
        .changes
        .iter()
        .map(|c| (c.address.as_str(), c.action))
        .collect();
    assert_eq!(
        changed,
        vec![
            ("image.ingest", Action::Replace),
            ("task_definition.ingest", Action::Replace),
            ("ecs_service.ingest", Action::Update),
        ]
    );
    golden("local-new-image.txt", &plan)
}

#[test]
fn desired_count_and_retention_update_in_place() -> anyhow::Result<()> {
    let (state, current) = applied(&resources(&load("local.toml")?));
    let changed = Blueprint::parse(
        Path::new("blueprints/local.toml"),
        std::fs::read_to_string(blueprints().join("local.toml"))?
            .replacen(
                "[services.ingest]\ndesired_count = 1",
                "[services.ingest]\ndesired_count = 3",
                1,
            )
            .replacen("retention_days = 7", "retention_days = 14", 1),
    )?;
    let plan = plan(&resources(&changed), &state, &current);
    let summary: Vec<(String, Action, Vec<String>)> = plan
        .changes
        .iter()
        .map(|c| {
            (
                c.address.clone(),
                c.action,
                c.attrs.iter().map(|a| a.name.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "log_group.ingest".into(),
                Action::Update,
                vec!["retention_days".into()]
            ),
            (
                "ecs_service.ingest".into(),
                Action::Update,
                vec!["desired_count".into()]
            ),
            (
                "log_group.processor".into(),
                Action::Update,
                vec!["retention_days".into()]
            ),
            (
                "log_group.graphql".into(),
                Action::Update,
                vec!["retention_days".into()]
            ),
        ]
    );
    golden("local-update.txt", &plan)
}

/// A new broker starts empty: the events the old one holds and the
/// processor has not consumed yet are gone with it.
#[test]
fn a_broker_replacement_is_data_loss_like_the_table_or_the_bucket() -> anyhow::Result<()> {
    let (state, current) = applied(&resources(&load("local.toml")?));
    let changed = edit(
        "local.toml",
        "instance_type = \"t3.small\"",
        "instance_type = \"t3.medium\"",
    )?;
    let plan = plan(&resources(&changed), &state, &current);
    assert_eq!(plan.data_loss(), ["instance.broker (replace)"]);
    let text = plan.render();
    assert!(
        text.contains("Data loss: instance.broker (replace)") && text.contains("--allow-data-loss"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_new_path_rule_changes_only_that_rule() -> anyhow::Result<()> {
    let (state, current) = applied(&resources(&load("local.toml")?));
    let changed = edit(
        "local.toml",
        "[services.graphql]\n",
        "[services.graphql]\npath_patterns = [\"/graphql*\", \"/v2/graphql*\"]\n",
    )?;
    let plan = plan(&resources(&changed), &state, &current);
    assert_eq!(plan.changes.len(), 1, "{}", plan.render());
    assert_eq!(plan.changes[0].address, "listener_rule.graphql");
    assert_eq!(plan.changes[0].action, Action::Update);
    golden("local-rule.txt", &plan)
}

#[test]
fn a_new_vpc_cidr_replaces_the_network_and_everything_in_it() -> anyhow::Result<()> {
    let (state, current) = applied(&resources(&load("local.toml")?));
    let changed = Blueprint::parse(
        Path::new("blueprints/local.toml"),
        std::fs::read_to_string(blueprints().join("local.toml"))?.replace("10.40.", "10.50."),
    )?;
    let plan = plan(&resources(&changed), &state, &current);
    let replaced: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Replace)
        .map(|c| c.address.as_str())
        .collect();
    for a in [
        "vpc.main",
        "subnet.public_a",
        "security_group.alb",
        "instance.broker",
        "load_balancer.main",
        "target_group.ingest",
        "task_definition.ingest",
    ] {
        assert!(replaced.contains(&a), "{a} not replaced: {replaced:?}");
    }
    // What does not live in the VPC stays.
    for a in [
        "dynamodb_table.events_hot",
        "s3_bucket.raw_events",
        "iam_role.processor",
        "log_group.ingest",
    ] {
        assert!(!plan.changes.iter().any(|c| c.address == a), "{a} changes");
    }
    golden("local-replace-vpc.txt", &plan)
}

#[test]
fn drift_and_deletion_outside_provision_are_shown_and_repaired() -> anyhow::Result<()> {
    let desired = resources(&load("local.toml")?);
    let (state, mut current) = applied(&desired);
    if let Some(Current {
        observed: Some(o), ..
    }) = current.get_mut("log_group.ingest")
    {
        o.props.insert("retention_days".into(), json!(1));
    }
    if let Some(c) = current.get_mut("ecr_repository.graphql") {
        c.observed = None;
    }
    let plan = plan(&desired, &state, &current);
    assert_eq!(plan.drift.len(), 2);
    // The log group back to 7 days; the repository made again, and what
    // references it (its URL is only known after apply) follows: its
    // image is pushed again and the task definition re-registered.
    assert_eq!(plan.count(Action::Create), 1);
    assert_eq!(plan.count(Action::Replace), 2);
    assert_eq!(plan.count(Action::Update), 2);
    golden("local-drift.txt", &plan)
}

#[test]
fn a_resource_removed_from_the_blueprint_is_deleted() -> anyhow::Result<()> {
    let desired = resources(&load("local.toml")?);
    let (mut state, current) = applied(&desired);
    state.resources.insert(
        "log_group.old".into(),
        Recorded {
            kind: Kind::LogGroup,
            id: "/ecs/ep-local/old".into(),
            props: Props::new(),
            outputs: Props::new(),
            deps: Default::default(),
        },
    );
    let plan = plan(&desired, &state, &current);
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].action, Action::Delete);
    assert_eq!(
        plan.summary(),
        "Plan: 0 to create, 0 to update in place, 0 to replace, 1 to delete."
    );
    Ok(())
}

#[test]
fn every_reference_points_at_a_resource_of_the_graph_and_there_is_no_cycle() -> anyhow::Result<()> {
    for name in ["local.toml", "dev.toml", "production.toml"] {
        let blueprint = load(name)?;
        assert_eq!(
            blueprint
                .check()
                .iter()
                .filter(|f| f.severity == provisioner::blueprint::Severity::Error)
                .count(),
            0,
            "{name}"
        );
        let desired = resources(&blueprint);
        let order: Vec<&str> = topological(&desired)
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        for (i, resource) in topological(&desired).iter().enumerate() {
            for dep in &resource.deps {
                let at = order.iter().position(|a| a == dep);
                assert!(
                    at.is_some_and(|at| at < i),
                    "{name}: {} depends on {dep}, which is missing or later",
                    resource.address
                );
            }
        }
    }
    Ok(())
}

/// A kind's `updatable` list spells its attribute names a second time (its
/// props struct is the first): a misspelt name would plan a replacement
/// where an update was meant, so each must be an attribute some resource of
/// the kind has (some are optional, as a role's `instance_profile`).
#[test]
fn every_updatable_attribute_is_one_its_kind_has() -> anyhow::Result<()> {
    let mut attributes: std::collections::BTreeMap<Kind, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for name in ["local.toml", "dev.toml", "production.toml"] {
        for resource in resources(&load(name)?) {
            let seen = attributes.entry(resource.kind).or_default();
            seen.extend(resource.props.keys().cloned());
        }
    }
    for (kind, seen) in &attributes {
        for attribute in kind.implementation().updatable() {
            assert!(
                seen.contains(*attribute),
                "{kind} lists `{attribute}` as updatable but no {kind} has such an attribute"
            );
        }
    }
    let missing: Vec<&Kind> = Kind::ALL
        .iter()
        .filter(|k| !attributes.contains_key(k))
        .collect();
    assert!(missing.is_empty(), "no blueprint has {missing:?}");
    Ok(())
}

/// What CloudWatch accepts and moto does not check: an alarm with a
/// dimension its metric is not published with, or with more data points
/// to alarm than periods, is accepted by both and never fires on AWS.
#[test]
fn alarms_watch_metrics_as_aws_publishes_them_within_cloudwatch_limits() -> anyhow::Result<()> {
    // The dimensions each metric is published with, and from which output.
    let published: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::from([
        (
            "HTTPCode_ELB_5XX_Count",
            vec![("LoadBalancer", "load_balancer.main.metric_dimension")],
        ),
        (
            "HTTPCode_Target_5XX_Count",
            vec![("LoadBalancer", "load_balancer.main.metric_dimension")],
        ),
        // Per target group and load balancer pair: TargetGroup alone gets no data.
        (
            "HealthyHostCount",
            vec![
                ("LoadBalancer", "load_balancer.main.metric_dimension"),
                ("TargetGroup", "target_group."),
            ],
        ),
        (
            "UnHealthyHostCount",
            vec![
                ("LoadBalancer", "load_balancer.main.metric_dimension"),
                ("TargetGroup", "target_group."),
            ],
        ),
        (
            "StatusCheckFailed",
            vec![("InstanceId", "instance.broker.id")],
        ),
    ]);
    for name in ["local.toml", "dev.toml", "production.toml"] {
        let blueprint = load(name)?;
        let alarms: Vec<Resource> = resources(&blueprint)
            .into_iter()
            .filter(|r| r.kind == Kind::Alarm)
            .collect();
        assert_eq!(alarms.len(), 7, "{name}");
        for alarm in &alarms {
            let at = format!("{name} {}", alarm.address);
            let text = |key: &str| {
                alarm
                    .props
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            let number = |key: &str| alarm.props.get(key).and_then(Value::as_i64).unwrap_or(0);
            assert!(
                text("name").len() <= 255 && text("name").starts_with(blueprint.stack()),
                "{at}"
            );
            assert!(
                !text("description").is_empty() && text("description").len() <= 1024,
                "{at}"
            );
            assert!(
                ["SampleCount", "Average", "Sum", "Minimum", "Maximum"]
                    .contains(&text("statistic")),
                "{at}"
            );
            assert!(
                [
                    "GreaterThanOrEqualToThreshold",
                    "GreaterThanThreshold",
                    "LessThanThreshold",
                    "LessThanOrEqualToThreshold"
                ]
                .contains(&text("comparison")),
                "{at}"
            );
            assert!(
                ["breaching", "notBreaching", "ignore", "missing"]
                    .contains(&text("treat_missing_data")),
                "{at}"
            );
            let period = number("period_seconds");
            assert!(period > 0 && period % 60 == 0, "{at}: period {period}");
            let periods = number("evaluation_periods");
            let datapoints = number("datapoints_to_alarm");
            assert!(
                (1..=periods).contains(&datapoints),
                "{at}: {datapoints} of {periods}"
            );
            assert!(periods * period <= 86_400, "{at}: longer than a day");
            let dimensions = alarm
                .props
                .get("dimensions")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let wanted = published
                .get(text("metric_name"))
                .with_context(|| format!("{at}: unknown metric"))?;
            let names: Vec<&str> = dimensions.keys().map(String::as_str).collect();
            let wanted_names: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, wanted_names, "{at}");
            for (dimension, from) in wanted {
                let value = dimensions
                    .get(*dimension)
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                assert!(
                    value.starts_with(&format!("${{{from}")),
                    "{at}: {dimension} = {value}"
                );
            }
            let expected_actions = if blueprint.spec.alarms.email.is_some() {
                json!(["${sns_topic.alarms.arn}"])
            } else {
                json!([])
            };
            assert_eq!(alarm.props.get("actions"), Some(&expected_actions), "{at}");
        }
    }
    Ok(())
}

/// The estimate of `blueprint` at the shipped table's prices, with the
/// resources of `before` already applied.
fn estimate(blueprint: &Blueprint, before: &[Resource]) -> anyhow::Result<cost::Estimate> {
    let table = cost::prices::Table::shipped();
    let region = &blueprint.spec.stack.region;
    let prices = table
        .regions
        .get(region)
        .with_context(|| format!("no prices for {region}"))?;
    let source = cost::prices::Source {
        kind: "shipped-table",
        date: table.date,
        note: None,
    };
    let (after, _) = applied(&resources(blueprint));
    let (before, _) = applied(before);
    Ok(cost::estimate(
        region,
        prices,
        source,
        &priced(&before),
        &priced(&after),
    ))
}

/// A state's resources as the estimate reads them.
fn priced(state: &State) -> Vec<cost::Priced<'_>> {
    state
        .resources
        .iter()
        .map(|(address, r)| {
            (
                r.kind,
                address.split_once('.').map_or("", |(_, n)| n),
                &r.props,
            )
        })
        .collect()
}

#[test]
fn the_cost_of_each_shipped_blueprint_at_the_shipped_prices() -> anyhow::Result<()> {
    for name in ["local", "dev", "production"] {
        let blueprint = load(&format!("{name}.toml"))?;
        let estimate = estimate(&blueprint, &[])?;
        assert!(
            estimate.lines.iter().all(|l| l.monthly_usd.is_some()),
            "{name}: {estimate:?}"
        );
        assert_eq!(
            estimate.change_usd, estimate.monthly_usd,
            "{name}: all of it is new"
        );
        golden_text(&format!("cost-{name}.txt"), &estimate.render())?;
    }
    Ok(())
}

#[test]
fn the_cost_change_is_what_the_plan_adds() -> anyhow::Result<()> {
    let before = resources(&load("dev.toml")?);
    let more = edit(
        "dev.toml",
        "[services.ingest]\ndesired_count = 1",
        "[services.ingest]\ndesired_count = 3",
    )?;
    let estimate = estimate(&more, &before)?;
    let ingest = estimate
        .lines
        .iter()
        .find(|l| l.item == "ecs_service.ingest")
        .context("no ingest line")?;
    let (after, was) = (
        ingest.monthly_usd.unwrap_or(0.0),
        ingest.before_usd.unwrap_or(0.0),
    );
    // Two more tasks of 0.25 vCPU and 0.5 GB, and their two public addresses.
    let tasks = 2.0 * (0.25 * 0.04048 + 0.5 * 0.004445) * 730.0;
    let addresses = 2.0 * 0.005 * 730.0;
    assert!((after - 3.0 * was).abs() < 0.02, "{ingest:?}");
    assert!(
        (estimate.change_usd - (tasks + addresses)).abs() < 0.03,
        "{}",
        estimate.render()
    );
    let unchanged = estimate
        .lines
        .iter()
        .filter(|l| l.item != "ecs_service.ingest" && l.item != "public IPv4 addresses");
    for line in unchanged {
        assert_eq!(line.monthly_usd, line.before_usd, "{line:?}");
    }
    Ok(())
}

/// Every (action, resource) the role named `name` allows.
fn allowed(desired: &[Resource], name: &str) -> Vec<(String, String)> {
    let policy = desired
        .iter()
        .find(|r| r.address == format!("iam_role.{name}"))
        .map(|r| r.props["inline_policy"].clone())
        .unwrap_or(Value::Null);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for statement in policy["Statement"].as_array().cloned().unwrap_or_default() {
        for action in strings(&statement["Action"]) {
            for resource in strings(&statement["Resource"]) {
                out.push((action.clone(), resource));
            }
        }
    }
    out
}

#[test]
fn the_processor_may_check_its_bucket_and_roles_name_only_real_iam_actions() -> anyhow::Result<()> {
    let desired = resources(&load("local.toml")?);
    // Readiness calls HeadBucket, which IAM authorizes as s3:ListBucket on the bucket.
    let processor = allowed(&desired, "processor");
    assert!(
        processor.contains(&("s3:ListBucket".into(), "${s3_bucket.raw_events.arn}".into())),
        "{processor:?}"
    );
    // TransactWriteItems is authorized per item (UpdateItem here); it is no IAM action.
    for name in ["execution", "ingest", "processor", "graphql"] {
        assert!(
            !allowed(&desired, name)
                .iter()
                .any(|(action, _)| action == "dynamodb:TransactWriteItems"),
            "{name}"
        );
    }
    Ok(())
}

#[test]
fn task_roles_are_least_privilege() -> anyhow::Result<()> {
    let desired = resources(&load("local.toml")?);
    let role = |name: &str| {
        desired
            .iter()
            .find(|r| r.address == format!("iam_role.{name}"))
            .map(|r| r.props["inline_policy"].clone())
    };
    assert_eq!(role("ingest"), Some(Value::Null));
    let text = |v: Option<Value>| v.map(|v| v.to_string()).unwrap_or_default();
    let graphql = text(role("graphql"));
    assert!(
        !graphql.contains("PutItem") && !graphql.contains("s3:"),
        "{graphql}"
    );
    let processor = text(role("processor"));
    assert!(
        processor.contains("/raw/*") && !processor.contains("s3:GetObject"),
        "{processor}"
    );
    for name in ["execution", "ingest", "processor", "graphql"] {
        assert!(
            !text(role(name)).contains("\"*\""),
            "{name} has a * action or resource"
        );
    }
    // The broker is reachable from the services' group only.
    let broker = desired
        .iter()
        .find(|r| r.address == "security_group.broker")
        .map(|r| r.props["ingress"].clone());
    assert_eq!(
        broker,
        Some(
            json!([{"protocol": "tcp", "from_port": 9092, "to_port": 9092, "cidr": null, "source_security_group_id": "${security_group.services.id}", "description": "Kafka from the services"}])
        )
    );
    Ok(())
}

fn broker_user_data(blueprint: &Blueprint) -> anyhow::Result<String> {
    let desired = resources(blueprint);
    let broker = desired
        .iter()
        .find(|r| r.address == "instance.broker")
        .ok_or_else(|| anyhow::anyhow!("no broker"))?;
    broker
        .props
        .get("user_data")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no user data"))
}

/// The user-data installs a supported Redpanda from the repository Redpanda
/// documents now (the old host shut down), retries its downloads, and uses
/// rpk's commands as Redpanda 26.1 documents them.
#[test]
fn the_broker_installs_from_the_documented_repository_with_retries() -> anyhow::Result<()> {
    let script = broker_user_data(&load("local.toml")?)?;
    for want in [
        "fetch -L -o /tmp/setup-redpanda.rpm.sh 'https://linux.pkg.redpanda.com/setup-redpanda.rpm.sh'",
        "curl -fsS --retry 10 --retry-all-errors --retry-delay 3",
        "dnf install -y --setopt=retries=10 'redpanda-26.1.14'",
        r#"rpk redpanda config bootstrap --self "$IP" --ips "$IP" --advertised-kafka "$IP:9092""#,
        "rpk cluster health --watch --exit-when-healthy",
        // A cluster property since Redpanda 22.2: not settable in redpanda.yaml.
        "rpk cluster config set auto_create_topics_enabled false",
        "rpk topic create events.raw --partitions 12 --replicas 1 --if-not-exists",
        "rpk topic create events.dlq --partitions 3 --replicas 1 --if-not-exists",
    ] {
        assert!(script.contains(want), "{want:?} not in\n{script}");
    }
    assert!(!script.contains("dl.redpanda.com"), "{script}");
    let syntax = std::process::Command::new("bash")
        .args(["-n", "-c", &script])
        .output()?;
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    let mirrored = edit(
        "local.toml",
        "disk_gib = 20",
        "disk_gib = 20\nrepository_setup_url = \"https://mirror.example.internal/setup-redpanda.rpm.sh\"",
    )?;
    let script = broker_user_data(&mirrored)?;
    assert!(script.contains("'https://mirror.example.internal/setup-redpanda.rpm.sh'"));
    let plain_http = edit(
        "local.toml",
        "disk_gib = 20",
        "disk_gib = 20\nrepository_setup_url = \"http://mirror.example.internal/setup.sh\"",
    )?;
    assert!(plain_http
        .check()
        .iter()
        .any(|f| f.to_string().contains("`broker.repository_setup_url`")));
    Ok(())
}

/// The user-data run with every outside command replaced by a stub that
/// logs its arguments (this machine has no EC2 metadata, dnf or rpk): it
/// reports `ready` after the topics, and a failing step as `failed: STEP`,
/// on the instance's tag and on the console.
#[test]
fn the_broker_reports_its_setup_result_on_its_tag_and_console() -> anyhow::Result<()> {
    let script = broker_user_data(&load("local.toml")?)?;
    for (failing, report) in [
        (None, "Value=ready"),
        (Some("dnf"), "Value=failed: install redpanda-26.1.14"),
        (Some("rpk"), "Value=failed: configure Redpanda"),
    ] {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("calls.log");
        let console = dir.path().join("console");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin)?;
        for command in ["curl", "dnf", "rpk", "systemctl", "aws"] {
            let status = if Some(command) == failing { 1 } else { 0 };
            // curl prints what the metadata service would; -o writes a setup script.
            let body = format!(
                "#!/bin/bash\necho \"{command} $*\" >> {log}\nfor a in \"$@\"; do [ \"$prev\" = -o ] && echo true > \"$a\"; prev=$a; done\n[ {command} = curl ] && echo 10.0.0.5\nexit {status}\n",
                log = log.display()
            );
            let path = bin.join(command);
            std::fs::write(&path, body)?;
            std::process::Command::new("chmod")
                .arg("+x")
                .arg(&path)
                .status()?;
        }
        let script = script
            .replace("/dev/console", &console.display().to_string())
            .replace(
                "/var/log/event-platform-broker.log",
                &dir.path().join("broker.log").display().to_string(),
            )
            .replace(
                "/tmp/setup-redpanda.rpm.sh",
                &dir.path().join("setup.sh").display().to_string(),
            );
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let run = std::process::Command::new("bash")
            .args(["-c", &script])
            .env("PATH", path)
            .output()?;
        assert_eq!(run.status.success(), failing.is_none(), "{run:?}");
        let calls = std::fs::read_to_string(&log)?;
        let tagged: Vec<&str> = calls
            .lines()
            .filter(|l| l.starts_with("aws ec2 create-tags"))
            .collect();
        assert_eq!(tagged.len(), 1, "{calls}");
        assert!(
            tagged[0].ends_with(&format!("Key=event-platform:broker-setup,{report}")),
            "{calls}"
        );
        // The tee behind the console may finish just after bash exits.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let printed = std::fs::read_to_string(&console)?;
        match failing {
            None => {
                assert!(
                    printed.contains("event-platform: broker ready"),
                    "{printed}"
                );
                assert!(calls.contains("rpk topic create events.raw"), "{calls}");
            }
            Some(_) => assert!(
                printed.contains("event-platform: broker setup failed"),
                "{printed}"
            ),
        }
    }
    Ok(())
}

/// A stack applied when the table was `EventsHot` and the bucket
/// `STACK-raw-events` keeps both: the new default names never replace a
/// data resource the state already holds. A name in the blueprint still wins.
#[test]
fn a_stack_applied_under_the_old_default_names_keeps_its_table_and_bucket() -> anyhow::Result<()> {
    let blueprint = load("local.toml")?;
    let old_names = [
        ("dynamodb_table.events_hot", "EventsHot"),
        ("s3_bucket.raw_events", "ep-local-raw-events"),
    ];
    let mut old = resources(&blueprint);
    for resource in old.iter_mut() {
        if let Some((_, name)) = old_names.iter().find(|(a, _)| *a == resource.address) {
            resource.props.insert("name".into(), json!(name));
        }
    }
    let (state, current) = applied(&old);
    let mut desired = resources(&blueprint);
    let before = plan(&desired, &state, &current);
    assert!(before.count(Action::Replace) >= 2, "{}", before.render());
    desired::keep_recorded_data_names(&blueprint, &mut desired, &state);
    let after = plan(&desired, &state, &current);
    assert!(!after.has_changes(), "{}", after.render());

    let named = edit(
        "local.toml",
        "[logs]",
        "[table]\nname = \"Renamed\"\n\n[logs]",
    )?;
    let mut desired = resources(&named);
    desired::keep_recorded_data_names(&named, &mut desired, &state);
    let renamed = plan(&desired, &state, &current);
    assert!(
        renamed
            .changes
            .iter()
            .any(|c| c.address == "dynamodb_table.events_hot" && c.action == Action::Replace),
        "{}",
        renamed.render()
    );
    Ok(())
}

/// With a certificate, plain HTTP only redirects to HTTPS (a JWT never
/// crosses the internet in cleartext) and has no rules; on every listener
/// that forwards, `/metrics` and the health pages are answered 404 before
/// any rule could forward them (the target groups check health directly).
#[test]
fn http_redirects_with_a_certificate_and_internals_are_refused_at_the_listener(
) -> anyhow::Result<()> {
    let internal = json!(["/health", "/health/*", "/metrics", "/metrics/*"]);
    for (blueprint, forwarding) in [("production.toml", "https"), ("local.toml", "http")] {
        let desired = resources(&load(blueprint)?);
        let find = |address: &str| desired.iter().find(|r| r.address == address);
        let http = find("listener.http").ok_or_else(|| anyhow::anyhow!("no http listener"))?;
        let redirects = forwarding == "https";
        assert_eq!(
            http.props["redirect_to_https"],
            json!(redirects),
            "{blueprint}"
        );
        assert_eq!(
            http.props["default_target_group_arn"].is_null(),
            redirects,
            "{blueprint}"
        );
        let on = |listener: &str| -> Vec<&Resource> {
            let arn = format!("${{listener.{listener}.arn}}");
            desired
                .iter()
                .filter(|r| r.kind == Kind::ListenerRule && r.props["listener_arn"] == json!(arn))
                .collect()
        };
        if redirects {
            assert!(
                on("http").is_empty(),
                "{blueprint}: rules on a redirecting listener"
            );
        }
        let rules = on(forwarding);
        let first = rules
            .iter()
            .min_by_key(|r| r.props["priority"].as_i64())
            .ok_or_else(|| anyhow::anyhow!("{blueprint}: no rules"))?;
        assert_eq!(first.props["path_patterns"], internal, "{blueprint}");
        assert_eq!(first.props["fixed_status"], json!(404), "{blueprint}");
        assert!(first.props["target_group_arn"].is_null(), "{blueprint}");
        assert!(
            rules
                .iter()
                .filter(|r| r.address != first.address)
                .all(|r| r.props["fixed_status"].is_null()),
            "{blueprint}"
        );
    }
    Ok(())
}

#[test]
fn telemetry_sends_every_service_s_traces_to_the_blueprint_s_collector() -> anyhow::Result<()> {
    let blueprint = edit(
        "production.toml",
        "[logs]",
        "[telemetry]\notlp_endpoint = \"http://collector.internal:4318\"\nsample_ratio = 0.25\n\n[logs]",
    )?;
    assert!(blueprint
        .check()
        .iter()
        .all(|f| f.severity != Severity::Error));
    let traced = resources(&blueprint);
    for service in ["ingest", "processor", "graphql"] {
        let task = traced
            .iter()
            .find(|r| r.address == format!("task_definition.{service}"))
            .with_context(|| format!("no task definition for {service}"))?;
        let env = &task.props["container"]["environment"];
        assert_eq!(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "http://collector.internal:4318"
        );
        assert_eq!(env["OTEL_SERVICE_NAME"], service);
        assert_eq!(
            env["OTEL_RESOURCE_ATTRIBUTES"],
            "deployment.environment.name=ep-prod"
        );
        assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
        assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.25");
    }
    // Without the section, no task gets any of it.
    let plain = load("production.toml")?;
    for task in resources(&plain)
        .iter()
        .filter(|r| r.address.starts_with("task_definition."))
    {
        let env = task.props["container"]["environment"]
            .as_object()
            .context("an environment")?;
        assert!(env.keys().all(|k| !k.starts_with("OTEL_")), "{env:?}");
    }
    Ok(())
}
