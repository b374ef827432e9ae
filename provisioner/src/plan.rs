//! The planner: compares what the blueprint asks for with what the state
//! recorded and the cloud reports, per resource and per attribute. Pure and
//! synchronous: the refresh that feeds it is the executor's job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::cloud::Observed;
use crate::model::{resolve, Kind, Props, Resource};
use crate::state::State;

/// Shown where a value depends on a resource not created yet.
pub const UNKNOWN: &str = "(known after apply)";

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Made from nothing.
    Create,
    /// Changed in place.
    Update,
    /// Deleted and made again (an attribute that cannot change in place).
    Replace,
    /// Deleted (no longer in the blueprint).
    Delete,
}

impl Action {
    /// How a plan names it.
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update in place",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }
}

/// One attribute's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttrChange {
    /// Attribute name.
    pub name: String,
    /// Current value (`null` when creating).
    pub before: Value,
    /// Wanted value ([`UNKNOWN`] when it depends on a resource not made yet).
    pub after: Value,
    /// This attribute alone forces a replacement.
    pub forces_replacement: bool,
}

/// One resource's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Its address.
    pub address: String,
    /// Its kind.
    pub kind: Kind,
    /// What happens.
    pub action: Action,
    /// Its id in the cloud, when it exists.
    pub id: Option<String>,
    /// Changed attributes.
    pub attrs: Vec<AttrChange>,
}

/// A difference between the state and the cloud that provision did not make.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// Its address.
    pub address: String,
    /// Deleted outside provision.
    pub deleted: bool,
    /// Changed attributes: `before` as recorded, `after` as in the cloud.
    pub attrs: Vec<AttrChange>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The stack.
    pub stack: String,
    /// Changes in dependency order (deletes last).
    pub changes: Vec<Change>,
    /// Drift found by the refresh.
    pub drift: Vec<Drift>,
    /// Resources found in the cloud by their tags but missing from the state
    /// (a run that stopped early); they are adopted, not made again.
    pub adopted: Vec<String>,
    /// Resources that need nothing.
    pub unchanged: usize,
}

impl Plan {
    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// How many changes of `action`.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// The changes that would delete a data resource (the table, the
    /// bucket, the broker) and everything in it: `ADDRESS (replace|delete)`.
    pub fn data_loss(&self) -> Vec<String> {
        self.changes
            .iter()
            .filter(|c| matches!(c.action, Action::Replace | Action::Delete))
            .filter(|c| {
                let before: Props = c
                    .attrs
                    .iter()
                    .map(|a| (a.name.clone(), a.before.clone()))
                    .collect();
                c.kind.implementation().holds_data(&before)
            })
            .map(|c| format!("{} ({})", c.address, c.action.word()))
            .collect()
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        if !self.has_changes() {
            return format!("No changes. {} resources are up to date.", self.unchanged);
        }
        format!(
            "Plan: {} to create, {} to update in place, {} to replace, {} to delete.",
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Replace),
            self.count(Action::Delete)
        )
    }

    /// The plan as a person reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.adopted.is_empty() {
            let _ = writeln!(out, "Adopted (created by an earlier run, now recorded):");
            for address in &self.adopted {
                let _ = writeln!(out, "  {address}");
            }
            out.push('\n');
        }
        if !self.drift.is_empty() {
            let _ = writeln!(out, "Drift (changed outside provision):");
            for drift in &self.drift {
                if drift.deleted {
                    let _ = writeln!(out, "  {}: deleted", drift.address);
                    continue;
                }
                let _ = writeln!(out, "  {}", drift.address);
                for attr in &drift.attrs {
                    let _ = writeln!(
                        out,
                        "      {}: {} (recorded) -> {} (in the cloud)",
                        attr.name,
                        show(&attr.before),
                        show(&attr.after)
                    );
                }
            }
            out.push('\n');
        }
        for change in &self.changes {
            let sign = match change.action {
                Action::Create => "+",
                Action::Update => "~",
                Action::Replace => "-/+",
                Action::Delete => "-",
            };
            let _ = writeln!(out, "{sign} {} ({})", change.address, change.action.word());
            for attr in &change.attrs {
                let note = if attr.forces_replacement {
                    " (forces replacement)"
                } else {
                    ""
                };
                match change.action {
                    Action::Create => {
                        let _ = writeln!(out, "      {}: {}", attr.name, show(&attr.after));
                    }
                    Action::Delete => {}
                    _ => {
                        let _ = writeln!(
                            out,
                            "      {}: {} -> {}{note}",
                            attr.name,
                            show(&attr.before),
                            show(&attr.after)
                        );
                    }
                }
            }
        }
        if self.has_changes() {
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        let losing = self.data_loss();
        if !losing.is_empty() {
            let _ = writeln!(
                out,
                "Data loss: {} would delete everything in it; apply refuses this without --allow-data-loss.",
                losing.join(", ")
            );
        }
        out
    }
}

