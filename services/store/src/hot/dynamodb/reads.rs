//! Reading the table back: user states, paged queries over the indexes,
//! and the analytics reads of the counter items.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use uuid::Uuid;

use super::keys::{get_n, get_s, key, months, parse_day, parse_event, parse_time, s, Item};
use super::writes::{backoff, UNPROCESSED_ATTEMPTS};
use super::{build_err, classify, DynamoHotStore};
use crate::hot::{
    empty_cohorts, sortable_time, CohortRow, Cursor, EventFilter, EventPage, HotReader, StoredEvent,
};
use crate::rollup::{UserState, Window, ALL_TYPES};
use crate::StoreError;

/// Keys per `BatchGetItem`, DynamoDB's limit.
const BATCH_GET_KEYS: usize = 100;

impl DynamoHotStore {
    /// `BatchGetItem` over `keys`, retrying unprocessed keys; returns the found items.
    pub(super) async fn batch_get(
        &self,
        keys: Vec<Item>,
        projection: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .projection_expression(projection)
                    .build()
                    .map_err(build_err)?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| classify("BatchGetItem", e))?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    found.extend(items.iter().cloned());
                }
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if pending.is_some() {
                    attempt += 1;
                    if attempt >= UNPROCESSED_ATTEMPTS {
                        return Err(StoreError::Throttled(
                            "dynamodb BatchGetItem: keys left unprocessed".into(),
                        ));
                    }
                    metrics::counter!("store_write_retries_total", "store" => "dynamodb", "reason" => "unprocessed").increment(1);
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn read_users(
        &self,
        user_ids: &[String],
    ) -> Result<BTreeMap<String, UserState>, StoreError> {
        let keys = user_ids
            .iter()
            .map(|u| key(format!("USER#{u}"), "STATE"))
            .collect();
        let mut users = BTreeMap::new();
        for item in self.batch_get(keys, "PK, user_state").await? {
            let pk = get_s(&item, "PK")?;
            let state: UserState = serde_json::from_str(get_s(&item, "user_state")?)
                .map_err(|e| StoreError::Invalid(format!("stored state of {pk}: {e}")))?;
            // Exactly one prefix: a user id may itself begin with `USER#`.
            let user = pk.strip_prefix("USER#").unwrap_or(pk);
            users.insert(user.to_string(), state);
        }
        Ok(users)
    }

    async fn query_all(
        &self,
        index: Option<&str>,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        newest_first: bool,
        limit: Option<usize>,
        filter: Option<(&str, AttributeValue)>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(String::from))
                .key_condition_expression(condition)
                .scan_index_forward(!newest_first)
                .set_exclusive_start_key(start.take());
            for (name, value) in &values {
                q = q.expression_attribute_values(*name, value.clone());
            }
            if let Some((expression, value)) = &filter {
                q = q
                    .filter_expression(*expression)
                    .expression_attribute_values(":filter", value.clone());
            }
            if let Some(limit) = limit {
                q = q.limit(
                    i32::try_from(limit.saturating_sub(items.len()).max(1)).unwrap_or(i32::MAX),
                );
            }
            let out = q.send().await.map_err(|e| classify("Query", e))?;
            items.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if start.is_none() || limit.is_some_and(|l| items.len() >= l) {
                break;
            }
        }
        if let Some(limit) = limit {
            items.truncate(limit);
        }
        Ok(items)
    }

    /// Items of partition `pk` with sort keys in `[from, to]`, in key order.
    async fn range(&self, pk: String, from: String, to: String) -> Result<Vec<Item>, StoreError> {
        let values = vec![(":pk", s(pk)), (":from", s(from)), (":to", s(to))];
        self.query_all(
            None,
            "PK = :pk AND SK BETWEEN :from AND :to",
            values,
            false,
            None,
            None,
        )
        .await
    }

    /// Newest-first events of one index partition (all shards merged).
    async fn index_events(
        &self,
        index: &str,
        partitions: Vec<String>,
        limit: usize,
        after: Option<Cursor>,
        filter: Option<(&str, AttributeValue)>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::new();
        for partition in partitions {
            let (condition, mut values) = match after {
                Some(c) => (
                    format!("{index}PK = :pk AND {index}SK < :after"),
                    vec![(":after", s(c.sort_key()))],
                ),
                None => (format!("{index}PK = :pk"), vec![]),
            };
            values.push((":pk", s(partition)));
            let items = self
                .query_all(
                    Some(index),
                    &condition,
                    values,
                    true,
                    Some(limit),
                    filter.clone(),
                )
                .await?;
            for item in items {
                events.push(parse_event(&item)?);
            }
        }
        events.sort_by_key(|e| std::cmp::Reverse(e.cursor()));
        events.truncate(limit);
        Ok(events)
    }

    /// Days that have events, newest first, up to `before` (inclusive), from the `COUNT#` (all types) items.
    async fn days_with_events(
        &self,
        before: Option<DateTime<Utc>>,
    ) -> Result<Vec<NaiveDate>, StoreError> {
        let (condition, mut values) = match before {
            Some(t) => (
                "PK = :pk AND SK <= :t",
                vec![(":t", s(sortable_time(crate::rollup::hour_of(t))))],
            ),
            None => ("PK = :pk", vec![]),
        };
        values.push((":pk", s(format!("COUNT#{ALL_TYPES}"))));
        let hours = self
            .query_all(None, condition, values, true, None, None)
            .await?;
        let mut days = Vec::new();
        for item in hours {
            let day = parse_time(get_s(&item, "SK")?)?.date_naive();
            if days.last() != Some(&day) {
                days.push(day);
            }
        }
        Ok(days)
    }
}

