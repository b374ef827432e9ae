//! Applying a plan: deletes first (dependents before what they use), then
//! creates, updates and replacements in dependency order, each resource as
//! soon as everything it uses is done, at most `parallelism` at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use tokio::task::JoinSet;

use super::{retry, OperationError, Options, WalkError};
use crate::cloud::resource::Readiness;
use crate::cloud::support::Poll;
use crate::cloud::{Cloud, CloudError, Observed};
use crate::model::{Kind, Props, Resource};
use crate::plan::{diff, resolve_props, Action, Change, Plan, UNKNOWN};
use crate::state::{Recorded, StateFile};

/// What every step shares.
struct Ctx {
    cloud: Cloud,
    state: Mutex<StateFile>,
    options: Options,
}

impl Ctx {
    fn record(&self, address: &str, recorded: Option<Recorded>) -> Result<(), OperationError> {
        let mut file = self
            .state
            .lock()
            .map_err(|_| local_error(address, "state lock poisoned"))?;
        file.record(address, recorded)
            .map_err(|e| local_error(address, &e.to_string()))
    }

    fn output(&self, address: &str, output: &str) -> Option<Value> {
        self.state
            .lock()
            .ok()
            .and_then(|f| f.state.resources.get(address)?.outputs.get(output).cloned())
    }
}

pub(crate) fn local_error(address: &str, message: &str) -> OperationError {
    OperationError {
        address: address.to_string(),
        action: "record".into(),
        cause: CloudError::invalid("state", message),
        attempts: 1,
        advice: "Check the state folder is writable, then run the command again".into(),
    }
}

/// Applies `plan`, which holds everything needed: records adopted
/// resources, then runs every change. The state file is written after each
/// operation; its lock is released when this returns.
pub async fn apply_plan(
    cloud: &Cloud,
    plan: &Plan,
    state: StateFile,
    options: &Options,
) -> Result<(), WalkError> {
    let by_address: BTreeMap<&str, &Resource> = plan
        .basis
        .resources
        .iter()
        .map(|(address, r)| (address.as_str(), r))
        .collect();
    let current = &plan.basis.refreshed;
    let ctx = Arc::new(Ctx {
        cloud: walk_cloud(cloud, options),
        state: Mutex::new(state),
        options: options.clone(),
    });
    // Outputs as the refresh read them: a run killed between a create and
    // its read-back recorded none, and dependents resolve from the state.
    {
        let mut file = ctx
            .state
            .lock()
            .map_err(|_| WalkError(vec![local_error("(state)", "state lock poisoned")]))?;
        let mut stale = false;
        for (address, recorded) in file.state.resources.iter_mut() {
            if let Some(observed) = current.get(address).and_then(|c| c.observed.as_ref()) {
                if recorded.outputs != observed.outputs {
                    recorded.outputs = observed.outputs.clone();
                    stale = true;
                }
            }
        }
        if stale {
            file.write()
                .map_err(|e| WalkError(vec![local_error("(state)", &e.to_string())]))?;
        }
    }
    for address in &plan.adopted {
        let (Some(now), Some(resource)) = (current.get(address), by_address.get(address.as_str()))
        else {
            continue;
        };
        if let Some(observed) = &now.observed {
            ctx.record(address, Some(recorded(resource, &now.id, observed)))
                .map_err(|e| WalkError(vec![e]))?;
            options
                .progress
                .line(&format!("{address}: adopted ({})", now.id));
        }
    }
    let deletes: Vec<Doomed> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| (c.address.clone(), c.kind, c.id.clone().unwrap_or_default()))
        .collect();
    delete_walk(&ctx, deletes).await?;
    change_walk(&ctx, &by_address, plan).await
}

/// A resource to delete: address, kind, id.
pub(crate) type Doomed = (String, Kind, String);

/// Deletes `items` in destroy order: by kind rank, and every resource after
/// the ones that recorded a dependency on it.
pub(crate) async fn delete_all(
    cloud: &Cloud,
    state: StateFile,
    items: Vec<Doomed>,
    options: &Options,
) -> Result<(), WalkError> {
    let ctx = Arc::new(Ctx {
        cloud: walk_cloud(cloud, options),
        state: Mutex::new(state),
        options: options.clone(),
    });
    delete_walk(&ctx, items).await
}