/// Renders a value on one line; long multi-line text is summarised.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) if s == UNKNOWN => s.clone(),
        Value::String(s) if s.contains('\n') => {
            format!("<{} lines, {} bytes>", s.lines().count(), s.len())
        }
        other => other.to_string(),
    }
}

/// What the refresh found for one address.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// The cloud's id.
    pub id: String,
    /// The resource as read now; `None` when it is gone.
    pub observed: Option<Observed>,
    /// Found by tags, not recorded in the state.
    pub adopted: bool,
}

/// Plans the changes that make the cloud match `desired`. `current` holds
/// the refresh: every recorded address and every adopted one.
pub fn plan(desired: &[Resource], state: &State, current: &BTreeMap<String, Current>) -> Plan {
    let wanted: BTreeSet<&str> = desired.iter().map(|r| r.address.as_str()).collect();
    let mut changes = Vec::new();
    let mut unchanged = 0;
    // Addresses whose outputs will change (created or replaced).
    let mut renewed: BTreeSet<String> = BTreeSet::new();
    for resource in topological(desired) {
        let now = current.get(&resource.address);
        let observed = now.and_then(|c| c.observed.as_ref());
        let lookup = |address: &str, output: &str| -> Option<Value> {
            if renewed.contains(address) {
                return None;
            }
            current
                .get(address)
                .and_then(|c| c.observed.as_ref())
                .and_then(|o| o.outputs.get(output).cloned())
                .or_else(|| {
                    state
                        .resources
                        .get(address)
                        .and_then(|r| r.outputs.get(output).cloned())
                })
        };
        let resolved = resolve_props(&resource.props, &lookup);
        let Some(observed) = observed else {
            renewed.insert(resource.address.clone());
            changes.push(Change {
                address: resource.address.clone(),
                kind: resource.kind,
                action: Action::Create,
                id: None,
                attrs: resolved
                    .into_iter()
                    .map(|(name, after)| AttrChange {
                        name,
                        before: Value::Null,
                        after,
                        forces_replacement: false,
                    })
                    .collect(),
            });
            continue;
        };
        let attrs = diff(resource.kind, &observed.props, &resolved);
        if attrs.is_empty() {
            unchanged += 1;
            continue;
        }
        let action = if attrs.iter().any(|a| a.forces_replacement) {
            renewed.insert(resource.address.clone());
            Action::Replace
        } else {
            Action::Update
        };
        changes.push(Change {
            address: resource.address.clone(),
            kind: resource.kind,
            action,
            id: now.map(|c| c.id.clone()),
            attrs,
        });
    }
    for (address, recorded) in &state.resources {
        if !wanted.contains(address.as_str()) {
            let gone = current.get(address).is_some_and(|c| c.observed.is_none());
            if !gone {
                changes.push(Change {
                    address: address.clone(),
                    kind: recorded.kind,
                    action: Action::Delete,
                    id: Some(recorded.id.clone()),
                    attrs: Vec::new(),
                });
            }
        }
    }
    Plan {
        stack: state.stack.clone(),
        changes,
        drift: drift(state, current),
        adopted: current
            .iter()
            .filter(|(_, c)| c.adopted)
            .map(|(a, _)| a.clone())
            .collect(),
        unchanged,
    }
}