#[async_trait]
impl HotReader for DynamoHotStore {
    async fn events(
        &self,
        filter: &EventFilter,
        limit: usize,
        after: Option<Cursor>,
    ) -> Result<EventPage, StoreError> {
        let events = match (&filter.user_id, &filter.event_type) {
            (Some(user), event_type) => {
                let type_filter = event_type.as_ref().map(|t| ("event_type = :filter", s(t)));
                self.index_events(
                    "GSI2",
                    vec![format!("USER#{user}")],
                    limit,
                    after,
                    type_filter,
                )
                .await?
            }
            (None, Some(event_type)) => {
                self.index_events(
                    "GSI1",
                    self.sharded(&format!("TYPE#{event_type}")),
                    limit,
                    after,
                    None,
                )
                .await?
            }
            (None, None) => {
                let mut events = Vec::new();
                let mut cursor = after;
                for day in self.days_with_events(after.map(|c| c.timestamp)).await? {
                    let want = limit - events.len();
                    let partitions = self.sharded(&format!("DAY#{day}"));
                    let page = self
                        .index_events("GSI3", partitions, want, cursor, None)
                        .await?;
                    cursor = page.last().map(StoredEvent::cursor).or(cursor);
                    events.extend(page);
                    if events.len() >= limit {
                        break;
                    }
                }
                events
            }
        };
        let next = if events.len() == limit {
            events.last().map(StoredEvent::cursor)
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("EVENT#{event_id}"), "EVENT")))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item().map(parse_event).transpose()
    }

    async fn hourly_counts(
        &self,
        event_type: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64)>, StoreError> {
        if to <= from {
            return Ok(Vec::new());
        }
        let items = self
            .range(
                format!("COUNT#{}", event_type.unwrap_or(ALL_TYPES)),
                sortable_time(from),
                sortable_time(to - Duration::microseconds(1)),
            )
            .await?;
        items
            .iter()
            .map(|i| Ok((parse_time(get_s(i, "SK")?)?, get_n(i, "count")?)))
            .filter(|r| !matches!(r, Ok((_, 0))))
            .collect()
    }

    async fn daily_type_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, i64)>, StoreError> {
        let mut rows = Vec::new();
        for month in months(from, to) {
            for item in self
                .range(
                    format!("DAYTYPES#{month}"),
                    format!("{from}#"),
                    format!("{to}#\u{10FFFF}"),
                )
                .await?
            {
                let sk = get_s(&item, "SK")?;
                let (day, event_type) = sk
                    .split_once('#')
                    .ok_or_else(|| StoreError::Invalid(format!("day-type key {sk}")))?;
                rows.push((
                    parse_day(day)?,
                    event_type.to_string(),
                    get_n(&item, "count")?,
                ));
            }
        }
        Ok(rows)
    }

    async fn daily_active_users(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, i64)>, StoreError> {
        let mut rows = Vec::new();
        for month in months(from, to) {
            for item in self
                .range(format!("DAU#{month}"), from.to_string(), to.to_string())
                .await?
            {
                rows.push((parse_day(get_s(&item, "SK")?)?, get_n(&item, "count")?));
            }
        }
        Ok(rows)
    }

    async fn cohorts(
        &self,
        window: Window,
        from: NaiveDate,
        count: usize,
    ) -> Result<Vec<CohortRow>, StoreError> {
        let Some((first, last, mut rows)) = empty_cohorts(window, from, count) else {
            return Ok(Vec::new());
        };
        for item in self
            .range(
                format!("COHORT#{}", window.as_str()),
                first.to_string(),
                last.to_string(),
            )
            .await?
        {
            if let Some(row) = rows.get_mut(&parse_day(get_s(&item, "SK")?)?) {
                row.size = get_n(&item, "count")?;
            }
        }
        for item in self
            .range(
                format!("RETENTION#{}", window.as_str()),
                format!("{first}#"),
                format!("{last}#99999"),
            )
            .await?
        {
            let sk = get_s(&item, "SK")?;
            let (cohort, period) = sk
                .split_once('#')
                .ok_or_else(|| StoreError::Invalid(format!("retention key {sk}")))?;
            let period: i64 = period
                .parse()
                .map_err(|_| StoreError::Invalid(format!("retention key {sk}")))?;
            let count = get_n(&item, "count")?;
            if let Some(row) = rows.get_mut(&parse_day(cohort)?) {
                if count != 0 {
                    row.retained.insert(period, count);
                }
            }
        }
        Ok(rows.into_values().collect())
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserState>, StoreError> {
        Ok(self
            .read_users(&[user_id.to_string()])
            .await?
            .remove(user_id))
    }
}
