//! Stores for tests (SQLite in a temp dir, DynamoDB and S3 on the emulator)
//! and the expected analytics of a set of events, computed naively from the
//! events themselves, never by the code under test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use event_common::event::Event;
use event_store::aws::{self, AwsSettings};
use event_store::cold::s3::S3ColdStore;
use event_store::hot::dynamodb::DynamoHotStore;
use event_store::hot::sqlite::SqliteHotStore;
use event_store::hot::{Batch, Delivered, HotReader, StoredEvent};
use event_store::rollup::Window;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::unique_name;

/// A SQLite hot store in a fresh temporary directory (kept alive with it).
pub fn sqlite_store() -> anyhow::Result<(SqliteHotStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    Ok((
        SqliteHotStore::open(&dir.path().join("hot.sqlite3"), 3650)?,
        dir,
    ))
}

/// A DynamoDB hot store on a fresh table of the emulator at `endpoint`.
pub async fn dynamodb_store(endpoint: &str, shards: u32) -> anyhow::Result<DynamoHotStore> {
    let sdk = aws::sdk_config(&AwsSettings::emulator(endpoint)).await;
    dynamodb_store_with(&sdk, shards).await
}

/// A DynamoDB hot store on a fresh table, with the given SDK configuration.
pub async fn dynamodb_store_with(
    sdk: &aws_config::SdkConfig,
    shards: u32,
) -> anyhow::Result<DynamoHotStore> {
    let table = unique_name("EventsHot");
    let store = DynamoHotStore::new(sdk, &table, 3650, shards);
    DynamoHotStore::create_table(store.client(), &table).await?;
    Ok(store)
}

/// An S3 cold store on a fresh bucket of the emulator, with the given SDK configuration.
pub async fn s3_store_with(sdk: &aws_config::SdkConfig) -> anyhow::Result<S3ColdStore> {
    let bucket = unique_name("raw-events");
    let store = S3ColdStore::new(sdk, &bucket);
    store
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await?;
    Ok(store)
}

/// An event for tests, with a time-ordered id as ingest gives.
pub fn event(event_type: &str, user_id: &str, timestamp: DateTime<Utc>, n: usize) -> Event {
    Event {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        user_id: user_id.into(),
        timestamp,
        client_timestamp: None,
        sent_at: None,
        received_at: timestamp,
        timestamp_clamped: false,
        payload: RawValue::from_string(format!(r#"{{"n":{n}}}"#))
            .unwrap_or_else(|_| unreachable!("valid JSON")),
    }
}

/// The Kafka cluster id of batches made by [`batch`].
pub const TEST_CLUSTER: &str = "test-cluster";

/// `events` as consecutive messages of `partition` from offset `first`, on [`TEST_CLUSTER`].
pub fn batch(topic: &str, partition: i32, first: i64, events: &[Event]) -> Batch {
    Batch {
        cluster: TEST_CLUSTER.into(),
        topic: topic.into(),
        partition,
        first_offset: first,
        last_offset: first + events.len() as i64 - 1,
        events: events
            .iter()
            .enumerate()
            .map(|(i, e)| Delivered {
                offset: first + i as i64,
                event: e.clone(),
            })
            .collect(),
    }
}

/// Parses an RFC 3339 time (test data only).
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
}

/// Parses a `YYYY-MM-DD` day (test data only).
pub fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("bad test day {s}: {e}"))
}

/// What every read of a hot store must return for a set of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analytics {
    /// (type or `*`, hour) -> events.
    pub hourly: BTreeMap<(String, DateTime<Utc>), i64>,
    /// (day, type) -> events.
    pub daily_types: BTreeMap<(NaiveDate, String), i64>,
    /// day -> distinct users.
    pub dau: BTreeMap<NaiveDate, i64>,
    /// (window, cohort start) -> (size, period -> retained users).
    pub cohorts: BTreeMap<(Window, NaiveDate), (i64, BTreeMap<i64, i64>)>,
}