/// Desired props with every reference resolved, or [`UNKNOWN`] per attribute.
pub fn resolve_props(props: &Props, lookup: &dyn Fn(&str, &str) -> Option<Value>) -> Props {
    props
        .iter()
        .map(|(name, value)| {
            let value = resolve(value, lookup).unwrap_or_else(|| Value::String(UNKNOWN.into()));
            (name.clone(), value)
        })
        .collect()
}

/// Whether two property values are equal. Every list among a resource's
/// properties is a set (ids, security group rules, policies, path patterns),
/// so the order a read returns does not count.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            let mut unmatched: Vec<&Value> = y.iter().collect();
            x.iter().all(
                |item| match unmatched.iter().position(|other| same(item, other)) {
                    Some(i) => {
                        unmatched.swap_remove(i);
                        true
                    }
                    None => false,
                },
            )
        }
        _ => a == b,
    }
}

/// The attributes of `desired` that `observed` has otherwise (lists as sets).
pub fn diff(kind: Kind, observed: &Props, desired: &Props) -> Vec<AttrChange> {
    desired
        .iter()
        .filter_map(|(name, want)| {
            let have = observed.get(name).cloned().unwrap_or(Value::Null);
            (!same(&have, want)).then(|| AttrChange {
                name: name.clone(),
                before: have,
                after: want.clone(),
                forces_replacement: !kind.implementation().updatable().contains(&name.as_str()),
            })
        })
        .collect()
}

fn drift(state: &State, current: &BTreeMap<String, Current>) -> Vec<Drift> {
    let mut out = Vec::new();
    for (address, recorded) in &state.resources {
        let Some(now) = current.get(address) else {
            continue;
        };
        match &now.observed {
            None => out.push(Drift {
                address: address.clone(),
                deleted: true,
                attrs: Vec::new(),
            }),
            Some(observed) => {
                let attrs: Vec<AttrChange> = recorded
                    .props
                    .iter()
                    .filter_map(|(name, was)| {
                        let is = observed.props.get(name).cloned().unwrap_or(Value::Null);
                        (!same(&is, was)).then(|| AttrChange {
                            name: name.clone(),
                            before: was.clone(),
                            after: is,
                            forces_replacement: false,
                        })
                    })
                    .collect();
                if !attrs.is_empty() {
                    out.push(Drift {
                        address: address.clone(),
                        deleted: false,
                        attrs,
                    });
                }
            }
        }
    }
    out
}

/// `resources` so that each comes after everything it depends on (ties in
/// the given order). Dependencies outside the list are ignored.
pub fn topological(resources: &[Resource]) -> Vec<&Resource> {
    let index: BTreeMap<&str, usize> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.address.as_str(), i))
        .collect();
    let mut done = vec![false; resources.len()];
    let mut out = Vec::with_capacity(resources.len());
    fn visit<'a>(
        i: usize,
        resources: &'a [Resource],
        index: &BTreeMap<&str, usize>,
        done: &mut Vec<bool>,
        out: &mut Vec<&'a Resource>,
        depth: usize,
    ) {
        if done[i] || depth > resources.len() {
            return;
        }
        done[i] = true;
        for dep in &resources[i].deps {
            if let Some(&j) = index.get(dep.as_str()) {
                visit(j, resources, index, done, out, depth + 1);
            }
        }
        out.push(&resources[i]);
    }
    for i in 0..resources.len() {
        visit(i, resources, &index, &mut done, &mut out, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::same;
    use serde_json::json;

    #[test]
    fn lists_compare_as_sets_and_everything_else_exactly() {
        assert!(same(&json!(["b", "a"]), &json!(["a", "b"])));
        assert!(same(
            &json!([{"p": 1}, {"p": 2}]),
            &json!([{"p": 2}, {"p": 1}])
        ));
        assert!(!same(&json!(["a", "a"]), &json!(["a", "b"])));
        assert!(!same(&json!(["a"]), &json!(["a", "b"])));
        assert!(!same(&json!({"k": 1}), &json!({"k": 2})));
    }
}
