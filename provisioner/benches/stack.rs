//! The full stack against moto: apply and destroy wall time and API calls,
//! the reads of a no-change plan, and apply under an injected per-call
//! latency compared with the longest dependency chain.
//!
//! `EVENT_PLATFORM_MOTO_SERVER=.venv/bin/moto_server cargo bench -p provisioner --bench stack`
//! (`-- --delay-ms 100` sets the injected latency.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_store::aws::{sdk_config, AwsSettings};
use integration_tests::backend::AwsEmulator;
use integration_tests::fault::{Fault, FaultLayer};
use provisioner::blueprint::Blueprint;
use provisioner::engine::{Options, Progress};
use provisioner::model::Resource;
use provisioner::plan::topological;
use provisioner::stack::Stack;

fn is_mutating(operation: &str) -> bool {
    !["Describe", "Get", "List", "Head", "GET ", "HEAD "]
        .iter()
        .any(|p| operation.starts_with(p))
}

struct Run {
    stack: Stack,
    faults: FaultLayer,
    lines: Arc<Mutex<Vec<String>>>,
    options: Options,
}

async fn run(delay: Option<Duration>) -> anyhow::Result<(AwsEmulator, tempfile::TempDir, Run)> {
    let emulator = AwsEmulator::start().await?;
    let direct = sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let (config, faults) = FaultLayer::wrap(&direct);
    if let Some(delay) = delay {
        faults.inject("*", Fault::Delay(delay), u32::MAX);
    }
    let dir = tempfile::tempdir()?;
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/local.toml"),
    )?
    .replace("http://127.0.0.1:5000", emulator.endpoint());
    let blueprint = Blueprint::parse(Path::new("local.toml"), text)?;
    let stack = Stack::new(blueprint, dir.path(), &config);
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let t0 = Instant::now();
    let mut options = Options::new(false);
    options.progress = Progress::to(move |line| {
        if let Ok(mut l) = sink.lock() {
            l.push(format!("{:.2} {line}", t0.elapsed().as_secs_f64()));
        }
    });
    Ok((
        emulator,
        dir,
        Run {
            stack,
            faults,
            lines,
            options,
        },
    ))
}

fn counts(faults: &FaultLayer) -> (usize, usize) {
    let calls = faults.calls();
    let mutating = calls.iter().filter(|c| is_mutating(c)).count();
    faults.clear_calls();
    (calls.len(), mutating)
}

/// Seconds each resource took, from the progress lines ("X: created in 1.2s (id)").
fn durations(lines: &[String]) -> BTreeMap<String, f64> {
    lines
        .iter()
        .filter_map(|l| {
            let (_, l) = l.split_once(' ')?;
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

    let (_moto, _dir, r) = run(None).await?;
    let n = r.stack.desired.len();
    let started = Instant::now();
    r.stack.apply(&r.options, |_| true).await?;
    let apply = started.elapsed();
    let (apply_calls, apply_mutating) = counts(&r.faults);
    let started = Instant::now();
    let plan = r.stack.plan(&r.options).await?;
    let plan_time = started.elapsed();
    anyhow::ensure!(!plan.has_changes(), "second plan has changes");
    let (plan_calls, plan_mutating) = counts(&r.faults);
    let started = Instant::now();
    let report = r.stack.destroy(&r.options, |_| true).await?;
    let destroy = started.elapsed();
    let (destroy_calls, destroy_mutating) = counts(&r.faults);
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
        let (_moto, _dir, mut r) = run(Some(Duration::from_millis(delay_ms))).await?;
        r.options.parallelism = parallelism;
        let started = Instant::now();
        r.stack.apply(&r.options, |_| true).await?;
        let wall = started.elapsed().as_secs_f64();
        let lines = r.lines.lock().map(|l| l.clone()).unwrap_or_default();
        let took = durations(&lines);
        let chain = critical_path(&r.stack.desired, &took);
        if std::env::var_os("BENCH_TIMELINE").is_some() {
            lines.iter().for_each(|l| println!("  {l}"));
        }
        println!(
            "apply with {delay_ms} ms per call, parallelism {parallelism}: {wall:.2} s; longest dependency chain {chain:.2} s; ratio {:.2}",
            wall / chain
        );
    }
    Ok(())
}
