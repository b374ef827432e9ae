//! The schema's scalars, with errors that show the expected form, and the
//! opaque page cursor.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{NaiveDate, SecondsFormat, Utc};
use event_store::hot::Cursor;

/// An instant: RFC 3339, answered in UTC (`2026-11-21T10:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime(pub chrono::DateTime<Utc>);

fn parse_date_time(value: &Value) -> Option<chrono::DateTime<Utc>> {
    match value {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

/// An instant, RFC 3339 (for example `2026-11-21T10:00:00Z`); answers are in UTC.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_date_time(&value).map(DateTime).ok_or_else(|| {
            InputValueError::custom(format!(
                "expected an RFC 3339 date-time such as 2026-11-21T10:00:00Z, got {value}"
            ))
        })
    }

    fn is_valid(value: &Value) -> bool {
        parse_date_time(value).is_some()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub NaiveDate);

fn parse_date(value: &Value) -> Option<NaiveDate> {
    match value {
        Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
        _ => None,
    }
}

/// A UTC calendar day, `YYYY-MM-DD`.
#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        parse_date(&value).map(Date).ok_or_else(|| {
            InputValueError::custom(format!(
                "expected a day as YYYY-MM-DD such as 2026-11-21, got {value}"
            ))
        })
    }

    fn is_valid(value: &Value) -> bool {
        parse_date(value).is_some()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// The opaque form of a page position given to clients.
pub fn encode_cursor(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(cursor.sort_key())
}

/// Reads a cursor given by [`encode_cursor`]; `None` when it is not one.
pub fn decode_cursor(text: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    Cursor::from_sort_key(std::str::from_utf8(&bytes).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            timestamp: chrono::DateTime::from_timestamp(1_763_700_000, 123_000).expect("valid"),
            event_id: uuid::Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)), Some(cursor));
        for bad in [
            "",
            "not base64!",
            "bm90IGEgY3Vyc29y",
            "MjAyNiNub3QtYS11dWlk",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn date_times_are_answered_in_utc_with_z() {
        let parsed =
            <DateTime as ScalarType>::parse(Value::String("2026-11-21T12:30:00+02:00".into()))
                .expect("valid");
        assert_eq!(
            parsed.to_value(),
            Value::String("2026-11-21T10:30:00Z".into())
        );
        assert!(<DateTime as ScalarType>::parse(Value::String("yesterday".into())).is_err());
        assert!(<Date as ScalarType>::parse(Value::String("2026-02-30".into())).is_err());
    }
}
