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

mod keys;
mod reads;
mod writes;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::Duration;

use super::Reachable;
use crate::StoreError;
use writes::backoff;

/// The DynamoDB hot store.
#[derive(Debug, Clone)]
pub struct DynamoHotStore {
    client: Client,
    table: String,
    ttl: Duration,
    shards: u32,
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
}

#[async_trait]
impl Reachable for DynamoHotStore {
    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("DescribeTable", e))
    }
}
