//! The hot store port: where events and rollups live for fast reads.
//!
//! The port has two halves: [`HotWriter`], which the processor applies
//! batches with, and [`HotReader`], which the GraphQL API queries; both are
//! [`Reachable`] for readiness, and [`HotStore`] is the pair.
//!
//! Two adapters implement it with the same semantics: [`dynamodb`] (the
//! `EventsHot` single table) and [`sqlite`] (embedded, for `provision dev`).
//! Both apply a batch the same way, planned by [`plan_batch`]:
//!
//! 1. read the partition's watermark `W` (last offset whose rollups are
//!    applied), kept per Kafka cluster, topic and partition;
//! 2. find which of the batch's event ids are already stored (a client retry
//!    of an event that an earlier message delivered);
//! 3. load the state of the batch's users;
//! 4. compute the rollup delta ([`crate::rollup`]) of the events that are
//!    past `W` and seen for the first time;
//! 5. apply the counter changes together with `W := last offset`, as one
//!    atomic write conditional on `W` being unchanged (offset fencing);
//! 6. write the users' new state and the new event items; both idempotent.
//!
//! A crash anywhere leaves a state that redelivery completes: offsets at or
//! below `W` never count again, and steps 6 are replays of the same values.

#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod sqlite;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use event_common::config::{ConfigError, Env};
use event_common::event::Event;
use uuid::Uuid;

use crate::rollup::{self, RollupDelta, RollupEvent, UserState, Window};
use crate::StoreError;

/// Which hot store a service uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotStoreKind {
    /// DynamoDB table `DYNAMODB_TABLE`.
    DynamoDb,
    /// SQLite database at this path (`provision dev`).
    Sqlite(PathBuf),
}

impl HotStoreKind {
    /// `HOT_STORE`: `dynamodb` (default), or `sqlite` with `SQLITE_PATH`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.string("HOT_STORE", "dynamodb").as_str() {
            "dynamodb" if crate::aws::SUPPORTED => Ok(Self::DynamoDb),
            "dynamodb" => Err(ConfigError::invalid(
                "HOT_STORE",
                "dynamodb",
                "this build has no AWS support (built without the `aws` feature)",
            )),
            "sqlite" => Ok(Self::Sqlite(
                env.string("SQLITE_PATH", "events-hot.sqlite3").into(),
            )),
            other => Err(ConfigError::invalid(
                "HOT_STORE",
                other,
                "expected dynamodb or sqlite",
            )),
        }
    }
}

/// Opens the hot store `kind` names for writing; DynamoDB needs `sdk`.
pub fn open_writer(
    kind: &HotStoreKind,
    sdk: Option<&crate::aws::SdkConfig>,
    table: &str,
    ttl_days: u32,
    write_shards: u32,
) -> Result<Arc<dyn HotWriter>, StoreError> {
    Ok(open(kind, sdk, table, ttl_days, write_shards)?)
}

/// Opens the hot store `kind` names for reading; DynamoDB needs `sdk`.
/// `write_shards` must be the writers' count: readers merge that many shards.
pub fn open_reader(
    kind: &HotStoreKind,
    sdk: Option<&crate::aws::SdkConfig>,
    table: &str,
    write_shards: u32,
) -> Result<Arc<dyn HotReader>, StoreError> {
    // TTL is the writers' business; readers never write.
    Ok(open(kind, sdk, table, 0, write_shards)?)
}

fn open(
    kind: &HotStoreKind,
    sdk: Option<&crate::aws::SdkConfig>,
    table: &str,
    ttl_days: u32,
    write_shards: u32,
) -> Result<Arc<dyn HotStore>, StoreError> {
    Ok(match (kind, sdk) {
        (HotStoreKind::Sqlite(path), _) => Arc::new(sqlite::SqliteHotStore::open(path, ttl_days)?),
        #[cfg(feature = "aws")]
        (HotStoreKind::DynamoDb, Some(sdk)) => Arc::new(dynamodb::DynamoHotStore::new(
            sdk,
            table,
            ttl_days,
            write_shards,
        )),
        #[cfg(not(feature = "aws"))]
        (HotStoreKind::DynamoDb, Some(sdk)) => {
            let _ = (table, write_shards);
            match *sdk {}
        }
        (HotStoreKind::DynamoDb, None) => {
            return Err(StoreError::Unavailable(
                "DynamoDB needs AWS settings".into(),
            ))
        }
    })
}

