//! Destroy: adopt what a killed run left unrecorded, delete everything in
//! the choreography's order, then list every service for anything still
//! carrying the stack's tag.

use std::collections::BTreeSet;

use super::walk::delete_all;
use super::{refresh, Options, WalkError};
use crate::cloud::Cloud;
use crate::model::{Kind, Resource};
use crate::state::StateFile;

/// What destroy did and found.
#[derive(Debug)]
pub struct DestroyReport {
    /// Resources deleted.
    pub deleted: usize,
    /// Resources still tagged with the stack afterwards (should be none).
    pub leftovers: Vec<(Kind, String)>,
}

/// Deletes the stack. `desired` (from the blueprint) lets it find resources
/// a killed run created but never recorded.
pub async fn destroy(
    cloud: &Cloud,
    desired: &[Resource],
    mut state: StateFile,
    options: &Options,
) -> Result<DestroyReport, WalkError> {
    let current = refresh(cloud, desired, &state.state, options)
        .await
        .map_err(|e| WalkError(vec![e]))?;
    let mut items = Vec::new();
    for (address, now) in &current {
        let kind = match state.state.resources.get(address) {
            Some(r) => r.kind,
            None => match desired.iter().find(|r| &r.address == address) {
                Some(r) => r.kind,
                None => continue,
            },
        };
        if now.observed.is_some() {
            items.push((address.clone(), kind, now.id.clone()));
        }
    }
    // Gone already: forget them.
    let gone: Vec<String> = current
        .iter()
        .filter(|(_, c)| c.observed.is_none())
        .map(|(a, _)| a.clone())
        .collect();
    for address in gone {
        state
            .record(&address, None)
            .map_err(|e| WalkError(vec![super::walk::local_error(&address, &e.to_string())]))?;
    }
    // Anything else carrying the stack's tag (a duplicate from an old crash).
    let known: BTreeSet<String> = items.iter().map(|(_, _, id)| id.clone()).collect();
    let list_tagged = || async {
        super::retry(&options.retry, "(stack)", "list tagged resources", || {
            cloud.list_tagged()
        })
        .await
        .map_err(|e| WalkError(vec![e]))
    };
    let tagged = list_tagged().await?;
    for (kind, id) in tagged {
        if !known.contains(&id) {
            items.push((format!("{kind}.(untracked {id})"), kind, id));
        }
    }
    let deleted = items.len();
    delete_all(cloud, state, items, options).await?;
    let leftovers = list_tagged().await?;
    Ok(DestroyReport { deleted, leftovers })
}
