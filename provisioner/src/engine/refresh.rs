//! The refresh: reads every recorded resource from the cloud, and looks for
//! resources of the blueprint that the state does not know (a run killed
//! between a create and its record) by their tags, so they are adopted.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::{retry, OperationError, Options};
use crate::cloud::Cloud;
use crate::model::Resource;
use crate::plan::{resolve_props, topological, Current, UNKNOWN};
use crate::state::State;

/// Refreshes `state` against the cloud; `desired` names what to look for.
pub async fn refresh(
    cloud: &Cloud,
    desired: &[Resource],
    state: &State,
    options: &Options,
) -> Result<BTreeMap<String, Current>, OperationError> {
    let reads = stream::iter(
        state
            .resources
            .iter()
            .map(|(address, recorded)| async move {
                let observed = retry(&options.retry, address, "refresh", || {
                    cloud.read(recorded.kind, &recorded.id)
                })
                .await?;
                Ok::<_, OperationError>((
                    address.clone(),
                    Current {
                        id: recorded.id.clone(),
                        observed,
                        adopted: false,
                    },
                ))
            }),
    )
    .buffer_unordered(options.parallelism.max(1))
    .collect::<Vec<_>>()
    .await;
    let mut current = BTreeMap::new();
    for read in reads {
        let (address, now) = read?;
        current.insert(address, now);
    }
    for resource in topological(desired) {
        if state.resources.contains_key(&resource.address) {
            continue;
        }
        let lookup = |address: &str, output: &str| -> Option<Value> {
            current
                .get(address)
                .and_then(|c: &Current| c.observed.as_ref())
                .and_then(|o| o.outputs.get(output).cloned())
        };
        let props = resolve_props(&resource.props, &lookup);
        // A parent that does not exist yet means this cannot exist either.
        if props.values().any(|v| v.as_str() == Some(UNKNOWN)) {
            continue;
        }
        let found = retry(&options.retry, &resource.address, "look up by tags", || {
            cloud.find(resource.kind, &resource.address, &props)
        })
        .await?;
        let Some(id) = found else { continue };
        let observed = retry(&options.retry, &resource.address, "refresh", || {
            cloud.read(resource.kind, &id)
        })
        .await?;
        if observed.is_some() {
            current.insert(
                resource.address.clone(),
                Current {
                    id,
                    observed,
                    adopted: true,
                },
            );
        }
    }
    Ok(current)
}
