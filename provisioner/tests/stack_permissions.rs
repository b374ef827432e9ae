//! The permissions the user running `provision` needs: every AWS call an
//! apply, a plan and a destroy of the whole stack make on moto (recorded at
//! the SDK layer) must be allowed by the policy shipped in
//! `provisioner/iam/provision-policy.json`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::{apply, Env};

/// The IAM action of a recorded call: `service:Operation`, except for S3's
/// REST calls, named by method, path and subresource.
fn action(service: &str, operation: &str) -> Option<String> {
    if service == "sts" {
        // GetCallerIdentity needs no permission.
        return None;
    }
    if service != "s3" {
        return Some(format!("{service}:{operation}"));
    }
    let (method, path) = operation.split_once(' ').unwrap_or((operation, "/"));
    let (path, subresource) = path.split_once('?').unwrap_or((path, ""));
    let bucket_only = !path.trim_start_matches('/').contains('/');
    let name = match (method, subresource, bucket_only) {
        ("GET", _, _) if path == "/" => "ListAllMyBuckets",
        ("PUT", "", true) => "CreateBucket",
        ("DELETE", "", true) => "DeleteBucket",
        ("HEAD" | "GET", "" | "list-type", true) => "ListBucket",
        ("GET", "versions", _) => "ListBucketVersions",
        ("GET", "location", _) => "GetBucketLocation",
        ("POST", "delete", _) => "DeleteObjectVersion",
        ("PUT", "tagging", _) | ("DELETE", "tagging", _) => "PutBucketTagging",
        ("GET", "tagging", _) => "GetBucketTagging",
        ("PUT", "publicAccessBlock", _) => "PutBucketPublicAccessBlock",
        ("GET", "publicAccessBlock", _) => "GetBucketPublicAccessBlock",
        ("PUT", "encryption", _) => "PutEncryptionConfiguration",
        ("GET", "encryption", _) => "GetEncryptionConfiguration",
        ("PUT", "versioning", _) => "PutBucketVersioning",
        ("GET", "versioning", _) => "GetBucketVersioning",
        ("PUT", "policy", _) => "PutBucketPolicy",
        ("GET", "policy", _) => "GetBucketPolicy",
        ("DELETE", "policy", _) => "DeleteBucketPolicy",
        ("PUT", "lifecycle", _) => "PutLifecycleConfiguration",
        ("GET", "lifecycle", _) => "GetLifecycleConfiguration",
        ("PUT", "", false) => "PutObject",
        ("DELETE", "" | "versionId", false) => "DeleteObjectVersion",
        _ => return Some(format!("s3:? {operation}")),
    };
    Some(format!("s3:{name}"))
}

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
async fn every_call_of_apply_plan_and_destroy_is_in_the_shipped_policy() -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let options = env.options();
    let mut used = BTreeSet::new();
    let stack = env.stack().await?;
    apply(&stack, &options).await?;
    let record = |env: &Env, used: &mut BTreeSet<String>| {
        for (service, operation) in env.faults.calls_by_service() {
            used.extend(action(&service, &operation));
        }
    };
    record(&env, &mut used);
    env.stack().await?.plan(&options).await?;
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
