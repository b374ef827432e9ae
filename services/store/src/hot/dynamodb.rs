//! The DynamoDB adapter: the `EventsHot` single table.
//!
//! # Key schema
//!
//! Table keys `PK` (hash) and `SK` (range), both strings; three global
//! secondary indexes, all projecting every attribute; TTL on `expires_at`.
//!
//! | item | PK | SK | other keys |
//! |---|---|---|---|
//! | event | `EVENT#<event_id>` | `EVENT` | `GSI1PK = TYPE#<type>#<shard>`, `GSI2PK = USER#<user>`, `GSI3PK = DAY#<yyyy-mm-dd>#<shard>`; every `GSI*SK = <ts>#<event_id>` |
//! | events per hour | `COUNT#<type>` (`COUNT#` for all types) | `<hour, RFC 3339>` | |
//! | events per day and type | `DAYTYPES#<yyyy-mm>` | `<yyyy-mm-dd>#<type>` | |
//! | daily active users | `DAU#<yyyy-mm>` | `<yyyy-mm-dd>` | |
//! | cohort size | `COHORT#<DAILY or WEEKLY>` | `<cohort start>` | |
//! | retained users | `RETENTION#<DAILY or WEEKLY>` | `<cohort start>#<period, 5 digits>` | |
//! | user state | `USER#<user>` | `STATE` | |
//! | partition watermark | `WATERMARK#<Kafka cluster id>#<topic>` | `<partition>` | |
//!
//! # Access patterns
//!
//! - one event: `GetItem EVENT#<id>`; "is it stored?" for a batch: `BatchGetItem`.
//! - latest events: `Query GSI3` per day (newest day first, days found from
//!   the `COUNT#` (all types) items), `SK < cursor`, newest first;
//! - by type: `Query GSI1` on each shard, merged; by user: `Query GSI2`;
//! - counts over a range: `Query COUNT#<type>` with `SK BETWEEN`;
//! - top events and DAU: `Query DAYTYPES#<month>` / `DAU#<month>` per month;
//! - retention: `Query COHORT#<window>` and `RETENTION#<window>` ranges.
//!
//! Hot keys: events of one type, or of one day, share an index partition;
//! `write_shards > 1` spreads them over `<key>#0..n` by event id, and
//! readers merge the shards. Counters are updated once per batch, not per
//! event, so their write rate is the batch rate.
//!
//! # Writing a batch
//!
//! As in the module docs of [`crate::hot`]; the atomic step is one
//! `TransactWriteItems` with every counter `ADD` and the watermark update
//! conditioned on `last_offset = W AND step = 0`. A batch whose counters do
//! not fit one transaction (100 actions) is split in halves by offset, each
//! half fenced on its own; a single event that alone needs more is written in
//! several transactions, fenced by `step` (how many of its chunks are in).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, PutRequest, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use uuid::Uuid;

use super::{
    batch_keys, empty_cohorts, plan_batch, sortable_time, ApplyOutcome, Batch, BatchPlan,
    CohortRow, Cursor, EventFilter, EventPage, HotStore, StoredEvent,
};
use crate::rollup::{RollupDelta, UserState, Window, ALL_TYPES};
use crate::StoreError;

/// Most actions in one `TransactWriteItems`; one is the watermark.
const MAX_TX_COUNTERS: usize = 99;
/// Items per `BatchWriteItem` and keys per `BatchGetItem`, DynamoDB's limits.
const BATCH_WRITE_ITEMS: usize = 25;
const BATCH_GET_KEYS: usize = 100;
/// Attempts at unprocessed items before giving up as throttled.
const UNPROCESSED_ATTEMPTS: u32 = 8;

/// The DynamoDB hot store.
#[derive(Debug, Clone)]
pub struct DynamoHotStore {
    client: Client,
    table: String,
    ttl: Duration,
    shards: u32,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("PK".to_string(), s(pk)), ("SK".to_string(), s(sk))])
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Invalid(format!("item without string attribute {name}")))
}

fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Invalid(format!("item without number attribute {name}")))
}

/// Maps an SDK error to a [`StoreError`] that says what AWS said.
fn classify<E, R>(op: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().unwrap_or("").to_string();
    let text = format!("dynamodb {op}: {}", DisplayErrorContext(&err));
    match code.as_str() {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded" => StoreError::Throttled(text),
        "TransactionCanceledException" if text.contains("ConditionalCheckFailed") => {
            StoreError::Conflict(text)
        }
        "TransactionCanceledException" if text.contains("Throttl") => StoreError::Throttled(text),
        "AccessDeniedException" | "UnrecognizedClientException" => StoreError::Denied(text),
        _ => StoreError::Unavailable(text),
    }
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("dynamodb request: {e}"))
}

/// The key of a partition's watermark item.
fn watermark_key(cluster: &str, topic: &str, partition: i32) -> Item {
    key(
        format!("WATERMARK#{cluster}#{topic}"),
        partition.to_string(),
    )
}

async fn backoff(attempt: u32) {
    let base = 50u64 << attempt.min(6);
    tokio::time::sleep(StdDuration::from_millis(base + fastrand::u64(..=base))).await;
}

/// The watermark item's state: last applied offset and chunks of the next
/// event already in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fence {
    last_offset: Option<i64>,
    step: i64,
}

impl DynamoHotStore {
    /// A store on `table`; event items expire `ttl_days` after their
    /// timestamp; type and day index keys are spread over `write_shards`.
    pub fn new(config: &SdkConfig, table: &str, ttl_days: u32, write_shards: u32) -> Self {
        Self {
            client: Client::new(config),
            table: table.to_string(),
            ttl: Duration::days(i64::from(ttl_days)),
            shards: write_shards.max(1),
        }
    }

