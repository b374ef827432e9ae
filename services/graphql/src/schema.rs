//! The schema: the reference platform's list queries, a paginated
//! connection, and the analytics, all read through the hot-store port.
//!
//! Every time-ordered list is newest first. An event's day is the UTC day
//! of its skew-corrected `timestamp`. `DateTime` ranges are half-open
//! `[from, to)` and on whole hours (counts are kept per hour); `Date`
//! ranges include both ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, Json, Object, Result, SDLExportOptions,
    Schema, SimpleObject, ID,
};
use chrono::{Duration, NaiveDate, Timelike, Utc};
use event_store::hot::{EventFilter, HotReader, StoredEvent};
use event_store::rollup::Window;
use event_store::StoreError;

use crate::config::QueryLimits;
use crate::guard::{
    bad_input, bounded, key, store_failure, Observe, MAX_HOUR_BUCKET_DAYS, MAX_LIST,
    MAX_RETENTION_WINDOWS,
};
use crate::scalars::{decode_cursor, encode_cursor, Date, DateTime};

/// The executable schema.
pub type EventSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema over `hot`, with the guard rails of `limits`.
pub fn build(hot: Arc<dyn HotReader>, limits: QueryLimits) -> EventSchema {
    let builder = Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(hot)
        .data(limits)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .extension(Observe);
    // Parse, validation and every resolver as spans, only while traces are exported.
    #[cfg(feature = "otel")]
    let builder = if event_common::traces::enabled() {
        builder.extension(async_graphql::extensions::Tracing)
    } else {
        builder
    };
    builder.finish()
}

/// The schema in SDL, as `graphql --print-schema` prints it.
pub fn sdl() -> String {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .finish()
        .sdl_with_options(SDLExportOptions::new().prefer_single_line_descriptions())
}

/// Default `limit` of `latestEvents`, as in the reference platform.
const LATEST_DEFAULT: i32 = 10;
/// Default `limit` of `eventsByType`/`eventsByUser`, and `first` of `events`.
const LIST_DEFAULT: i32 = 50;
/// Default `limit` of `topEvents`.
const TOP_DEFAULT: i32 = 10;

/// What one root field costs before its selection: it reads the store, so
/// aliases of a cheap query add up (the default budget of 20,000 allows a
/// page of 1,000 full events plus a dashboard's handful of reads).
const STORE_READ: usize = 1_000;

/// What a root list field costs: a store read, plus its length (`null`
/// counts as the largest) times its selection's cost.
fn list_cost(len: Option<i32>, child_complexity: usize) -> usize {
    read_cost(
        (len.unwrap_or(MAX_LIST).clamp(1, MAX_LIST) as usize).saturating_mul(child_complexity),
    )
}

/// What a root field that is not a list costs: a store read and its selection.
fn read_cost(child_complexity: usize) -> usize {
    child_complexity.saturating_add(STORE_READ)
}

/// One event (see [`Event`'s impl](Event#impl-Event)).
pub struct Event(StoredEvent);

/// One event, as ingest accepted it.
#[Object]
impl Event {
    /// The event's id (a UUID): the idempotency key.
    async fn event_id(&self) -> ID {
        ID(self.0.event_id.to_string())
    }

    /// The event's type, such as `page_view`.
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// Who did it.
    async fn user_id(&self) -> &str {
        &self.0.user_id
    }

    /// When it happened (corrected for client clock skew); its UTC day is the event's day.
    async fn timestamp(&self) -> DateTime {
        DateTime(self.0.timestamp)
    }

    /// When ingest received it.
    async fn received_at(&self) -> DateTime {
        DateTime(self.0.received_at)
    }

    /// The client's JSON object.
    async fn payload(&self) -> Result<Json<serde_json::Value>> {
        serde_json::from_str(&self.0.payload)
            .map(Json)
            .map_err(|e| {
                store_failure(StoreError::Invalid(format!(
                    "payload of {}: {e}",
                    self.0.event_id
                )))
            })
    }
}

/// A page of events, newest first.
#[derive(SimpleObject)]
pub struct EventConnection {
    /// The events of this page.
    nodes: Vec<Event>,
    /// Where the next page starts.
    page_info: PageInfo,
}

/// Pagination state of a page.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// True when more events follow this page.
    has_next_page: bool,
    /// Pass as `after` to get the next page; null on an empty page.
    end_cursor: Option<String>,
}

/// Event count over a range.
#[derive(SimpleObject)]
pub struct EventCount {
    /// Events in the range.
    total: i64,
    /// Every bucket of the range, newest first, empty ones included.
    buckets: Vec<CountBucket>,
}