fn week_start(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

impl Analytics {
    /// Computes the analytics of `events` the slow, obvious way; events with
    /// the same id count once (the first one).
    pub fn expected(events: &[Event]) -> Self {
        let mut seen = BTreeSet::new();
        let unique: Vec<&Event> = events.iter().filter(|e| seen.insert(e.event_id)).collect();
        let mut hourly = BTreeMap::new();
        let mut daily_types = BTreeMap::new();
        let mut users_by_day: BTreeMap<NaiveDate, BTreeSet<&str>> = BTreeMap::new();
        let mut days_by_user: HashMap<&str, BTreeSet<NaiveDate>> = HashMap::new();
        for e in &unique {
            let hour = e
                .timestamp
                .with_nanosecond(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_minute(0))
                .unwrap_or(e.timestamp);
            *hourly.entry((e.event_type.clone(), hour)).or_insert(0) += 1;
            *hourly.entry(("*".to_string(), hour)).or_insert(0) += 1;
            let d = e.timestamp.date_naive();
            *daily_types.entry((d, e.event_type.clone())).or_insert(0) += 1;
            users_by_day.entry(d).or_default().insert(&e.user_id);
            days_by_user.entry(&e.user_id).or_default().insert(d);
        }
        let mut cohorts: BTreeMap<(Window, NaiveDate), (i64, BTreeMap<i64, i64>)> = BTreeMap::new();
        for days in days_by_user.values() {
            let Some(first) = days.iter().next().copied() else {
                continue;
            };
            // Daily: cohort is the first day; period k is day first + k.
            let entry = cohorts.entry((Window::Daily, first)).or_default();
            entry.0 += 1;
            for d in days {
                *entry.1.entry((*d - first).num_days()).or_insert(0) += 1;
            }
            // Weekly: cohort is the first week; each active week counts once.
            let first_week = week_start(first);
            let weeks: BTreeSet<NaiveDate> = days.iter().map(|d| week_start(*d)).collect();
            let entry = cohorts.entry((Window::Weekly, first_week)).or_default();
            entry.0 += 1;
            for w in weeks {
                *entry.1.entry((w - first_week).num_days() / 7).or_insert(0) += 1;
            }
        }
        Self {
            hourly,
            daily_types,
            dau: users_by_day
                .into_iter()
                .map(|(d, u)| (d, u.len() as i64))
                .collect(),
            cohorts,
        }
    }

    /// Reads the same analytics back from `store` over `[from, to]`.
    pub async fn read(
        store: &dyn HotReader,
        from: NaiveDate,
        to: NaiveDate,
        types: &[&str],
    ) -> anyhow::Result<Self> {
        let start = from
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or_default();
        let end = (to + Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or_default();
        let mut hourly = BTreeMap::new();
        for t in types.iter().copied().chain(["*"]) {
            let filter = (t != "*").then_some(t);
            for (hour, n) in store.hourly_counts(filter, start, end).await? {
                hourly.insert((t.to_string(), hour), n);
            }
        }
        let daily_types = store
            .daily_type_counts(from, to)
            .await?
            .into_iter()
            .map(|(d, t, n)| ((d, t), n))
            .collect();
        let dau = store
            .daily_active_users(from, to)
            .await?
            .into_iter()
            .collect();
        let mut cohorts = BTreeMap::new();
        let days = usize::try_from((to - from).num_days() + 1).unwrap_or(0);
        for window in Window::ALL {
            let count = if window == Window::Weekly {
                days / 7 + 2
            } else {
                days
            };
            for row in store.cohorts(window, from, count).await? {
                if row.size != 0 || !row.retained.is_empty() {
                    cohorts.insert((window, row.start), (row.size, row.retained));
                }
            }
        }
        Ok(Self {
            hourly,
            daily_types,
            dau,
            cohorts,
        })
    }
}

/// Every event of `store` matching nothing in particular, walked page by page.
pub async fn all_pages(
    store: &Arc<impl HotReader + ?Sized>,
    filter: &event_store::hot::EventFilter,
    page_size: usize,
) -> anyhow::Result<Vec<StoredEvent>> {
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = store.events(filter, page_size, after).await?;
        events.extend(page.events);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(events),
        }
    }
}