/// A decoded message: where it was in the topic, and the event.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Kafka offset.
    pub offset: i64,
    /// The event.
    pub event: Event,
}

/// Consecutive messages of one partition, in offset order. `first_offset`
/// and `last_offset` bound the whole range, including messages that were
/// not events (those went to the dead-letter topic).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The id of the Kafka cluster the batch was read from. Offsets compare
    /// only within one cluster: a new broker starts again from 0, so its
    /// watermarks and archive names are its own.
    pub cluster: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// First offset of the range.
    pub first_offset: i64,
    /// Last offset of the range.
    pub last_offset: i64,
    /// The events of the range, in offset order.
    pub events: Vec<Delivered>,
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Events counted for the first time.
    pub counted: usize,
    /// Events at or below the watermark (a redelivery): not counted again.
    pub replayed: usize,
    /// Events whose id was already stored (a client retry): not counted again.
    pub duplicates: usize,
}

/// An event as stored in the hot store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Idempotency key.
    pub event_id: Uuid,
    /// Type.
    pub event_type: String,
    /// User.
    pub user_id: String,
    /// Skew-corrected event time.
    pub timestamp: DateTime<Utc>,
    /// When ingest received it.
    pub received_at: DateTime<Utc>,
    /// The client's JSON object, as sent.
    pub payload: String,
}

impl StoredEvent {
    /// The stored form of `event`.
    pub fn from_event(event: &Event) -> Self {
        Self {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            user_id: event.user_id.clone(),
            timestamp: event.timestamp,
            received_at: event.received_at,
            payload: event.payload.get().to_string(),
        }
    }

    /// The position of this event in newest-first order.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            timestamp: self.timestamp,
            event_id: self.event_id,
        }
    }
}

/// A position in newest-first order: (timestamp, event id), both descending.
/// Keyset pagination on it never repeats or skips an event, also while new
/// events arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Timestamp of the last event of the previous page.
    pub timestamp: DateTime<Utc>,
    /// Its id, breaking ties.
    pub event_id: Uuid,
}

impl Cursor {
    /// The sort key used by both adapters: fixed-width time, then the id.
    pub fn sort_key(&self) -> String {
        format!("{}#{}", sortable_time(self.timestamp), self.event_id)
    }

    /// Parses [`Cursor::sort_key`] output.
    pub fn from_sort_key(key: &str) -> Option<Self> {
        let (time, id) = key.split_once('#')?;
        Some(Self {
            timestamp: DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc),
            event_id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// RFC 3339 with microseconds and `Z`: fixed width, so text order is time order.
pub fn sortable_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this type.
    pub event_type: Option<String>,
    /// Only this user.
    pub user_id: Option<String>,
}

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// The events.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts, if there may be one.
    pub next: Option<Cursor>,
}

/// One cohort: its size and how many of its users came back each period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortRow {
    /// First day of the cohort's period.
    pub start: NaiveDate,
    /// Users first seen in the period.
    pub size: i64,
    /// Period index (0 = the cohort's own) -> users active in it.
    pub retained: BTreeMap<i64, i64>,
}

/// Empty rows for `count` cohorts of `window` from the one containing
/// `from`, with the first and last cohort start; `None` when `count` is 0.
pub fn empty_cohorts(
    window: Window,
    from: NaiveDate,
    count: usize,
) -> Option<(NaiveDate, NaiveDate, BTreeMap<NaiveDate, CohortRow>)> {
    let starts = window.starts(from, count);
    let (first, last) = (*starts.first()?, *starts.last()?);
    let rows = starts
        .into_iter()
        .map(|start| {
            (
                start,
                CohortRow {
                    start,
                    size: 0,
                    retained: BTreeMap::new(),
                },
            )
        })
        .collect();
    Some((first, last, rows))
}

/// A hot store that can say whether it is reachable; both halves of the
/// port have it, for the services' readiness.
#[async_trait]
pub trait Reachable: Send + Sync {
    /// Answers when the store is reachable (readiness).
    async fn check(&self) -> Result<(), StoreError>;
}