/// Events in one bucket.
#[derive(SimpleObject)]
pub struct CountBucket {
    /// Start of the bucket's hour or UTC day, or `from` when the range starts inside it.
    start: DateTime,
    /// Events in the part of the bucket inside the range.
    count: i64,
}

/// A count for one day.
#[derive(SimpleObject)]
pub struct DailyCount {
    /// The UTC day.
    date: Date,
    /// Distinct users active that day.
    count: i64,
}

/// Events of one type.
#[derive(SimpleObject)]
pub struct EventTypeCount {
    /// The type.
    event_type: String,
    /// Events of the type in the range.
    count: i64,
}

/// The users first seen in one period, and how many came back.
#[derive(SimpleObject)]
pub struct Cohort {
    /// First day of the cohort's period (a Monday for weekly cohorts).
    cohort_date: Date,
    /// Users first seen in the period.
    size: i64,
    /// `retained[k]`: the cohort's users active in the k-th period after its own (`retained[0] = size`).
    retained: Vec<i64>,
    /// `rates[k] = retained[k] / size` (0 for an empty cohort).
    rates: Vec<f64>,
}

/// Bucket width of `eventCount`.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Bucket {
    /// One bucket per hour (ranges up to 31 days).
    Hour,
    /// One bucket per UTC day.
    Day,
}

/// Period of `retention`.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum WindowType {
    /// Cohorts and periods of one UTC day.
    Daily,
    /// Cohorts and periods of one ISO week (from Monday).
    Weekly,
}

/// The read-only queries (see [`Query`'s impl](Query#impl-Query)).
pub struct Query;

fn store<'a>(ctx: &Context<'a>) -> Result<&'a Arc<dyn HotReader>> {
    ctx.data::<Arc<dyn HotReader>>()
}

fn limits(ctx: &Context<'_>) -> QueryLimits {
    ctx.data::<QueryLimits>().copied().unwrap_or_default()
}

async fn list(ctx: &Context<'_>, filter: EventFilter, limit: i32) -> Result<Vec<Event>> {
    let limit = bounded("limit", limit, MAX_LIST)?;
    let page = store(ctx)?
        .events(&filter, limit, None)
        .await
        .map_err(store_failure)?;
    Ok(page.events.into_iter().map(Event).collect())
}

/// Checks a `DateTime` range: ordered, on whole hours, within the limit.
fn check_time_range(
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
    bucket: Bucket,
    max_days: i64,
) -> Result<()> {
    let on_hour =
        |t: chrono::DateTime<Utc>| t.minute() == 0 && t.second() == 0 && t.nanosecond() == 0;
    if from >= to {
        return Err(bad_input("to", "must be after from"));
    }
    for (name, t) in [("from", from), ("to", to)] {
        if !on_hour(t) {
            return Err(bad_input(
                name,
                "must be on a whole hour (counts are kept per hour)",
            ));
        }
    }
    if to - from > Duration::days(max_days) {
        return Err(bad_input(
            "to",
            format!("the range may span at most {max_days} days"),
        ));
    }
    if bucket == Bucket::Hour && to - from > Duration::days(MAX_HOUR_BUCKET_DAYS) {
        return Err(bad_input(
            "bucket",
            format!("HOUR buckets cover at most {MAX_HOUR_BUCKET_DAYS} days; use DAY"),
        ));
    }
    Ok(())
}

/// Checks a `Date` range (both ends included): ordered, within the limit.
fn check_day_range(from: NaiveDate, to: NaiveDate, max_days: i64) -> Result<()> {
    if to < from {
        return Err(bad_input("to", "must not be before from"));
    }
    if (to - from).num_days() + 1 > max_days {
        return Err(bad_input(
            "to",
            format!("the range may span at most {max_days} days"),
        ));
    }
    Ok(())
}

/// Checks a `Date` range (both ends included) and gives its days, newest first.
fn days_of(from: NaiveDate, to: NaiveDate, max_days: i64) -> Result<Vec<NaiveDate>> {
    check_day_range(from, to, max_days)?;
    Ok(to.iter_days().rev().take_while(|d| *d >= from).collect())
}

