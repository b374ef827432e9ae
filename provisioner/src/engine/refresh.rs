//! The refresh: reads every recorded resource from the cloud, and looks for
//! resources of the blueprint that the state does not know (a run killed
//! between a create and its record) by their tags, so they are adopted.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::{retry, OperationError, Options};
use crate::cloud::Cloud;
use crate::model::{Kind, Resource};
use crate::plan::{resolve_props, Current, UNKNOWN};
use crate::state::State;

/// Refreshes `state` against the cloud, and looks for every resource of
/// `desired` that it does not record by its tags: one a killed run created
/// but did not record, or a whole stack whose state folder was lost.
pub async fn refresh(
    cloud: &Cloud,
    desired: &[Resource],
    state: &State,
    options: &Options,
) -> Result<BTreeMap<String, Current>, OperationError> {
    // One read per kind: kinds whose API describes many at once make one
    // call where they would make one per resource.
    let mut by_kind: BTreeMap<Kind, Vec<(&String, &String)>> = BTreeMap::new();
    for (address, recorded) in &state.resources {
        by_kind
            .entry(recorded.kind)
            .or_default()
            .push((address, &recorded.id));
    }
    let reads = stream::iter(by_kind.into_iter().map(|(kind, recorded)| async move {
        let ids: Vec<String> = recorded.iter().map(|(_, id)| (*id).clone()).collect();
        let name = kind.prefix();
        let observed = retry(&options.retry, name, "refresh", || {
            cloud.read_each(kind, &ids)
        })
        .await?;
        Ok::<_, OperationError>(recorded.into_iter().zip(observed).map(
            |((address, id), observed)| {
                let now = Current {
                    id: id.clone(),
                    observed,
                    adopted: false,
                };
                (address.clone(), now)
            },
        ))
    }))
    .buffer_unordered(options.parallelism.max(1))
    .collect::<Vec<_>>()
    .await;
    let mut current = BTreeMap::new();
    for read in reads {
        current.extend(read?);
    }
    // Look for unrecorded resources in waves: all whose parents are known
    // at once; a parent found in one wave lets its children be looked for
    // in the next. A parent that does not exist means its children cannot.
    let mut tried: BTreeSet<&str> = BTreeSet::new();
    loop {
        let wave: Vec<(&Resource, crate::model::Props)> = desired
            .iter()
            .filter(|r| {
                !state.resources.contains_key(&r.address) && !tried.contains(r.address.as_str())
            })
            .filter_map(|r| {
                let lookup = |address: &str, output: &str| -> Option<Value> {
                    current
                        .get(address)
                        .and_then(|c: &Current| c.observed.as_ref())
                        .and_then(|o| o.outputs.get(output).cloned())
                };
                let props = resolve_props(&r.props, &lookup);
                (!props.values().any(|v| v.as_str() == Some(UNKNOWN))).then_some((r, props))
            })
            .collect();
        if wave.is_empty() {
            break;
        }
        tried.extend(wave.iter().map(|(r, _)| r.address.as_str()));
        let found = stream::iter(wave.into_iter().map(|(resource, props)| async move {
            let id = retry(&options.retry, &resource.address, "look up by tags", || {
                cloud.find(resource.kind, &resource.address, &props)
            })
            .await?;
            let Some(id) = id else { return Ok(None) };
            let observed = retry(&options.retry, &resource.address, "refresh", || {
                cloud.read(resource.kind, &id)
            })
            .await?;
            Ok::<_, OperationError>(observed.map(|o| (resource.address.clone(), id, o)))
        }))
        .buffer_unordered(options.parallelism.max(1))
        .collect::<Vec<_>>()
        .await;
        for result in found {
            if let Some((address, id, observed)) = result? {
                current.insert(
                    address,
                    Current {
                        id,
                        observed: Some(observed),
                        adopted: true,
                    },
                );
            }
        }
    }
    Ok(current)
}
