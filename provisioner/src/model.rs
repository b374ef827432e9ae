//! The resource model shared by the planner and the executor: what kinds of
//! resources a stack has, their stable addresses, and their properties as
//! plain JSON so that planning is a pure comparison of maps.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A resource's properties (desired, recorded or observed), by attribute name.
/// Desired properties may hold references `${ADDRESS.OUTPUT}` to another
/// resource's outputs, resolved just before the resource is created.
pub type Props = BTreeMap<String, Value>;

pub use crate::cloud::registry::Kind;

/// Tag key naming the stack a resource belongs to.
pub const STACK_TAG: &str = "event-platform:stack";
/// Tag key holding the resource's address in its stack.
pub const ADDRESS_TAG: &str = "event-platform:address";
/// Tag the broker instance writes on itself when its setup ends: `ready`,
/// or `failed: STEP`. Not part of the desired tags (plans ignore it).
pub const BROKER_SETUP_TAG: &str = "event-platform:broker-setup";

/// One resource the blueprint asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Stable address, `KIND.NAME`.
    pub address: String,
    /// Its kind.
    pub kind: Kind,
    /// Desired properties (may reference other resources' outputs).
    pub props: Props,
    /// Addresses it depends on: every reference, plus ordering-only edges.
    pub deps: BTreeSet<String>,
}

impl Resource {
    /// A resource of `kind` named `name`; dependencies are every address
    /// referenced in `props` plus `extra_deps`.
    pub fn new(kind: Kind, name: &str, props: Props, extra_deps: &[String]) -> Self {
        let mut deps: BTreeSet<String> = extra_deps.iter().cloned().collect();
        for (address, _) in props.values().flat_map(references) {
            deps.insert(address);
        }
        Self {
            address: format!("{}.{name}", kind.prefix()),
            kind,
            props,
            deps,
        }
    }
}

/// A reference `${ADDRESS.OUTPUT}` to `output` of the resource at `address`.
pub fn reference(address: &str, output: &str) -> String {
    format!("${{{address}.{output}}}")
}

/// Every `(address, output)` referenced anywhere inside `value`.
pub fn references(value: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    collect_references(value, &mut found);
    found
}

fn collect_references(value: &Value, found: &mut Vec<(String, String)>) {
    match value {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                let inner = &after[..end];
                // ADDRESS is KIND.NAME; the output follows the last dot.
                if let Some((address, output)) = inner.rsplit_once('.') {
                    found.push((address.to_string(), output.to_string()));
                }
                rest = &after[end + 1..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect_references(v, found)),
        _ => {}
    }
}

/// Replaces every reference in `value` with the output it names, looked up
/// through `lookup`; `None` when some output is not known yet.
pub fn resolve(value: &Value, lookup: &dyn Fn(&str, &str) -> Option<Value>) -> Option<Value> {
    match value {
        Value::String(text) if text.contains("${") => {
            let refs = references(value);
            // A string that is exactly one reference takes the output's own type.
            if let [(address, output)] = refs.as_slice() {
                if *text == reference(address, output) {
                    return lookup(address, output);
                }
            }
            let mut out = text.clone();
            for (address, output) in refs {
                let resolved = lookup(&address, &output)?;
                let text = match resolved {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out = out.replace(&reference(&address, &output), &text);
            }
            Some(Value::String(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|v| resolve(v, lookup))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| resolve(v, lookup).map(|v| (k.clone(), v)))
            .collect::<Option<serde_json::Map<_, _>>>()
            .map(Value::Object),
        other => Some(other.clone()),
    }
}

/// The tags every resource of `stack` at `address` carries, with the
/// blueprint's own tags.
pub fn stack_tags(stack: &str, address: &str, extra: &BTreeMap<String, String>) -> Value {
    let mut tags: serde_json::Map<String, Value> = extra
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    tags.insert(STACK_TAG.into(), Value::String(stack.into()));
    tags.insert(ADDRESS_TAG.into(), Value::String(address.into()));
    Value::Object(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_found_in_nested_values_and_embedded_strings() {
        let value =
            json!({"a": "${vpc.main.id}", "b": ["x", {"c": "arn:${s3_bucket.raw.arn}/raw/*"}]});
        let mut refs = references(&value);
        refs.sort();
        assert_eq!(
            refs,
            vec![
                ("s3_bucket.raw".to_string(), "arn".to_string()),
                ("vpc.main".to_string(), "id".to_string())
            ]
        );
    }

    #[test]
    fn resolve_keeps_output_types_and_stops_at_unknowns() {
        let lookup = |address: &str, output: &str| match (address, output) {
            ("instance.broker", "port") => Some(json!(9092)),
            ("s3_bucket.raw", "arn") => Some(json!("arn:aws:s3:::b")),
            _ => None,
        };
        assert_eq!(
            resolve(&json!("${instance.broker.port}"), &lookup),
            Some(json!(9092))
        );
        assert_eq!(
            resolve(&json!(["${s3_bucket.raw.arn}/raw/*"]), &lookup),
            Some(json!(["arn:aws:s3:::b/raw/*"]))
        );
        assert_eq!(resolve(&json!({"v": "${vpc.main.id}"}), &lookup), None);
    }
}