/// The clients a walk calls through: waits inside operations poll within
/// the walk's timeout.
fn walk_cloud(cloud: &Cloud, options: &Options) -> Cloud {
    cloud.clone().polling(Poll::within(options.wait_timeout))
}

/// One step of a walk.
enum Step {
    Change(Resource, Change),
    Delete(Doomed),
}

async fn delete_walk(ctx: &Arc<Ctx>, doomed: Vec<Doomed>) -> Result<(), WalkError> {
    // What each recorded resource depends on, read once.
    let deps: BTreeMap<String, BTreeSet<String>> = match ctx.state.lock() {
        Ok(file) => file
            .state
            .resources
            .iter()
            .map(|(address, r)| (address.clone(), r.deps.clone()))
            .collect(),
        Err(_) => {
            return Err(WalkError(vec![local_error(
                "(state)",
                "state lock poisoned",
            )]))
        }
    };
    let mut steps = BTreeMap::new();
    for (address, kind, id) in &doomed {
        let after: BTreeSet<String> = doomed
            .iter()
            .filter(|(other, other_kind, _)| {
                deps.get(other).is_some_and(|d| d.contains(address))
                    || other_kind.implementation().destroy_rank()
                        < kind.implementation().destroy_rank()
            })
            .map(|(other, _, _)| other.clone())
            .collect();
        steps.insert(
            address.clone(),
            (after, Step::Delete((address.clone(), *kind, id.clone()))),
        );
    }
    run(ctx, steps).await
}

async fn change_walk(
    ctx: &Arc<Ctx>,
    desired: &BTreeMap<&str, &Resource>,
    plan: &Plan,
) -> Result<(), WalkError> {
    let changing: BTreeSet<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .map(|c| c.address.as_str())
        .collect();
    let mut steps = BTreeMap::new();
    for change in plan.changes.iter().filter(|c| c.action != Action::Delete) {
        let Some(resource) = desired.get(change.address.as_str()) else {
            continue;
        };
        let after: BTreeSet<String> = resource
            .deps
            .iter()
            .filter(|d| changing.contains(d.as_str()))
            .cloned()
            .collect();
        steps.insert(
            change.address.clone(),
            (after, Step::Change((*resource).clone(), change.clone())),
        );
    }
    run(ctx, steps).await
}

/// For each step, the number of steps in the longest chain that starts with
/// it (itself, then what waits on it, and so on).
fn chain_lengths(steps: &BTreeMap<String, (BTreeSet<String>, Step)>) -> BTreeMap<String, usize> {
    let mut waiting_on: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (address, (after, _)) in steps {
        for before in after {
            waiting_on.entry(before).or_default().push(address);
        }
    }
    fn length<'a>(
        address: &'a str,
        waiting_on: &BTreeMap<&'a str, Vec<&'a str>>,
        known: &mut BTreeMap<&'a str, usize>,
        visiting: &mut BTreeSet<&'a str>,
    ) -> usize {
        if let Some(n) = known.get(address) {
            return *n;
        }
        // A cycle (which `run` reports) counts as the end of the chain.
        if !visiting.insert(address) {
            return 0;
        }
        let next = waiting_on.get(address).map_or(0, |waiting| {
            waiting
                .iter()
                .map(|w| length(w, waiting_on, known, visiting))
                .max()
                .unwrap_or(0)
        });
        visiting.remove(address);
        known.insert(address, next + 1);
        next + 1
    }
    let mut known = BTreeMap::new();
    let mut visiting = BTreeSet::new();
    for address in steps.keys() {
        length(address, &waiting_on, &mut known, &mut visiting);
    }
    known.into_iter().map(|(a, n)| (a.to_string(), n)).collect()
}