    /// The table it writes to.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The SDK client, for tests and the provisioner.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `CreateTable` request for `table` with its keys and indexes and
    /// on-demand billing, not yet sent; [`Self::create_table`] and the
    /// provisioner both start from it, so the table is defined once.
    pub fn create_table_request(
        client: &Client,
        table: &str,
    ) -> Result<CreateTableFluentBuilder, StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_err)
        };
        let key_element = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build_err)
        };
        let mut request = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest);
        for name in [
            "PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "GSI3PK", "GSI3SK",
        ] {
            request = request.attribute_definitions(attr(name)?);
        }
        request = request
            .key_schema(key_element("PK", KeyType::Hash)?)
            .key_schema(key_element("SK", KeyType::Range)?);
        for index in ["GSI1", "GSI2", "GSI3"] {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index)
                    .key_schema(key_element(&format!("{index}PK"), KeyType::Hash)?)
                    .key_schema(key_element(&format!("{index}SK"), KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(build_err)?,
            );
        }
        Ok(request)
    }

    /// Creates the table with its keys, indexes and TTL (on-demand billing),
    /// and waits until it is active. The provisioner uses the same definition.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        Self::create_table_request(client, table)?
            .send()
            .await
            .map_err(|e| classify("CreateTable", e))?;
        for attempt in 0..60 {
            let described = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| classify("DescribeTable", e))?;
            let active = described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| *s == aws_sdk_dynamodb::types::TableStatus::Active);
            if active {
                break;
            }
            backoff(attempt.min(4)).await;
        }
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .map_err(|e| classify("UpdateTimeToLive", e))?;
        Ok(())
    }

    fn shard_of(&self, id: Uuid) -> u32 {
        (id.as_u128() % u128::from(self.shards)) as u32
    }

    fn event_item(&self, event: &event_common::event::Event) -> Item {
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

    async fn read_fence(
        &self,
        cluster: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Fence, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(watermark_key(cluster, topic, partition)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(match out.item() {
            Some(item) => Fence {
                last_offset: Some(get_n(item, "last_offset")?),
                step: get_n(item, "step").unwrap_or(0),
            },
            None => Fence {
                last_offset: None,
                step: 0,
            },
        })
    }

    /// `BatchGetItem` over `keys`, retrying unprocessed keys; returns the found items.
    async fn batch_get(&self, keys: Vec<Item>, projection: &str) -> Result<Vec<Item>, StoreError> {
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

    /// `BatchWriteItem` puts of `items`, retrying unprocessed items.
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH_WRITE_ITEMS) {
            let mut pending = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(build_err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| classify("BatchWriteItem", e))?;
                metrics::counter!("dynamodb_write_requests_total", "op" => "BatchWriteItem")
                    .increment(1);
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt >= UNPROCESSED_ATTEMPTS {
                        return Err(StoreError::Throttled(
                            "dynamodb BatchWriteItem: items left unprocessed".into(),
                        ));
                    }
                    metrics::counter!("store_write_retries_total", "store" => "dynamodb", "reason" => "unprocessed").increment(1);
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
    }

    async fn read_users(
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

    /// The counter updates of a delta, each an `ADD` to one item.
    fn counter_updates(&self, delta: &RollupDelta) -> Vec<(Item, i64)> {
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

    /// Applies counter updates fenced on the watermark (see the module docs).
    async fn write_counters(
        &self,
        batch: &Batch,
        last_offset: i64,
        fence: Fence,
        updates: Vec<(Item, i64)>,
    ) -> Result<Fence, StoreError> {
        let chunks: Vec<&[(Item, i64)]> = updates.chunks(MAX_TX_COUNTERS).collect();
        let mut current = fence;
        let skip = usize::try_from(fence.step).unwrap_or(0);
        for (i, chunk) in chunks.iter().enumerate().skip(skip) {
            let mut actions = Vec::with_capacity(chunk.len() + 1);
            for (item_key, v) in *chunk {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(item_key.clone()))
                    .update_expression("ADD #c :v")
                    .expression_attribute_names("#c", "count")
                    .expression_attribute_values(":v", n(*v))
                    .build()
                    .map_err(build_err)?;
                actions.push(TransactWriteItem::builder().update(update).build());
            }
            let last_chunk = i + 1 == chunks.len();
            let next = if last_chunk {
                Fence {
                    last_offset: Some(last_offset),
                    step: 0,
                }
            } else {
                Fence {
                    last_offset: current.last_offset,
                    step: i as i64 + 1,
                }
            };
            let watermark = Update::builder()
                .table_name(&self.table)
                .set_key(Some(watermark_key(
                    &batch.cluster,
                    &batch.topic,
                    batch.partition,
                )))
                .update_expression("SET last_offset = :next, step = :next_step")
                .expression_attribute_values(":next", n(next.last_offset.unwrap_or(-1)))
                .expression_attribute_values(":next_step", n(next.step));
            let watermark = match current.last_offset {
                Some(w) => watermark
                    .condition_expression("last_offset = :w AND step = :step")
                    .expression_attribute_values(":w", n(w))
                    .expression_attribute_values(":step", n(current.step)),
                None => watermark.condition_expression("attribute_not_exists(last_offset)"),
            };
            actions.push(
                TransactWriteItem::builder()
                    .update(watermark.build().map_err(build_err)?)
                    .build(),
            );
            self.client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await
                .map_err(|e| classify("TransactWriteItems", e))?;
            metrics::counter!("dynamodb_write_requests_total", "op" => "TransactWriteItems")
                .increment(1);
            current = next;
        }
        Ok(current)
    }

    /// Writes one planned part of a batch; returns the new fence.
    async fn write_part(
        &self,
        batch: &Batch,
        last_offset: i64,
        fence: Fence,
        plan: &BatchPlan<'_>,
    ) -> Result<Fence, StoreError> {
        let updates = self.counter_updates(&plan.delta);
        let fence = if updates.is_empty() {
            fence
        } else {
            self.write_counters(batch, last_offset, fence, updates)
                .await?
        };
        let users = plan
            .delta
            .users
            .iter()
            .map(|(user, state)| {
                let mut item = key(format!("USER#{user}"), "STATE");
                let state =
                    serde_json::to_string(state).map_err(|e| StoreError::Invalid(e.to_string()))?;
                item.insert("user_state".into(), s(state));
                Ok(item)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_put(users).await?;
        self.batch_put(
            plan.new_events
                .iter()
                .map(|d| self.event_item(&d.event))
                .collect(),
        )
        .await?;
        Ok(fence)
    }

    /// Plans `part` against what is known; splits it while its counters do
    /// not fit one transaction.
    async fn apply_part(
        &self,
        part: &Batch,
        fence: Fence,
        stored: &mut HashSet<Uuid>,
        users: &mut BTreeMap<String, UserState>,
    ) -> Result<(Fence, ApplyOutcome), StoreError> {
        let plan = plan_batch(part, fence.last_offset, stored, users);
        if plan.delta.counter_items() > MAX_TX_COUNTERS && part.events.len() > 1 {
            let mid = part.events.len() / 2;
            let split = part.events[mid].offset;
            let first = Batch {
                last_offset: split - 1,
                events: part.events[..mid].to_vec(),
                ..part.clone()
            };
            let second = Batch {
                first_offset: split,
                events: part.events[mid..].to_vec(),
                ..part.clone()
            };
            let (fence, a) = Box::pin(self.apply_part(&first, fence, stored, users)).await?;
            let (fence, b) = Box::pin(self.apply_part(&second, fence, stored, users)).await?;
            let outcome = ApplyOutcome {
                counted: a.counted + b.counted,
                replayed: a.replayed + b.replayed,
                duplicates: a.duplicates + b.duplicates,
            };
            return Ok((fence, outcome));
        }
        let fence = self
            .write_part(part, part.last_offset, fence, &plan)
            .await?;
        stored.extend(plan.new_events.iter().map(|d| d.event.event_id));
        users.extend(plan.delta.users.clone());
        Ok((fence, plan.outcome))
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

    fn sharded(&self, prefix: &str) -> Vec<String> {
        (0..self.shards).map(|i| format!("{prefix}#{i}")).collect()
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

fn parse_time(v: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Invalid(format!("stored time {v}: {e}")))
}

fn parse_day(v: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|e| StoreError::Invalid(format!("stored day {v}: {e}")))
}

fn parse_event(item: &Item) -> Result<StoredEvent, StoreError> {
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
fn months(from: NaiveDate, to: NaiveDate) -> Vec<String> {
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

#[async_trait]
impl HotStore for DynamoHotStore {
    async fn apply(&self, batch: &Batch) -> Result<ApplyOutcome, StoreError> {
        let fence = self
            .read_fence(&batch.cluster, &batch.topic, batch.partition)
            .await?;
        let (ids, user_ids) = batch_keys(batch);
        let keys = ids
            .iter()
            .map(|id| key(format!("EVENT#{id}"), "EVENT"))
            .collect();
        let mut stored = HashSet::new();
        for item in self.batch_get(keys, "event_id").await? {
            let id = get_s(&item, "event_id")?;
            stored.insert(
                Uuid::parse_str(id)
                    .map_err(|e| StoreError::Invalid(format!("stored id {id}: {e}")))?,
            );
        }
        let mut users = self.read_users(&user_ids).await?;
        let (_, outcome) = self
            .apply_part(batch, fence, &mut stored, &mut users)
            .await?;
        Ok(outcome)
    }

    async fn watermark(
        &self,
        cluster: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .read_fence(cluster, topic, partition)
            .await?
            .last_offset
            .filter(|w| *w >= 0))
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("DescribeTable", e))
    }

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
