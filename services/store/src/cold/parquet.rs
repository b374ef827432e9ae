//! Events as Parquet: one row per event, the payload as JSON text, times as
//! UTC microsecond timestamps, and the Kafka coordinates for lineage.
//!
//! Written with parquet's column writers rather than through Arrow: the
//! files are the same to their readers (Athena, DuckDB, Spark), and the
//! build skips Arrow's kernels, most of the archive's compile time.

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use uuid::Uuid;

use crate::hot::Delivered;
use crate::StoreError;

/// The file's schema: strings are UTF-8, times UTC microseconds.
const SCHEMA: &str = "message event {
    REQUIRED BYTE_ARRAY event_id (STRING);
    REQUIRED BYTE_ARRAY event_type (STRING);
    REQUIRED BYTE_ARRAY user_id (STRING);
    REQUIRED INT64 timestamp (TIMESTAMP(MICROS,true));
    REQUIRED INT64 received_at (TIMESTAMP(MICROS,true));
    OPTIONAL INT64 sent_at (TIMESTAMP(MICROS,true));
    OPTIONAL INT64 client_timestamp (TIMESTAMP(MICROS,true));
    REQUIRED BOOLEAN timestamp_clamped;
    REQUIRED BYTE_ARRAY payload (STRING);
    REQUIRED INT32 kafka_partition;
    REQUIRED INT64 kafka_offset;
}";

fn invalid(what: &str) -> impl Fn(parquet::errors::ParquetError) -> StoreError + '_ {
    move |e| StoreError::Invalid(format!("parquet {what}: {e}"))
}

/// Encodes `events` (of partition `partition`) as a Snappy-compressed Parquet file.
pub fn encode(events: &[&Delivered], partition: i32) -> Result<Vec<u8>, StoreError> {
    let encoding = invalid("encoding");
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(&encoding)?);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer =
        SerializedFileWriter::new(&mut out, schema, Arc::new(props)).map_err(&encoding)?;
    let mut rows = writer.next_row_group().map_err(&encoding)?;
    let text = |f: fn(&Delivered) -> &str| -> Vec<ByteArray> {
        events.iter().map(|d| ByteArray::from(f(d))).collect()
    };
    let ids: Vec<ByteArray> = events
        .iter()
        .map(|d| ByteArray::from(d.event.event_id.to_string().into_bytes()))
        .collect();
    let micros = |f: fn(&Delivered) -> Option<i64>| events.iter().map(|d| f(d)).collect();
    column::<ByteArrayType>(&mut rows, &ids)?;
    column::<ByteArrayType>(&mut rows, &text(|d| &d.event.event_type))?;
    column::<ByteArrayType>(&mut rows, &text(|d| &d.event.user_id))?;
    required::<Int64Type>(
        &mut rows,
        micros(|d| Some(d.event.timestamp.timestamp_micros())),
    )?;
    required::<Int64Type>(
        &mut rows,
        micros(|d| Some(d.event.received_at.timestamp_micros())),
    )?;
    optional::<Int64Type>(
        &mut rows,
        micros(|d| Some(d.event.sent_at?.timestamp_micros())),
    )?;
    let client = |d: &Delivered| Some(d.event.client_timestamp?.timestamp_micros());
    optional::<Int64Type>(&mut rows, micros(client))?;
    let clamped: Vec<bool> = events.iter().map(|d| d.event.timestamp_clamped).collect();
    column::<BoolType>(&mut rows, &clamped)?;
    column::<ByteArrayType>(&mut rows, &text(|d| d.event.payload.get()))?;
    column::<Int32Type>(&mut rows, &vec![partition; events.len()])?;
    let offsets: Vec<i64> = events.iter().map(|d| d.offset).collect();
    column::<Int64Type>(&mut rows, &offsets)?;
    rows.close().map_err(&encoding)?;
    writer.close().map_err(&encoding)?;
    Ok(out)
}

/// Writes the next column of `rows`, every value present.
fn column<T: DataType>(
    rows: &mut SerializedRowGroupWriter<'_, &mut Vec<u8>>,
    values: &[T::T],
) -> Result<(), StoreError> {
    let encoding = invalid("encoding");
    let mut column = rows.next_column().map_err(&encoding)?.ok_or_else(|| {
        StoreError::Invalid("parquet encoding: more columns than the schema".into())
    })?;
    column
        .typed::<T>()
        .write_batch(values, None, None)
        .map_err(&encoding)?;
    column.close().map_err(&encoding)
}

