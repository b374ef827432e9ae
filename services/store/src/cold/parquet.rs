//! Events as Parquet: one row per event, the payload as JSON text, times as
//! UTC microsecond timestamps, and the Kafka coordinates for lineage.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use uuid::Uuid;

use crate::hot::Delivered;
use crate::StoreError;

fn schema() -> Arc<Schema> {
    let time = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("timestamp", time(), false),
        Field::new("received_at", time(), false),
        Field::new("sent_at", time(), true),
        Field::new("client_timestamp", time(), true),
        Field::new("timestamp_clamped", DataType::Boolean, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
    ]))
}

/// Encodes `events` (of partition `partition`) as a Snappy-compressed Parquet file.
pub fn encode(events: &[&Delivered], partition: i32) -> Result<Vec<u8>, StoreError> {
    let schema = schema();
    let time = || TimestampMicrosecondBuilder::with_capacity(events.len()).with_timezone("UTC");
    let (mut id, mut kind, mut user, mut payload) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut ts, mut received, mut sent, mut client) = (time(), time(), time(), time());
    let mut clamped = BooleanBuilder::with_capacity(events.len());
    let mut partitions = Int32Builder::with_capacity(events.len());
    let mut offsets = Int64Builder::with_capacity(events.len());
    for d in events {
        let e = &d.event;
        id.append_value(e.event_id.to_string());
        kind.append_value(&e.event_type);
        user.append_value(&e.user_id);
        ts.append_value(e.timestamp.timestamp_micros());
        received.append_value(e.received_at.timestamp_micros());
        sent.append_option(e.sent_at.map(|t| t.timestamp_micros()));
        client.append_option(e.client_timestamp.map(|t| t.timestamp_micros()));
        clamped.append_value(e.timestamp_clamped);
        payload.append_value(e.payload.get());
        partitions.append_value(partition);
        offsets.append_value(d.offset);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(kind.finish()),
        Arc::new(user.finish()),
        Arc::new(ts.finish()),
        Arc::new(received.finish()),
        Arc::new(sent.finish()),
        Arc::new(client.finish()),
        Arc::new(clamped.finish()),
        Arc::new(payload.finish()),
        Arc::new(partitions.finish()),
        Arc::new(offsets.finish()),
    ];
    let invalid = |e: &dyn std::fmt::Display| StoreError::Invalid(format!("parquet encoding: {e}"));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| invalid(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| invalid(&e))?;
    writer.write(&batch).map_err(|e| invalid(&e))?;
    writer.close().map_err(|e| invalid(&e))?;
    Ok(out)
}

/// The event ids in a Parquet file written by [`encode`].
pub fn event_ids(file: Vec<u8>) -> Result<Vec<Uuid>, StoreError> {
    let invalid = |e: &dyn std::fmt::Display| StoreError::Invalid(format!("parquet decoding: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file))
        .map_err(|e| invalid(&e))?
        .build()
        .map_err(|e| invalid(&e))?;
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| invalid(&e))?;
        let column = batch
            .column_by_name("event_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| StoreError::Invalid("parquet file has no event_id column".into()))?;
        for i in 0..column.len() {
            ids.push(Uuid::parse_str(column.value(i)).map_err(|e| invalid(&e))?);
        }
    }
    Ok(ids)
}
