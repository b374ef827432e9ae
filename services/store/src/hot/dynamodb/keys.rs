//! How items are keyed and encoded (the key schema of the module docs of
//! [`super`]), and how stored items decode.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use uuid::Uuid;

use super::DynamoHotStore;
use crate::hot::{sortable_time, Cursor, StoredEvent};
use crate::rollup::RollupDelta;
use crate::StoreError;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("PK".to_string(), s(pk)), ("SK".to_string(), s(sk))])
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Invalid(format!("item without string attribute {name}")))
}

pub(super) fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Invalid(format!("item without number attribute {name}")))
}

/// The key of a partition's watermark item.
pub(super) fn watermark_key(cluster: &str, topic: &str, partition: i32) -> Item {
    key(
        format!("WATERMARK#{cluster}#{topic}"),
        partition.to_string(),
    )
}

impl DynamoHotStore {
    fn shard_of(&self, id: Uuid) -> u32 {
        (id.as_u128() % u128::from(self.shards)) as u32
    }

    pub(super) fn event_item(&self, event: &event_common::event::Event) -> Item {
        let sort = Cursor {
            timestamp: event.timestamp,
            event_id: event.event_id,
        }
        .sort_key();
        let shard = self.shard_of(event.event_id);
        HashMap::from([
            ("PK".into(), s(format!("EVENT#{}", event.event_id))),
            ("SK".into(), s("EVENT")),
            ("event_id".into(), s(event.event_id.to_string())),
            ("event_type".into(), s(&event.event_type)),
            ("user_id".into(), s(&event.user_id)),
            ("ts".into(), s(sortable_time(event.timestamp))),
            ("received_at".into(), s(sortable_time(event.received_at))),
            ("payload".into(), s(event.payload.get())),
            (
                "expires_at".into(),
                n((event.timestamp + self.ttl).timestamp()),
            ),
            (
                "GSI1PK".into(),
                s(format!("TYPE#{}#{shard}", event.event_type)),
            ),
            ("GSI1SK".into(), s(&sort)),
            ("GSI2PK".into(), s(format!("USER#{}", event.user_id))),
            ("GSI2SK".into(), s(&sort)),
            (
                "GSI3PK".into(),
                s(format!(
                    "DAY#{}#{shard}",
                    event.timestamp.format("%Y-%m-%d")
                )),
            ),
            ("GSI3SK".into(), s(&sort)),
        ])
    }

    /// The counter updates of a delta, each an `ADD` to one item.
    pub(super) fn counter_updates(&self, delta: &RollupDelta) -> Vec<(Item, i64)> {
        let month = |d: NaiveDate| d.format("%Y-%m").to_string();
        let mut updates = Vec::with_capacity(delta.counter_items());
        for ((event_type, hour), v) in &delta.hourly {
            updates.push((key(format!("COUNT#{event_type}"), sortable_time(*hour)), *v));
        }
        for ((day, event_type), v) in &delta.daily_types {
            updates.push((
                key(
                    format!("DAYTYPES#{}", month(*day)),
                    format!("{day}#{event_type}"),
                ),
                *v,
            ));
        }
        for (day, v) in &delta.dau {
            updates.push((key(format!("DAU#{}", month(*day)), day.to_string()), *v));
        }
        for ((window, cohort), v) in &delta.cohort_sizes {
            updates.push((
                key(format!("COHORT#{}", window.as_str()), cohort.to_string()),
                *v,
            ));
        }
        for ((window, cohort, period), v) in &delta.retention {
            updates.push((
                key(
                    format!("RETENTION#{}", window.as_str()),
                    format!("{cohort}#{period:05}"),
                ),
                *v,
            ));
        }
        updates
    }

    pub(super) fn sharded(&self, prefix: &str) -> Vec<String> {
        (0..self.shards).map(|i| format!("{prefix}#{i}")).collect()
    }
}

pub(super) fn parse_time(v: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Invalid(format!("stored time {v}: {e}")))
}

pub(super) fn parse_day(v: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|e| StoreError::Invalid(format!("stored day {v}: {e}")))
}

pub(super) fn parse_event(item: &Item) -> Result<StoredEvent, StoreError> {
    let id = get_s(item, "event_id")?;
    Ok(StoredEvent {
        event_id: Uuid::parse_str(id)
            .map_err(|e| StoreError::Invalid(format!("stored id {id}: {e}")))?,
        event_type: get_s(item, "event_type")?.to_string(),
        user_id: get_s(item, "user_id")?.to_string(),
        timestamp: parse_time(get_s(item, "ts")?)?,
        received_at: parse_time(get_s(item, "received_at")?)?,
        payload: get_s(item, "payload")?.to_string(),
    })
}

/// The months (`yyyy-mm`) that days in `[from, to]` fall in.
pub(super) fn months(from: NaiveDate, to: NaiveDate) -> Vec<String> {
    let mut months: Vec<String> = Vec::new();
    let mut day = from;
    while day <= to {
        let m = day.format("%Y-%m").to_string();
        if months.last() != Some(&m) {
            months.push(m);
        }
        day += Duration::days(1);
    }
    months
}