/// Writes the next column, a required one (every value is `Some`).
fn required<T: DataType>(
    rows: &mut SerializedRowGroupWriter<'_, &mut Vec<u8>>,
    values: Vec<Option<T::T>>,
) -> Result<(), StoreError> {
    let values: Vec<T::T> = values.into_iter().flatten().collect();
    column::<T>(rows, &values)
}

/// Writes the next column, an optional one: the present values, and a
/// definition level per row saying whether it has one.
fn optional<T: DataType>(
    rows: &mut SerializedRowGroupWriter<'_, &mut Vec<u8>>,
    values: Vec<Option<T::T>>,
) -> Result<(), StoreError> {
    let encoding = invalid("encoding");
    let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
    let present: Vec<T::T> = values.into_iter().flatten().collect();
    let mut column = rows.next_column().map_err(&encoding)?.ok_or_else(|| {
        StoreError::Invalid("parquet encoding: more columns than the schema".into())
    })?;
    column
        .typed::<T>()
        .write_batch(&present, Some(&levels), None)
        .map_err(&encoding)?;
    column.close().map_err(&encoding)
}

/// The event ids in a Parquet file written by [`encode`].
pub fn event_ids(file: Vec<u8>) -> Result<Vec<Uuid>, StoreError> {
    let decoding = invalid("decoding");
    let reader = SerializedFileReader::new(Bytes::from(file)).map_err(&decoding)?;
    let mut ids = Vec::new();
    for row in reader.get_row_iter(None).map_err(&decoding)? {
        let row = row.map_err(&decoding)?;
        let id = row.get_column_iter().find_map(|(name, field)| match field {
            Field::Str(id) if name == "event_id" => Some(id),
            _ => None,
        });
        let id =
            id.ok_or_else(|| StoreError::Invalid("parquet file has no event_id column".into()))?;
        ids.push(
            Uuid::parse_str(id)
                .map_err(|e| StoreError::Invalid(format!("parquet decoding: {e}")))?,
        );
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use event_common::event::Event;
    use parquet::file::reader::FileReader;

    use super::*;

    fn delivered(offset: i64, sent: bool) -> Delivered {
        let at = Utc
            .with_ymd_and_hms(2026, 3, 2, 10, 0, 0)
            .single()
            .expect("a time");
        let event = Event {
            event_id: Uuid::now_v7(),
            event_type: "signup".into(),
            user_id: "u-1".into(),
            timestamp: at,
            client_timestamp: Some(at),
            sent_at: sent.then_some(at),
            received_at: at,
            timestamp_clamped: false,
            payload: serde_json::value::RawValue::from_string(r#"{"plan":"pro"}"#.into())
                .expect("valid JSON"),
        };
        Delivered { offset, event }
    }

    /// The schema is what readers of the archive query by, with its nulls.
    #[test]
    fn a_file_has_the_archive_schema_and_every_event_once() -> Result<(), StoreError> {
        let events = [delivered(7, true), delivered(8, false)];
        let refs: Vec<&Delivered> = events.iter().collect();
        let file = encode(&refs, 3)?;
        let reader =
            SerializedFileReader::new(Bytes::from(file.clone())).map_err(invalid("decoding"))?;
        let metadata = reader.metadata();
        assert_eq!(metadata.file_metadata().num_rows(), 2);
        let names: Vec<&str> = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name())
            .collect();
        assert_eq!(
            names,
            [
                "event_id",
                "event_type",
                "user_id",
                "timestamp",
                "received_at",
                "sent_at",
                "client_timestamp",
                "timestamp_clamped",
                "payload",
                "kafka_partition",
                "kafka_offset"
            ]
        );
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .map_err(invalid("decoding"))?
            .map(|r| r.map(|r| r.to_string()))
            .collect::<Result<_, _>>()
            .map_err(invalid("decoding"))?;
        assert!(
            rows[0].contains("kafka_partition: 3") && rows[0].contains("kafka_offset: 7"),
            "{}",
            rows[0]
        );
        assert!(rows[1].contains("sent_at: null"), "{}", rows[1]);
        assert!(!rows[0].contains("sent_at: null"), "{}", rows[0]);
        let ids = event_ids(file)?;
        assert_eq!(
            ids,
            vec![events[0].event.event_id, events[1].event.event_id]
        );
        Ok(())
    }
}
