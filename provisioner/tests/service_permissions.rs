//! Least privilege that is enough: the processor and graphql run against
//! DynamoDB and S3 on moto through the SDK fault layer, which records every
//! operation they make (no fault is injected), and each operation's IAM
//! action must be allowed, on the right kind of resource, by the policy
//! the graph writes for that service's task role.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use event_store::aws::{self, AwsSettings};
use event_store::hot::{HotReader, HotWriter};
use processor::{ProcessorConfig, Stores};
use provisioner::blueprint::Blueprint;
use provisioner::desired;
use serde_json::{json, Value};
use support::iam_action;
use test_support::backend::{AwsEmulator, Broker};
use test_support::fault::FaultLayer;
use test_support::harness::{GraphqlServer, ProcessorServer, ProcessorTopics};
use test_support::kafka::reset_group;
use test_support::stores::{at, dynamodb_store_with, event, s3_store_with};

/// What a recorded call needs: (IAM action, resource kind), the kind being
/// `table`, `index`, `bucket` or `object:<key>`.
fn needs(service: &str, operation: &str) -> Option<(String, String)> {
    let action = iam_action(service, operation)?;
    let kind = match service {
        "dynamodb" if operation == "Query" => "index".to_string(),
        "dynamodb" => "table".to_string(),
        _ => {
            // S3: `METHOD /bucket[/key][?subresource]`.
            let path = operation.split_once(' ').map_or("", |(_, p)| p);
            let path = path.split('?').next().unwrap_or(path);
            match path.trim_start_matches('/').split_once('/') {
                Some((_, key)) => format!("object:{key}"),
                None => "bucket".to_string(),
            }
        }
    };
    Some((action, kind))
}

/// Whether the role `name` of the local blueprint's graph allows `action`
/// on a resource of `kind`.
fn allowed(name: &str, action: &str, kind: &str) -> anyhow::Result<bool> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/local.toml");
    let desired = desired::resources(
        &Blueprint::load(&path)?,
        "123456789012",
        &Default::default(),
    );
    let role = desired
        .iter()
        .find(|r| r.address == format!("iam_role.{name}"))
        .ok_or_else(|| anyhow::anyhow!("no role {name}"))?;
    let statements = role.props["inline_policy"]["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(statements.iter().any(|statement| {
        strings(&statement["Action"]).iter().any(|a| a == action)
            && strings(&statement["Resource"]).iter().any(|resource| {
                let table = resource == "${dynamodb_table.events_hot.arn}";
                let index = resource == "${dynamodb_table.events_hot.arn}/index/*";
                match kind {
                    "table" => table,
                    "index" => table || index,
                    "bucket" => resource == "${s3_bucket.raw_events.arn}",
                    object => object.strip_prefix("object:").is_some_and(|key| {
                        resource == "${s3_bucket.raw_events.arn}/*"
                            || (resource == "${s3_bucket.raw_events.arn}/raw/*"
                                && key.starts_with("raw/"))
                    }),
                }
            })
    }))
}

/// The recorded operations of `faults` that `role`'s policy does not allow.
fn denied(role: &str, faults: &FaultLayer) -> anyhow::Result<Vec<String>> {
    let mut out = BTreeSet::new();
    for (service, operation) in faults.calls_by_service() {
        let Some((action, kind)) = needs(&service, &operation) else {
            continue;
        };
        if !allowed(role, &action, &kind)? {
            out.insert(format!("{operation} needs {action} on {kind}"));
        }
    }
    Ok(out.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_the_processor_makes_is_allowed_by_its_task_role() -> anyhow::Result<()> {
    let broker = Broker::start().await?;
    let emulator = AwsEmulator::start().await?;
    let t = ProcessorTopics::create(&broker, 3).await?;
    let direct = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let (recorded, faults) = FaultLayer::wrap(&direct);
    let hot: Arc<dyn HotWriter> = Arc::new(dynamodb_store_with(&recorded, 2).await?);
    let cold = Arc::new(s3_store_with(&recorded).await?);
    // Only what the service does from here on counts (not the setup).
    faults.clear_calls();
    let records = (0..120)
        .map(|i| {
            let e = event(
                ["click", "signup", "purchase"][i % 3],
                &format!("user-{}", i % 17),
                at("2024-05-06T08:00:00Z") + chrono::Duration::minutes((i * 97) as i64),
                i,
            );
            Ok((e.user_id.clone(), serde_json::to_vec(&e)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    broker.produce(&t.events, records).await?;
    let mut config =
        ProcessorConfig::for_dev(&broker.bootstrap_servers(), &t.events, &t.dlq, &t.group);
    config.batch_max_events = 25;
    config.batch_flush_interval_ms = 100;
    let stores = Stores {
        hot: hot.clone(),
        cold: cold.clone(),
    };
    // Readiness, a first pass, and a replay (what a restart redelivers).
    hot.check().await?;
    event_store::cold::ColdStore::check(cold.as_ref()).await?;
    ProcessorServer::start(config.clone(), stores.clone())?
        .drain(Duration::from_secs(60))
        .await?;
    reset_group(&broker.bootstrap_servers(), &t.group, &t.events).await?;
    ProcessorServer::start(config, stores)?
        .drain(Duration::from_secs(60))
        .await?;
    assert!(
        faults.calls().iter().any(|c| c == "BatchGetItem"),
        "{:?}",
        faults.calls()
    );
    let denied = denied("processor", &faults)?;
    assert!(denied.is_empty(), "denied on AWS: {denied:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_graphql_makes_is_allowed_by_its_task_role() -> anyhow::Result<()> {
    let emulator = AwsEmulator::start().await?;
    let direct = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let (recorded, faults) = FaultLayer::wrap(&direct);
    let hot: Arc<dyn HotReader> = Arc::new(dynamodb_store_with(&recorded, 2).await?);
    faults.clear_calls();
    hot.check().await?;
    let api = GraphqlServer::start(hot, |_| {}).await?;
    let queries = [
        r#"{ latestEvents(limit: 5) { eventId payload } }"#,
        r#"{ eventsByType(eventType: "click") { eventId } }"#,
        r#"{ eventsByUser(userId: "u") { eventId } }"#,
        r#"{ events(first: 3) { nodes { eventId } pageInfo { hasNextPage endCursor } } }"#,
        r#"{ eventCount(from: "2024-05-06T00:00:00Z", to: "2024-05-08T00:00:00Z", eventType: "click") { total } }"#,
        r#"{ dailyActiveUsers(from: "2024-05-06", to: "2024-05-07") { count } }"#,
        r#"{ topEvents(from: "2024-05-06", to: "2024-05-07") { eventType count } }"#,
        r#"{ retention(startDate: "2024-05-06", windows: 2) { size } }"#,
    ];
    for query in queries {
        api.data(query, json!({})).await?;
    }
    let denied = denied("graphql", &faults)?;
    assert!(denied.is_empty(), "denied on AWS: {denied:?}");
    Ok(())
}
