//! What one kind of resource is: its rules for the planner and the walks,
//! and its calls to AWS. Each kind implements [`ResourceKind`] in a file of
//! its own (`cloud/<family>/<kind>.rs`), and [`super::registry`] lists them.
//!
//! Every operation is one idempotent attempt; retries and ordering belong to
//! the walks, and a wait inside an operation polls with the walk's timeout
//! ([`super::support::poll`]).

use async_trait::async_trait;

use super::{Cloud, Observed, Result};
use crate::model::Props;

/// One kind of resource.
#[async_trait]
pub trait ResourceKind: Send + Sync {
    /// The attributes that can change in place; a change to any other
    /// attribute replaces the resource.
    fn updatable(&self) -> &'static [&'static str];

    /// Whether it carries the stack's tags (the others are found again by
    /// their parent and a deterministic key).
    fn tagged(&self) -> bool {
        true
    }

    /// Whether deleting it, as `recorded`, deletes data users wrote that
    /// nothing can make again. `recorded` may hold only some attributes
    /// (those a plan changes).
    fn holds_data(&self, _recorded: &Props) -> bool {
        false
    }

    /// Its place in the destroy order: lower ranks are deleted first.
    fn destroy_rank(&self) -> u8;

    /// The resource this stack created at `address` (by its tags, or for
    /// untagged kinds by its deterministic key), so that a crashed run's
    /// creations are adopted instead of duplicated.
    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>>;

    /// The resource as the cloud has it, with exactly the property names the
    /// planner produces, `None` when it is gone.
    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>>;

    /// What [`ResourceKind::read`] answers for each of `ids`, in their order:
    /// the refresh reads a kind's resources together. One `read` each,
    /// concurrently, unless the kind's API describes many in one call.
    async fn read_each(&self, cloud: &Cloud, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        futures::future::try_join_all(ids.iter().map(|id| self.read(cloud, id))).await
    }

    /// Creates it with `props` (references already resolved) and its tags.
    async fn create(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<String>;

    /// Makes the change in place: the `changed` attributes, which are those
    /// in `updatable`, and every attribute `create` sets after its first
    /// call, so that a create that failed half way and is found again by its
    /// retry can be completed.
    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()>;

    /// Deletes it; `Ok` when it is already gone.
    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()>;

    /// The ids of every resource of this kind carrying the stack's tag.
    async fn list_tagged(&self, _cloud: &Cloud) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// What still uses it when a delete is refused as in use, to name in
    /// the progress and the error.
    async fn users(&self, _cloud: &Cloud, _id: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// What "ready" means for it when the walk waits after a change; `None`
    /// when it serves as soon as it exists.
    fn readiness(&self, _id: &str) -> Option<Readiness> {
        None
    }

    /// One look at whether it is ready (see [`ResourceKind::readiness`]).
    async fn probe(&self, _cloud: &Cloud, _id: &str, _observed: &Observed) -> Result<Probe> {
        Ok(Probe::ready("exists"))
    }
}

/// What [`ResourceKind::update`] is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    /// The resource's id.
    pub id: &'a str,
    /// Its desired properties, references resolved.
    pub props: &'a Props,
    /// The attributes that differ from the cloud's, to set.
    pub changed: &'a [String],
}

impl Update<'_> {
    /// Whether `attribute` is one to change.
    pub fn has(&self, attribute: &str) -> bool {
        self.changed.iter().any(|c| c == attribute)
    }
}

/// What the walk waits for after changing a resource.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The state waited for, as in `waiting until {what}`.
    pub what: &'static str,
    /// What the user can do when it does not come.
    pub advice: String,
    /// The progress line once it is ready, as in `{address}: {ready}`
    /// (`None`: the walk's own "created" line says enough).
    pub ready: Option<&'static str>,
}

/// One look at a resource being waited for.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// It is ready.
    pub ready: bool,
    /// It will not become ready: stop waiting.
    pub failed: bool,
    /// What it is doing, for the progress and the error.
    pub status: String,
}

impl Probe {
    /// Ready.
    pub fn ready(status: impl Into<String>) -> Self {
        Self {
            ready: true,
            failed: false,
            status: status.into(),
        }
    }

    /// Not ready yet.
    pub fn waiting(status: impl Into<String>) -> Self {
        Self {
            ready: false,
            failed: false,
            status: status.into(),
        }
    }

    /// Never going to be ready.
    pub fn failed(status: impl Into<String>) -> Self {
        Self {
            ready: false,
            failed: true,
            status: status.into(),
        }
    }

    /// Ready when `ready`, otherwise waiting.
    pub fn when(ready: bool, status: impl Into<String>) -> Self {
        Self {
            ready,
            failed: false,
            status: status.into(),
        }
    }
}
