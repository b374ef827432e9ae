//! The permissions the user running `provision` needs: every AWS call an
//! apply, a plan and a destroy of the whole stack make on moto (recorded at
//! the SDK layer), and the reads of `status` and `logs`, must be allowed by
//! the policy shipped in `provisioner/iam/provision-policy.json`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::{apply, iam_action, Env};

fn shipped_policy() -> anyhow::Result<BTreeSet<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("iam/provision-policy.json");
    let policy: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().cloned().unwrap_or_default() {
        anyhow::ensure!(statement["Effect"] == "Allow", "{statement}");
        for action in statement["Action"].as_array().cloned().unwrap_or_default() {
            actions.insert(action.as_str().unwrap_or_default().to_string());
        }
    }
    Ok(actions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_apply_plan_destroy_status_and_logs_is_in_the_shipped_policy(
) -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let options = env.options();
    let mut used = BTreeSet::new();
    let stack = env.stack().await?;
    apply(&stack, &options).await?;
    let record = |env: &Env, used: &mut BTreeSet<String>| {
        for (service, operation) in env.faults.calls_by_service() {
            used.extend(iam_action(&service, &operation));
        }
    };
    record(&env, &mut used);
    env.stack().await?.plan(&options).await?;
    record(&env, &mut used);
    // The day-two reads: status and logs.
    let stack = env.stack().await?;
    let state = stack.state()?;
    let status = provisioner::status::Status::gather(
        &stack.cloud,
        &stack.blueprint,
        &state,
        Some("127.0.0.1:9"),
    )
    .await?;
    assert!(!status.services.is_empty());
    let query = provisioner::logs::Query {
        groups: [("ingest".to_string(), "/ecs/ep-local/ingest".to_string())].into(),
        start_ms: 0,
        filter: Some("error".into()),
    };
    provisioner::logs::read(&stack.cloud, &query).await?;
    record(&env, &mut used);
    env.stack()
        .await?
        .destroy(&options, |_| true)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not approved"))?;
    record(&env, &mut used);
    assert!(used.len() > 50, "{used:?}");
    let allowed = shipped_policy()?;
    let missing: Vec<&String> = used.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "not in provision-policy.json: {missing:?}"
    );
    Ok(())
}