fn day_start(t: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    t.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The read-only queries. Lists are newest first.
#[Object]
impl Query {
    /// The newest events; `limit` 1 to 1000.
    #[graphql(complexity = "list_cost(limit, child_complexity)")]
    async fn latest_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(LATEST_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<Event>> {
        list(ctx, EventFilter::default(), limit.unwrap_or(LATEST_DEFAULT)).await
    }

    /// The newest events of one type; `limit` 1 to 1000.
    #[graphql(complexity = "list_cost(limit, child_complexity)")]
    async fn events_by_type(
        &self,
        ctx: &Context<'_>,
        event_type: String,
        #[graphql(default_with = "Some(LIST_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<Event>> {
        let filter = EventFilter {
            event_type: Some(key("eventType", event_type)?),
            user_id: None,
        };
        list(ctx, filter, limit.unwrap_or(LIST_DEFAULT)).await
    }

    /// The newest events of one user; `limit` 1 to 1000.
    #[graphql(complexity = "list_cost(limit, child_complexity)")]
    async fn events_by_user(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        #[graphql(default_with = "Some(LIST_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<Event>> {
        let filter = EventFilter {
            event_type: None,
            user_id: Some(key("userId", user_id)?),
        };
        list(ctx, filter, limit.unwrap_or(LIST_DEFAULT)).await
    }

    /// Events, optionally of one type and/or user, newest first, a page at a
    /// time (`first` 1 to 1000): pass `pageInfo.endCursor` as `after` for the next page. A walk
    /// never repeats or skips an event, also while new events arrive.
    #[graphql(complexity = "list_cost(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        event_type: Option<String>,
        user_id: Option<String>,
        #[graphql(default_with = "Some(LIST_DEFAULT)")] first: Option<i32>,
        after: Option<String>,
    ) -> Result<EventConnection> {
        let first = bounded("first", first.unwrap_or(LIST_DEFAULT), MAX_LIST)?;
        let filter = EventFilter {
            event_type: event_type.map(|t| key("eventType", t)).transpose()?,
            user_id: user_id.map(|u| key("userId", u)).transpose()?,
        };
        let after = after
            .as_deref()
            .map(|a| {
                decode_cursor(a)
                    .ok_or_else(|| bad_input("after", "not a cursor given by pageInfo.endCursor"))
            })
            .transpose()?;
        // One more than asked tells whether another page exists.
        let mut events = store(ctx)?
            .events(&filter, first + 1, after)
            .await
            .map_err(store_failure)?
            .events;
        let has_next_page = events.len() > first;
        events.truncate(first);
        Ok(EventConnection {
            page_info: PageInfo {
                has_next_page,
                end_cursor: events.last().map(|e| encode_cursor(&e.cursor())),
            },
            nodes: events.into_iter().map(Event).collect(),
        })
    }

    /// Events in `[from, to)` (whole hours, at most 366 days; HOUR buckets at most 31 days),
    /// of one type or all.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn event_count(
        &self,
        ctx: &Context<'_>,
        from: DateTime,
        to: DateTime,
        event_type: Option<String>,
        #[graphql(default_with = "Some(Bucket::Day)")] bucket: Option<Bucket>,
    ) -> Result<EventCount> {
        let bucket = bucket.unwrap_or(Bucket::Day);
        let (from, to) = (from.0, to.0);
        check_time_range(from, to, bucket, limits(ctx).max_range_days)?;
        let event_type = event_type.map(|t| key("eventType", t)).transpose()?;
        let hours = store(ctx)?
            .hourly_counts(event_type.as_deref(), from, to)
            .await
            .map_err(store_failure)?;
        let bucket_of = |t: chrono::DateTime<Utc>| match bucket {
            Bucket::Hour => t,
            Bucket::Day => day_start(t).max(from),
        };
        // Every bucket of the range, so empty ones answer 0.
        let mut counts: BTreeMap<chrono::DateTime<Utc>, i64> = BTreeMap::new();
        let mut start = from;
        while start < to {
            counts.insert(bucket_of(start), 0);
            start = match bucket {
                Bucket::Hour => start + Duration::hours(1),
                Bucket::Day => day_start(start) + Duration::days(1),
            };
        }
        for (hour, n) in hours {
            *counts.entry(bucket_of(hour)).or_insert(0) += n;
        }
        Ok(EventCount {
            total: counts.values().sum(),
            buckets: counts
                .into_iter()
                .rev()
                .map(|(start, count)| CountBucket {
                    start: DateTime(start),
                    count,
                })
                .collect(),
        })
    }

    /// Distinct active users per UTC day, for every day of `[from, to]`
    /// (both included, at most 366 days), newest first.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn daily_active_users(
        &self,
        ctx: &Context<'_>,
        from: Date,
        to: Date,
    ) -> Result<Vec<DailyCount>> {
        let days = days_of(from.0, to.0, limits(ctx).max_range_days)?;
        let counts: BTreeMap<NaiveDate, i64> = store(ctx)?
            .daily_active_users(from.0, to.0)
            .await
            .map_err(store_failure)?
            .into_iter()
            .collect();
        Ok(days
            .into_iter()
            .map(|d| DailyCount {
                date: Date(d),
                count: counts.get(&d).copied().unwrap_or(0),
            })
            .collect())
    }

    /// The most frequent event types over the days `[from, to]` (both
    /// included), most frequent first, ties by name; `limit` 1 to 1000.
    #[graphql(complexity = "list_cost(limit, child_complexity)")]
    async fn top_events(
        &self,
        ctx: &Context<'_>,
        from: Date,
        to: Date,
        #[graphql(default_with = "Some(TOP_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<EventTypeCount>> {
        let limit = bounded("limit", limit.unwrap_or(TOP_DEFAULT), MAX_LIST)?;
        check_day_range(from.0, to.0, limits(ctx).max_range_days)?;
        let mut by_type: BTreeMap<String, i64> = BTreeMap::new();
        for (_, event_type, n) in store(ctx)?
            .daily_type_counts(from.0, to.0)
            .await
            .map_err(store_failure)?
        {
            *by_type.entry(event_type).or_insert(0) += n;
        }
        let mut top: Vec<EventTypeCount> = by_type
            .into_iter()
            .map(|(event_type, count)| EventTypeCount { event_type, count })
            .collect();
        top.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.event_type.cmp(&b.event_type))
        });
        top.truncate(limit);
        Ok(top)
    }

    /// `windows` cohorts (1 to 90) from the one containing `startDate`,
    /// newest first, each with `windows` periods of retention.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn retention(
        &self,
        ctx: &Context<'_>,
        start_date: Date,
        windows: i32,
        #[graphql(default_with = "Some(WindowType::Daily)")] window_type: Option<WindowType>,
    ) -> Result<Vec<Cohort>> {
        let windows = bounded("windows", windows, MAX_RETENTION_WINDOWS)?;
        let window = match window_type.unwrap_or(WindowType::Daily) {
            WindowType::Daily => Window::Daily,
            WindowType::Weekly => Window::Weekly,
        };
        let rows = store(ctx)?
            .cohorts(window, start_date.0, windows)
            .await
            .map_err(store_failure)?;
        Ok(rows
            .into_iter()
            .rev()
            .map(|row| {
                let retained: Vec<i64> = (0..windows as i64)
                    .map(|k| row.retained.get(&k).copied().unwrap_or(0))
                    .collect();
                let rates = retained
                    .iter()
                    .map(|&n| {
                        if row.size > 0 {
                            n as f64 / row.size as f64
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Cohort {
                    cohort_date: Date(row.start),
                    size: row.size,
                    retained,
                    rates,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn time_ranges_are_checked_before_any_read() {
        let ok = check_time_range(
            t("2026-11-01T00:00:00Z"),
            t("2026-11-02T00:00:00Z"),
            Bucket::Hour,
            366,
        );
        assert!(ok.is_ok());
        let cases = [
            (
                "2026-11-02T00:00:00Z",
                "2026-11-01T00:00:00Z",
                Bucket::Day,
                "to: must be after from",
            ),
            (
                "2026-11-01T00:30:00Z",
                "2026-11-02T00:00:00Z",
                Bucket::Day,
                "from: must be on a whole hour",
            ),
            (
                "2025-01-01T00:00:00Z",
                "2026-11-02T00:00:00Z",
                Bucket::Day,
                "to: the range may span at most 366 days",
            ),
            (
                "2026-09-01T00:00:00Z",
                "2026-11-02T00:00:00Z",
                Bucket::Hour,
                "bucket: HOUR buckets cover at most 31 days",
            ),
        ];
        for (from, to, bucket, want) in cases {
            let err = check_time_range(t(from), t(to), bucket, 366).expect_err(want);
            assert!(err.message.starts_with(want), "{} vs {want}", err.message);
        }
    }

    #[test]
    fn day_ranges_include_both_ends_newest_first() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day");
        let days = days_of(d("2026-02-27"), d("2026-03-01"), 366).expect("valid");
        assert_eq!(
            days,
            vec![d("2026-03-01"), d("2026-02-28"), d("2026-02-27")]
        );
        assert_eq!(
            days_of(d("2026-03-01"), d("2026-03-01"), 1)
                .expect("valid")
                .len(),
            1
        );
        assert!(days_of(d("2026-03-02"), d("2026-03-01"), 366).is_err());
        assert!(days_of(d("2026-01-01"), d("2026-01-31"), 30).is_err());
    }

    #[test]
    fn printed_schema_is_the_checked_in_one() {
        let checked_in = include_str!("../schema.graphql");
        assert_eq!(
            sdl(),
            checked_in,
            "schema changed: run `cargo run -p graphql -- --print-schema > services/graphql/schema.graphql`"
        );
    }
}
