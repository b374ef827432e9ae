//! Applying a batch: the fenced counter transactions, the idempotent batch
//! writes of users and events, and retries of what DynamoDB left unprocessed.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{PutRequest, TransactWriteItem, Update, WriteRequest};
use uuid::Uuid;

use super::keys::{get_n, get_s, key, n, s, watermark_key, Item};
use super::{build_err, classify, DynamoHotStore};
use crate::hot::{batch_keys, plan_batch, ApplyOutcome, Batch, BatchPlan, HotWriter};
use crate::rollup::UserState;
use crate::StoreError;

/// Most actions in one `TransactWriteItems`; one is the watermark.
const MAX_TX_COUNTERS: usize = 99;
/// Items per `BatchWriteItem`, DynamoDB's limit.
const BATCH_WRITE_ITEMS: usize = 25;
/// Attempts at unprocessed items before giving up as throttled.
pub(super) const UNPROCESSED_ATTEMPTS: u32 = 8;

/// Sleeps before retry `attempt`: exponential with jitter.
pub(super) async fn backoff(attempt: u32) {
    let base = 50u64 << attempt.min(6);
    tokio::time::sleep(StdDuration::from_millis(base + fastrand::u64(..=base))).await;
}

/// The watermark item's state: last applied offset and chunks of the next
/// event already in (see the module docs of [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fence {
    last_offset: Option<i64>,
    step: i64,
}

impl DynamoHotStore {
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

    /// Applies counter updates fenced on the watermark (see the module docs of [`super`]).
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
}

#[async_trait]
impl HotWriter for DynamoHotStore {
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
}