/// Runs `steps` (each with the steps it must wait for), `parallelism` at a
/// time, the longest chains first. After a failure no new step starts; running ones finish.
async fn run(
    ctx: &Arc<Ctx>,
    mut pending: BTreeMap<String, (BTreeSet<String>, Step)>,
) -> Result<(), WalkError> {
    let chain = chain_lengths(&pending);
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut running = JoinSet::new();
    let mut errors = Vec::new();
    loop {
        if errors.is_empty() {
            let mut ready: Vec<String> = pending
                .iter()
                .filter(|(_, (after, _))| after.iter().all(|a| done.contains(a)))
                .map(|(a, _)| a.clone())
                .collect();
            // Longest chain first: with more ready than may run, what the
            // most steps wait on starts first, so the walk ends with the
            // longest chain rather than after it.
            ready.sort_by_key(|a| std::cmp::Reverse(chain.get(a).copied().unwrap_or(0)));
            for address in ready {
                if running.len() >= ctx.options.parallelism.max(1) {
                    break;
                }
                if let Some((_, step)) = pending.remove(&address) {
                    let ctx = ctx.clone();
                    running.spawn(async move { (address, execute(&ctx, step).await) });
                }
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok((address, Ok(()))) => {
                done.insert(address);
            }
            Ok((_, Err(e))) => errors.push(e),
            Err(e) => errors.push(OperationError {
                address: "(walk)".into(),
                action: "run".into(),
                cause: CloudError::invalid("task", e.to_string()),
                attempts: 1,
                advice: "This is a bug in provision; run the command again".into(),
            }),
        }
    }
    if errors.is_empty() && !pending.is_empty() {
        // Only possible with a dependency cycle; name what could not start.
        errors.extend(pending.keys().map(|address| OperationError {
            address: address.clone(),
            action: "schedule".into(),
            cause: CloudError::invalid("graph", "waits on a resource that never completed"),
            attempts: 1,
            advice: "This is a bug in provision's resource graph".into(),
        }));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(WalkError(errors))
    }
}

async fn execute(ctx: &Ctx, step: Step) -> Result<(), OperationError> {
    let started = Instant::now();
    let progress = &ctx.options.progress;
    match step {
        Step::Delete((address, kind, id)) => {
            progress.line(&format!("{address}: deleting ({id})"));
            delete(ctx, &address, kind, &id).await?;
            ctx.record(&address, None)?;
            progress.line(&format!("{address}: deleted in {}", elapsed(started)));
        }
        Step::Change(resource, change) => {
            let address = resource.address.as_str();
            let lookup = |a: &str, o: &str| ctx.output(a, o);
            let props = resolve_props(&resource.props, &lookup);
            if let Some((name, _)) = props.iter().find(|(_, v)| v.as_str() == Some(UNKNOWN)) {
                return Err(local_error(
                    address,
                    &format!("`{name}` references a resource that has no output yet"),
                ));
            }
            let id = match change.action {
                Action::Update => {
                    let id = change.id.clone().unwrap_or_default();
                    let changed: Vec<String> =
                        change.attrs.iter().map(|a| a.name.clone()).collect();
                    progress.line(&format!("{address}: updating {}", changed.join(", ")));
                    retry(&ctx.options.retry, address, "update", || {
                        ctx.cloud.update(resource.kind, &id, &props, &changed)
                    })
                    .await?;
                    id
                }
                Action::Replace | Action::Create => {
                    if let (Action::Replace, Some(old)) = (change.action, &change.id) {
                        progress.line(&format!("{address}: replacing ({old})"));
                        delete(ctx, address, resource.kind, old).await?;
                        ctx.record(address, None)?;
                    } else {
                        progress.line(&format!("{address}: creating"));
                    }
                    create(ctx, &resource, &props).await?
                }
                Action::Delete => return Ok(()),
            };
            // Read after write: the outputs others reference, and what to record.
            let observed = retry(&ctx.options.retry, address, "read after write", || async {
                match ctx.cloud.read(resource.kind, &id).await? {
                    Some(o) => Ok(o),
                    None => Err(CloudError {
                        operation: "Describe".into(),
                        code: "Resource.NotFound".into(),
                        message: format!("{id} not visible yet"),
                    }),
                }
            })
            .await?;
            ctx.record(address, Some(recorded(&resource, &id, &observed)))?;
            if ctx.options.waits {
                wait_ready(ctx, &resource, &id, &observed).await?;
            }
            let verb = match change.action {
                Action::Update => "updated",
                Action::Replace => "replaced",
                _ => "created",
            };
            progress.line(&format!("{address}: {verb} in {} ({id})", elapsed(started)));
        }
    }
    Ok(())
}

fn recorded(resource: &Resource, id: &str, observed: &Observed) -> Recorded {
    Recorded {
        kind: resource.kind,
        id: id.to_string(),
        props: observed.props.clone(),
        outputs: observed.outputs.clone(),
        deps: resource.deps.clone(),
    }
}

/// Creates a resource and records it at once. A create that failed in
/// transit may still have happened: before each retry, look for it by tags.
async fn create(ctx: &Ctx, resource: &Resource, props: &Props) -> Result<String, OperationError> {
    let address = resource.address.as_str();
    let mut first = true;
    let id = retry(&ctx.options.retry, address, "create", || {
        let retrying = !std::mem::replace(&mut first, false);
        async move {
            if retrying {
                if let Some(id) = ctx.cloud.find(resource.kind, address, props).await? {
                    complete(&ctx.cloud, resource.kind, &id, props).await?;
                    return Ok(id);
                }
            }
            ctx.cloud.create(resource.kind, address, props).await
        }
    })
    .await?;
    ctx.record(
        address,
        Some(Recorded {
            kind: resource.kind,
            id: id.clone(),
            props: props.clone(),
            outputs: Default::default(),
            deps: resource.deps.clone(),
        }),
    )?;
    Ok(id)
}

/// Finishes a resource that a create made but did not configure whole (it
/// failed after its first call, and the retry found it by its tags): every
/// attribute that differs from `props` is set now.
async fn complete(cloud: &Cloud, kind: Kind, id: &str, props: &Props) -> crate::cloud::Result<()> {
    let Some(observed) = cloud.read(kind, id).await? else {
        // Not visible yet: the read after write waits for it.
        return Ok(());
    };
    let missing: Vec<String> = diff(kind, &observed.props, props)
        .into_iter()
        .map(|attr| attr.name)
        .collect();
    if !missing.is_empty() {
        tracing::info!(id, ?missing, "completing a resource found half-made");
        cloud.update(kind, id, props, &missing).await?;
    }
    Ok(())
}

/// Deletes with retries; a security group still in use names the network
/// interfaces that hold it, while retrying and in the final error.
async fn delete(ctx: &Ctx, address: &str, kind: Kind, id: &str) -> Result<(), OperationError> {
    let holders: Mutex<Vec<String>> = Mutex::default();
    let result = retry(&ctx.options.retry, address, "delete", || async {
        let result = ctx.cloud.delete(kind, id).await;
        if let Err(e) = &result {
            if e.code == "DependencyViolation" {
                let found = kind
                    .implementation()
                    .users(&ctx.cloud, id)
                    .await
                    .unwrap_or_default();
                if !found.is_empty() {
                    ctx.options.progress.line(&format!(
                        "{address}: still in use by {}; retrying",
                        found.join(", ")
                    ));
                }
                if let Ok(mut holders) = holders.lock() {
                    *holders = found;
                }
            }
        }
        result
    })
    .await;
    let holders = holders.into_inner().unwrap_or_default();
    result.map_err(|mut e| {
        if e.cause.code == "DependencyViolation" && !holders.is_empty() {
            e.advice = format!(
                "It is still used by network interface(s) {}: they belong to tasks, load balancers or instances that are still shutting down; wait for them or delete them, then run the command again",
                holders.join(", ")
            );
        }
        e
    })
}

/// Waits until a resource serves (an instance running, a load balancer
/// active, an ECS service stable with healthy targets), by its kind's probe.
async fn wait_ready(
    ctx: &Ctx,
    resource: &Resource,
    id: &str,
    observed: &Observed,
) -> Result<(), OperationError> {
    let address = resource.address.as_str();
    let kind = resource.kind.implementation();
    let Some(Readiness {
        what,
        advice,
        ready,
    }) = kind.readiness(id)
    else {
        return Ok(());
    };
    let poll = ctx.cloud.poll;
    let deadline = Instant::now() + poll.timeout;
    ctx.options
        .progress
        .line(&format!("{address}: waiting until {what}"));
    loop {
        let probe = retry(&ctx.options.retry, address, "wait", || {
            kind.probe(&ctx.cloud, id, observed)
        })
        .await?;
        if probe.ready {
            if let Some(ready) = ready {
                ctx.options.progress.line(&format!("{address}: {ready}"));
            }
            return Ok(());
        }
        let message = if probe.failed {
            format!("not {what}: {}", probe.status)
        } else if Instant::now() >= deadline {
            format!(
                "not {what} after {}s: {}",
                poll.timeout.as_secs(),
                probe.status
            )
        } else {
            tokio::time::sleep(poll.interval).await;
            continue;
        };
        return Err(OperationError {
            address: address.to_string(),
            action: format!("waiting until {what}"),
            cause: CloudError::invalid("wait", message),
            attempts: 1,
            advice,
        });
    }
}

fn elapsed(started: Instant) -> String {
    format!("{:.1}s", started.elapsed().as_secs_f64())
}