/// The half of the port the processor uses: applying batches.
#[async_trait]
pub trait HotWriter: Reachable {
    /// Applies a batch (see the module docs). Safe to call again with any
    /// batch already applied, whole or in part.
    async fn apply(&self, batch: &Batch) -> Result<ApplyOutcome, StoreError>;

    /// The partition's watermark on cluster `cluster`: the last offset whose
    /// rollups are applied.
    async fn watermark(
        &self,
        cluster: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError>;
}

/// The half of the port the GraphQL API uses: events and analytics.
#[async_trait]
pub trait HotReader: Reachable {
    /// Events matching `filter`, newest first, after `after`, at most `limit`.
    async fn events(
        &self,
        filter: &EventFilter,
        limit: usize,
        after: Option<Cursor>,
    ) -> Result<EventPage, StoreError>;

    /// One event by id.
    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// Events per hour in `[from, to)`, of one type or all; hours without events are left out.
    async fn hourly_counts(
        &self,
        event_type: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64)>, StoreError>;

    /// Events per (day, type) for days in `[from, to]`.
    async fn daily_type_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, i64)>, StoreError>;

    /// Distinct active users per day for days in `[from, to]`; days without users left out.
    async fn daily_active_users(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, i64)>, StoreError>;

    /// `count` consecutive cohorts of `window` starting with the one containing `from`.
    async fn cohorts(
        &self,
        window: Window,
        from: NaiveDate,
        count: usize,
    ) -> Result<Vec<CohortRow>, StoreError>;

    /// The stored state of a user.
    async fn user(&self, user_id: &str) -> Result<Option<UserState>, StoreError>;
}

/// Both halves of the port, for what writes a store and reads it back: the
/// contract tests and test harnesses. Every writer that is also a reader is one.
pub trait HotStore: HotWriter + HotReader {}

impl<T: HotWriter + HotReader + ?Sized> HotStore for T {}

/// What an adapter must write for a batch, given what it read.
#[derive(Debug, Clone, Default)]
pub struct BatchPlan<'a> {
    /// Counter changes and new user states.
    pub delta: RollupDelta,
    /// Events to store (first occurrences not yet stored), in offset order.
    pub new_events: Vec<&'a Delivered>,
    /// The counts for [`ApplyOutcome`].
    pub outcome: ApplyOutcome,
}

/// Plans a batch: which events count, which to store, and the rollup delta.
///
/// `watermark` is the partition's `W`, `stored` the batch's event ids that
/// are already in the store, `users` the stored state of the batch's users.
pub fn plan_batch<'a>(
    batch: &'a Batch,
    watermark: Option<i64>,
    stored: &HashSet<Uuid>,
    users: &BTreeMap<String, UserState>,
) -> BatchPlan<'a> {
    let mut seen = HashSet::new();
    let mut outcome = ApplyOutcome::default();
    let mut rollup_events = Vec::with_capacity(batch.events.len());
    let mut new_events = Vec::with_capacity(batch.events.len());
    for delivered in &batch.events {
        let event = &delivered.event;
        let first_sight = !stored.contains(&event.event_id) && seen.insert(event.event_id);
        let counted = watermark.is_none_or(|w| delivered.offset > w);
        match (counted, first_sight) {
            (true, true) => outcome.counted += 1,
            (true, false) => {
                outcome.duplicates += 1;
                continue;
            }
            (false, first_sight) => {
                outcome.replayed += 1;
                // Already stored means its user state was written too.
                if !first_sight {
                    continue;
                }
            }
        }
        new_events.push(delivered);
        rollup_events.push(RollupEvent {
            event_type: &event.event_type,
            user_id: &event.user_id,
            timestamp: event.timestamp,
            counted,
        });
    }
    BatchPlan {
        delta: rollup::compute(&rollup_events, users),
        new_events,
        outcome,
    }
}

/// The distinct ids and users of a batch, for the reads of steps 2 and 3.
pub fn batch_keys(batch: &Batch) -> (Vec<Uuid>, Vec<String>) {
    let ids: HashSet<Uuid> = batch.events.iter().map(|d| d.event.event_id).collect();
    let users: std::collections::BTreeSet<&str> = batch
        .events
        .iter()
        .map(|d| d.event.user_id.as_str())
        .collect();
    (
        ids.into_iter().collect(),
        users.into_iter().map(String::from).collect(),
    )
}
