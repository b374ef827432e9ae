//! The planner: compares what the blueprint asks for with what the state
//! recorded and the cloud reports, per resource and per attribute. Pure and
//! synchronous: the refresh that feeds it is the executor's job.
//!
//! [`diff`] compares properties, [`order`] sorts resources by their
//! dependencies, [`render`] writes the plan for a person.

mod diff;
mod order;
mod render;
mod saved;

pub use diff::{diff, resolve_props};
pub use order::topological;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloud::Observed;
use crate::model::{Kind, Props, Resource};
use crate::state::State;

/// Shown where a value depends on a resource not created yet.
pub const UNKNOWN: &str = "(known after apply)";

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Its address.
    pub address: String,
    /// Deleted outside provision.
    pub deleted: bool,
    /// Changed attributes: `before` as recorded, `after` as in the cloud.
    pub attrs: Vec<AttrChange>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// What apply needs besides the changes (not shown).
    #[serde(skip)]
    pub basis: Basis,
}

/// Everything apply needs besides the changes, so that it executes a plan
/// alone: the choices were made when planning.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Basis {
    /// The desired resource of every create, update, replacement and
    /// adoption, with its references to other resources' outputs.
    pub resources: BTreeMap<String, Resource>,
    /// What the refresh read, by address.
    pub refreshed: BTreeMap<String, Current>,
    /// The serial of the state the plan was made from.
    pub state_serial: u64,
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
}

/// What the refresh found for one address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    let adopted: Vec<String> = current
        .iter()
        .filter(|(_, c)| c.adopted)
        .map(|(a, _)| a.clone())
        .collect();
    let needed: BTreeSet<&str> = changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .map(|c| c.address.as_str())
        .chain(adopted.iter().map(String::as_str))
        .collect();
    let basis = Basis {
        resources: desired
            .iter()
            .filter(|r| needed.contains(r.address.as_str()))
            .map(|r| (r.address.clone(), r.clone()))
            .collect(),
        refreshed: current.clone(),
        state_serial: state.serial,
    };
    Plan {
        stack: state.stack.clone(),
        changes,
        drift: diff::drift(state, current),
        adopted,
        unchanged,
        basis,
    }
}
