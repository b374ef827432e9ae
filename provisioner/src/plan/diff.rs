//! Comparing properties: desired against observed (the changes), recorded
//! against observed (the drift).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{AttrChange, Current, Drift, UNKNOWN};
use crate::model::{resolve, Kind, Props};
use crate::state::State;

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

pub(super) fn drift(state: &State, current: &BTreeMap<String, Current>) -> Vec<Drift> {
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
