//! The full stack against moto: apply and destroy wall time and API calls,
//! the reads of a no-change plan, and apply under an injected per-call
//! latency compared with the longest dependency chain.
//!
//! `EVENT_PLATFORM_MOTO_SERVER=.venv/bin/moto_server cargo bench -p provisioner --bench stack --profile dev`
//! (`-- --delay-ms 100` sets the injected latency.)

// The stack tests' setup: moto, the local blueprint, the counting fault layer.
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use provisioner::model::Resource;
use provisioner::plan::topological;
use support::{is_mutating, Env};
use test_support::fault::{Fault, FaultLayer};

fn counts(faults: &FaultLayer) -> (usize, usize) {
    let calls = faults.calls();
    if std::env::var_os("STACK_BENCH_CALLS").is_some() {
        let mut by_operation: BTreeMap<&str, usize> = BTreeMap::new();
        for call in &calls {
            *by_operation.entry(call.as_str()).or_default() += 1;
        }
        eprintln!("calls by operation: {by_operation:?}");
    }
    let mutating = calls.iter().filter(|c| is_mutating(c)).count();
    faults.clear_calls();
    (calls.len(), mutating)
}

/// Seconds each resource took, from the progress lines ("X: created in 1.2s (id)").
fn durations(lines: &[String]) -> BTreeMap<String, f64> {
    lines
        .iter()
        .filter_map(|l| {
            let (address, rest) = l.split_once(": created in ")?;
            let secs = rest.split('s').next()?.parse().ok()?;
            Some((address.to_string(), secs))
        })
        .collect()
}

/// The longest chain of dependent resources, by their own durations.
fn critical_path(desired: &[Resource], took: &BTreeMap<String, f64>) -> f64 {
    let mut finish: BTreeMap<&str, f64> = BTreeMap::new();
    for r in topological(desired) {
        let start = r
            .deps
            .iter()
            .filter_map(|d| finish.get(d.as_str()))
            .fold(0.0_f64, |a, b| a.max(*b));
        finish.insert(
            &r.address,
            start + took.get(&r.address).copied().unwrap_or(0.0),
        );
    }
    finish.values().fold(0.0_f64, |a, b| a.max(*b))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let delay_ms: u64 = args
        .iter()
        .position(|a| a == "--delay-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);

    let mut env = Env::start(&[]).await?;
    let stack = env.stack().await?;
    let options = env.options();
    let n = stack.desired.len();
    let started = Instant::now();
    stack.apply(&options, |_| true).await?;
    let apply = started.elapsed();
    let (apply_calls, apply_mutating) = counts(&env.faults);
    let started = Instant::now();
    let plan = stack.plan(&options).await?;
    let plan_time = started.elapsed();
    anyhow::ensure!(!plan.has_changes(), "second plan has changes");
    let (plan_calls, plan_mutating) = counts(&env.faults);
    let started = Instant::now();
    let report = stack.destroy(&options, |_| true).await?;
    let destroy = started.elapsed();
    let (destroy_calls, destroy_mutating) = counts(&env.faults);
    anyhow::ensure!(
        report.is_some_and(|r| r.leftovers.is_empty()),
        "destroy left resources"
    );
    println!("resources: {n}");
    println!(
        "apply from nothing: {:.2} s, {apply_calls} calls ({apply_mutating} mutating)",
        apply.as_secs_f64()
    );
    println!(
        "no-change plan: {:.2} s, {plan_calls} calls ({plan_mutating} mutating), {:.2} reads per resource",
        plan_time.as_secs_f64(),
        plan_calls as f64 / n as f64
    );
    println!(
        "destroy: {:.2} s, {destroy_calls} calls ({destroy_mutating} mutating)",
        destroy.as_secs_f64()
    );

    for parallelism in [8, 32] {
        let mut env = Env::start(&[]).await?;
        let stack = env.stack().await?;
        env.faults
            .inject("*", Fault::Delay(Duration::from_millis(delay_ms)), u32::MAX);
        let mut options = env.options();
        options.parallelism = parallelism;
        // A fresh moto initializes each service on its first call (EC2 its
        // images and instance types, 1.2 s; IAM every managed policy, 0.6 s):
        // emulator time, not ours, so a plan warms it up before the timed apply.
        stack.plan(&options).await?;
        let started = Instant::now();
        stack.apply(&options, |_| true).await?;
        let wall = started.elapsed().as_secs_f64();
        let lines = env.lines.lock().map(|l| l.clone()).unwrap_or_default();
        let chain = critical_path(&stack.desired, &durations(&lines));
        println!(
            "apply with {delay_ms} ms per call, parallelism {parallelism}: {wall:.2} s; longest dependency chain {chain:.2} s; ratio {:.2}",
            wall / chain
        );
    }
    Ok(())
}
