//! Crash safety: `provision apply` is killed with SIGKILL at five different
//! points; the next apply converges, adopting what the killed run created
//! but had not recorded, with no resource made twice.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use provisioner::model::Kind;
use provisioner::state::State;
use support::{apply, Env};

/// Recorded resources in the state file, or 0 while it does not exist.
fn recorded(env: &Env) -> usize {
    std::fs::read(env.state_dir().join("ep-local.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<State>(&bytes).ok())
        .map(|s| s.resources.len())
        .unwrap_or(0)
}

/// Runs `provision apply` and SIGKILLs it once `at` resources are recorded.
/// Returns how many were recorded when it died.
fn apply_and_kill(env: &Env, at: usize) -> anyhow::Result<usize> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["apply", "--auto-approve", "--parallelism", "4", "-b"])
        .arg(&env.blueprint_path)
        .arg("--state-dir")
        .arg(env.state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if recorded(env) >= at {
            child.kill()?; // SIGKILL
            let status = child.wait()?;
            anyhow::ensure!(
                status.code().is_none(),
                "apply ended by itself before the kill: {status}"
            );
            return Ok(recorded(env));
        }
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
            }
            anyhow::bail!(
                "apply finished ({status}) before {at} resources were recorded: {stderr}"
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "apply never recorded {at} resources"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_five_points_then_apply_converges_without_duplicates() -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let total = env.stack().await?.desired.len();
    let mut died_at = Vec::new();
    // Each kill lands later in the walk: the state keeps growing between them.
    for at in [1, 6, 12, 20, 28] {
        let at = at.min(total - 1);
        let seen = apply_and_kill(&env, at.max(recorded(&env) + 1))?;
        died_at.push(seen);
    }
    println!("killed with {died_at:?} of {total} resources recorded");
    let distinct: std::collections::BTreeSet<_> = died_at.iter().collect();
    assert!(
        distinct.len() >= 5,
        "kills did not land at 5 different points: {died_at:?}"
    );

    let stack = env.stack().await?;
    let options = env.options();
    apply(&stack, &options).await?;
    let state = stack.state()?;
    assert_eq!(state.resources.len(), total);
    let again = env.stack().await?.plan(&options).await?;
    assert!(!again.has_changes(), "{}", again.render());

    // No duplicates: per kind, exactly as many tagged resources as the blueprint asks for.
    let mut want: BTreeMap<Kind, usize> = BTreeMap::new();
    for r in stack
        .desired
        .iter()
        .filter(|r| r.kind.implementation().tagged())
    {
        *want.entry(r.kind).or_default() += 1;
    }
    let mut have: BTreeMap<Kind, usize> = BTreeMap::new();
    for (kind, _) in stack.cloud.list_tagged().await? {
        *have.entry(kind).or_default() += 1;
    }
    assert_eq!(have, want);
    // Untagged ones: one default route and one association per subnet.
    let ec2 = aws_sdk_ec2::Client::new(&env.direct);
    let table = ec2
        .describe_route_tables()
        .route_table_ids(&state.resources["route_table.public"].id)
        .send()
        .await?;
    let table = &table.route_tables()[0];
    assert_eq!(
        table
            .routes()
            .iter()
            .filter(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .count(),
        1
    );
    assert_eq!(table.associations().len(), 2);
    Ok(())
}
