//! The event contract: what a client may send, what goes on the topic, and the
//! validation between the two. One definition, used by every service.
//!
//! The payload is kept as the exact bytes the client sent (`RawValue`): the
//! message on the topic carries it byte-for-byte, and nothing re-serialises it.

use chrono::{DateTime, Duration, Utc};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use uuid::Uuid;

use crate::problem::{FieldError, Problem};

/// The largest nesting depth of a whole request document; deeper input is
/// refused before serde recurses into it.
pub const MAX_DOCUMENT_DEPTH: usize = 64;

/// Size and shape limits of the ingestion API (defaults as in DESIGN.md).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest serialized event (the client's JSON object), in bytes.
    pub max_event_bytes: usize,
    /// Largest request body after decompression, in bytes.
    pub max_body_bytes: usize,
    /// Most events in one `{"events": [...]}` batch.
    pub max_batch_events: usize,
    /// Deepest nesting allowed inside `payload`.
    pub max_payload_depth: usize,
    /// How far past `received_at` a (corrected) timestamp may be before it is
    /// clamped to `received_at` and flagged.
    pub max_future_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 32 * 1024,
            max_body_bytes: 1024 * 1024,
            max_batch_events: 500,
            max_payload_depth: 32,
            max_future_skew: Duration::minutes(5),
        }
    }
}

/// An accepted event, as published on `events.raw` and read by the processor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Idempotency key end to end: client-supplied or generated (UUIDv7).
    pub event_id: Uuid,
    /// What happened, 1..=128 characters.
    pub event_type: String,
    /// Who it happened to, 1..=256 characters; the Kafka key.
    pub user_id: String,
    /// When it happened: the client's time, corrected for clock skew and
    /// clamped if far in the future; `received_at` when the client sent none.
    pub timestamp: DateTime<Utc>,
    /// The client's timestamp as sent, present only when `timestamp` differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<DateTime<Utc>>,
    /// The client's clock when it sent the request, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// When ingest received the request.
    pub received_at: DateTime<Utc>,
    /// True when the timestamp was in the far future and was clamped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timestamp_clamped: bool,
    /// The client's JSON object, byte-for-byte.
    pub payload: Box<RawValue>,
}

impl Event {
    /// Checks a decoded event against the contract, as the processor must
    /// for messages that did not come through ingest.
    pub fn check(&self) -> Result<(), String> {
        for (field, value, max_chars) in [
            ("event_type", &self.event_type, 128),
            ("user_id", &self.user_id, 256),
        ] {
            if let Some(reason) = text_problem(value, max_chars) {
                return Err(format!("{field}: {reason}"));
            }
        }
        if !self.payload.get().trim_start().starts_with('{') {
            return Err("payload: must be a JSON object".into());
        }
        for (field, time) in [
            ("timestamp", self.timestamp),
            ("received_at", self.received_at),
        ] {
            if let Some(reason) = time_problem(time) {
                return Err(format!("{field}: {reason}"));
            }
        }
        Ok(())
    }
}

/// The earliest event time accepted: every store keys events by their
/// RFC 3339 time with a four-digit year and counts TTLs in Unix seconds,
/// so times before the Unix epoch (or before year 0, which skew
/// correction can produce) are refused at ingest and dead-lettered by the
/// processor. The latest is bounded by the future-skew clamp at ingest and
/// by [`latest`] in the processor.
pub const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// The latest event time accepted anywhere: 2200-01-01T00:00:00Z, far past
/// any clock. It bounds the days a user can be active on (84,006 since
/// 1970), and with them the size of the user's stored state.
pub fn latest() -> DateTime<Utc> {
    DateTime::from_timestamp(7_258_118_400, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What is wrong with an event time, if anything.
fn time_problem(time: DateTime<Utc>) -> Option<String> {
    if time < EARLIEST {
        Some(format!(
            "must be at or after {} (got {})",
            EARLIEST.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
    } else if time >= latest() {
        Some("must be before 2200-01-01T00:00:00Z".to_string())
    } else {
        None
    }
}

/// What is wrong with a required text field, if anything.
fn text_problem(value: &str, max_chars: usize) -> Option<String> {
    let chars = value.chars().count();
    if value.trim().is_empty() {
        Some("must not be empty".into())
    } else if chars > max_chars {
        Some(format!(
            "must be at most {max_chars} characters (got {chars})"
        ))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

/// Why a request body was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub enum ContractError {
    /// 400: not JSON, not UTF-8, or nested too deep to read.
    Malformed(FieldError),
    /// 413: a body, batch or event over its limit.
    TooLarge(FieldError),
    /// 422: JSON of the wrong shape or with invalid fields.
    Invalid(Vec<FieldError>),
}

impl From<ContractError> for Problem {
    fn from(err: ContractError) -> Self {
        match err {
            ContractError::Malformed(e) => Problem::bad_request("malformed request body", vec![e]),
            ContractError::TooLarge(e) => Problem::too_large(vec![e]),
            ContractError::Invalid(errors) => Problem::unprocessable(errors),
        }
    }
}

/// Most field errors reported for one request; the rest are summarised.
const MAX_REPORTED_ERRORS: usize = 50;

/// Parses and validates a request body (already decompressed) into events.
///
/// All or nothing: one invalid event refuses the whole request, so a client
/// never has to work out which part of a batch was kept.
pub fn parse_request(
    body: &[u8],
    limits: &Limits,
    received_at: DateTime<Utc>,
    mut new_id: impl FnMut() -> Uuid,
) -> Result<Vec<Event>, ContractError> {
    if body.len() > limits.max_body_bytes {
        return Err(ContractError::TooLarge(FieldError::new(
            "body",
            None,
            format!(
                "body of {} bytes exceeds the limit of {} bytes",
                body.len(),
                limits.max_body_bytes
            ),
        )));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        ContractError::Malformed(FieldError::new(
            "body",
            None,
            format!(
                "body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        ))
    })?;
    if json_depth(text.as_bytes()) > MAX_DOCUMENT_DEPTH {
        return Err(ContractError::Malformed(FieldError::new(
            "body",
            None,
            format!("JSON nested deeper than {MAX_DOCUMENT_DEPTH} levels"),
        )));
    }
    let top: RawObject = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ContractError::Invalid(vec![FieldError::new(
            "body",
            None,
            "expected a JSON object: one event, or {\"events\": [...]}".to_string(),
        )]),
        _ => ContractError::Malformed(FieldError::new(
            "body",
            None,
            format!("malformed JSON: {e}"),
        )),
    })?;

    let batch = top.0.iter().any(|(k, _)| k == "events");
    let items: Vec<(Option<usize>, RawObject)> = if batch {
        parse_batch(top, limits)?
    } else {
        if text.len() > limits.max_event_bytes {
            return Err(ContractError::TooLarge(FieldError::new(
                "body",
                None,
                format!(
                    "event of {} bytes exceeds the limit of {} bytes",
                    text.len(),
                    limits.max_event_bytes
                ),
            )));
        }
        vec![(None, top)]
    };

    let mut errors = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    for (index, object) in items {
        match validate_event(object, index, limits, received_at, &mut new_id) {
            Ok(event) => events.push(event),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        if errors.len() > MAX_REPORTED_ERRORS {
            let more = errors.len() - MAX_REPORTED_ERRORS;
            errors.truncate(MAX_REPORTED_ERRORS);
            errors.push(FieldError::new(
                "events",
                None,
                format!("{more} more errors not shown"),
            ));
        }
        Err(ContractError::Invalid(errors))
    }
}

fn parse_batch(
    top: RawObject,
    limits: &Limits,
) -> Result<Vec<(Option<usize>, RawObject)>, ContractError> {
    let mut raw_events = None;
    let mut errors = Vec::new();
    for (key, value) in top.0 {
        match key.as_str() {
            "events" if raw_events.is_none() => raw_events = Some(value),
            "events" => errors.push(FieldError::new("events", None, "duplicate field".into())),
            other => errors.push(FieldError::new(
                other,
                None,
                "unknown field: a batch has only \"events\"".into(),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ContractError::Invalid(errors));
    }
    let raw_events = raw_events.ok_or_else(|| {
        ContractError::Invalid(vec![FieldError::new("events", None, "missing".into())])
    })?;
    let list: Vec<Box<RawValue>> = serde_json::from_str(raw_events.get()).map_err(|_| {
        ContractError::Invalid(vec![FieldError::new(
            "events",
            None,
            "must be an array of event objects".into(),
        )])
    })?;
    if list.is_empty() {
        return Err(ContractError::Invalid(vec![FieldError::new(
            "events",
            None,
            "must contain at least one event".into(),
        )]));
    }
    if list.len() > limits.max_batch_events {
        return Err(ContractError::TooLarge(FieldError::new(
            "events",
            None,
            format!(
                "batch of {} events exceeds the limit of {}",
                list.len(),
                limits.max_batch_events
            ),
        )));
    }
    let mut items = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        if raw.get().len() > limits.max_event_bytes {
            return Err(ContractError::TooLarge(FieldError::new(
                &format!("events[{i}]"),
                Some(i),
                format!(
                    "event of {} bytes exceeds the limit of {} bytes",
                    raw.get().len(),
                    limits.max_event_bytes
                ),
            )));
        }
        match serde_json::from_str::<RawObject>(raw.get()) {
            Ok(object) => items.push((Some(i), object)),
            Err(_) => errors.push(FieldError::new(
                &format!("events[{i}]"),
                Some(i),
                "must be a JSON object".into(),
            )),
        }
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(ContractError::Invalid(errors))
    }
}

/// Validates one event object; `index` is its place in a batch.
fn validate_event(
    object: RawObject,
    index: Option<usize>,
    limits: &Limits,
    received_at: DateTime<Utc>,
    new_id: &mut impl FnMut() -> Uuid,
) -> Result<Event, Vec<FieldError>> {
    let path = |field: &str| match index {
        Some(i) => format!("events[{i}].{field}"),
        None => field.to_string(),
    };
    let mut errors = Vec::new();
    let mut err =
        |field: &str, reason: String| errors.push(FieldError::new(&path(field), index, reason));

    let mut fields = EventFields::default();
    for (key, value) in object.0 {
        let slot = match key.as_str() {
            "event_id" => &mut fields.event_id,
            "event_type" => &mut fields.event_type,
            "user_id" => &mut fields.user_id,
            "timestamp" | "occurred_at" => &mut fields.timestamp,
            "sent_at" => &mut fields.sent_at,
            "payload" | "properties" => &mut fields.payload,
            _ => {
                err(&key, "unknown field".into());
                continue;
            }
        };
        match slot {
            Some((first, _)) => {
                let reason = format!("duplicate field (`{first}` already given)");
                err(&key, reason);
            }
            None => *slot = Some((key, value)),
        }
    }

    let event_type = required_string(fields.event_type, "event_type", 128, &mut err);
    let user_id = required_string(fields.user_id, "user_id", 256, &mut err);
    let event_id = optional_string(fields.event_id.as_ref(), &mut err).and_then(|s| {
        Uuid::parse_str(&s)
            .map_err(|_| err("event_id", "must be a UUID".into()))
            .ok()
    });
    let timestamp = optional_time(fields.timestamp.as_ref(), &mut err);
    let sent_at = optional_time(fields.sent_at.as_ref(), &mut err);
    let timestamp_key = fields
        .timestamp
        .as_ref()
        .map_or("timestamp", |(k, _)| k.as_str())
        .to_string();
    let payload = match fields.payload {
        None => Some(empty_object()),
        Some((_, raw)) if raw.get() == "null" => Some(empty_object()),
        Some((key, raw)) if raw.get().starts_with('{') => {
            if json_depth(raw.get().as_bytes()) > limits.max_payload_depth {
                err(
                    &key,
                    format!("nested deeper than {} levels", limits.max_payload_depth),
                );
                None
            } else {
                Some(raw)
            }
        }
        Some((key, _)) => {
            err(&key, "must be a JSON object".into());
            None
        }
    };

    let corrected = match (timestamp, sent_at) {
        (Some(t), Some(s)) => match t.checked_add_signed(received_at - s) {
            Some(c) => Some(c),
            None => {
                err(
                    &timestamp_key,
                    "out of range after clock-skew correction".into(),
                );
                None
            }
        },
        (t, _) => t,
    };

    let (Some(event_type), Some(user_id), Some(payload)) = (event_type, user_id, payload) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut event_time = corrected.unwrap_or(received_at);
    if let Some(reason) = time_problem(event_time) {
        let skew = if sent_at.is_some() {
            " after clock-skew correction with sent_at"
        } else {
            ""
        };
        return Err(vec![FieldError::new(
            &timestamp_key,
            None,
            format!("{reason}{skew}"),
        )]);
    }
    let mut clamped = false;
    if event_time > received_at + limits.max_future_skew {
        event_time = received_at;
        clamped = true;
    }
    Ok(Event {
        event_id: event_id.unwrap_or_else(new_id),
        event_type,
        user_id,
        client_timestamp: timestamp.filter(|t| *t != event_time),
        timestamp: event_time,
        sent_at,
        received_at,
        timestamp_clamped: clamped,
        payload,
    })
}

/// The fields of one event as the client sent them: the key it used (so that
/// errors name `occurred_at` when that is what the client wrote) and the value.
#[derive(Default)]
struct EventFields {
    event_id: Option<(String, Box<RawValue>)>,
    event_type: Option<(String, Box<RawValue>)>,
    user_id: Option<(String, Box<RawValue>)>,
    timestamp: Option<(String, Box<RawValue>)>,
    sent_at: Option<(String, Box<RawValue>)>,
    payload: Option<(String, Box<RawValue>)>,
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).unwrap_or_else(|_| unreachable!("`{{}}` is valid JSON"))
}

fn optional_string(
    field: Option<&(String, Box<RawValue>)>,
    err: &mut impl FnMut(&str, String),
) -> Option<String> {
    let (key, raw) = field.filter(|(_, r)| r.get() != "null")?;
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => Some(s),
        Err(_) => {
            err(key, "must be a string".into());
            None
        }
    }
}

fn required_string(
    raw: Option<(String, Box<RawValue>)>,
    field: &str,
    max_chars: usize,
    err: &mut impl FnMut(&str, String),
) -> Option<String> {
    let Some((_, raw)) = raw.filter(|(_, r)| r.get() != "null") else {
        err(field, "is required".into());
        return None;
    };
    let s = match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => s,
        Err(_) => {
            err(field, "must be a string".into());
            return None;
        }
    };
    match text_problem(&s, max_chars) {
        None => Some(s),
        Some(reason) => {
            err(field, reason);
            None
        }
    }
}

fn optional_time(
    field: Option<&(String, Box<RawValue>)>,
    err: &mut impl FnMut(&str, String),
) -> Option<DateTime<Utc>> {
    let s = optional_string(field, err)?;
    match DateTime::parse_from_rfc3339(&s) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            let key = field.map_or("timestamp", |(k, _)| k.as_str());
            err(
                key,
                "must be an RFC 3339 date-time, e.g. 2024-01-15T10:30:00Z".into(),
            );
            None
        }
    }
}

/// Deepest nesting of arrays and objects in a JSON text, found by a scan that
/// skips strings; it does not validate, so it is safe on any input.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A JSON object kept as its entries in order, values unparsed, duplicate
/// keys kept so that validation can name them.
struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    entries.push(entry);
                }
                Ok(RawObject(entries))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn parse(body: &str) -> Result<Vec<Event>, ContractError> {
        parse_request(body.as_bytes(), &Limits::default(), now(), Uuid::now_v7)
    }

    #[test]
    fn single_event_keeps_payload_bytes_and_client_id() {
        let body = r#"{"event_id":"0190a8b4-0000-7000-8000-000000000001","event_type":"click","user_id":"u1","payload":{"b": 1,  "a":[1,2]}}"#;
        let events = parse(body).expect("valid");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].payload.get(), r#"{"b": 1,  "a":[1,2]}"#);
        assert_eq!(
            events[0].event_id.to_string(),
            "0190a8b4-0000-7000-8000-000000000001"
        );
        assert_eq!(events[0].timestamp, now());
    }

    #[test]
    fn batch_accepts_reference_aliases() {
        let body = r#"{"events":[{"event_type":"a","user_id":"u","occurred_at":"2024-06-01T11:00:00Z","properties":{"x":1}}]}"#;
        let events = parse(body).expect("valid");
        assert_eq!(events[0].payload.get(), r#"{"x":1}"#);
        assert_eq!(
            events[0].timestamp.to_rfc3339(),
            "2024-06-01T11:00:00+00:00"
        );
    }

    #[test]
    fn clock_skew_is_corrected_from_sent_at() {
        // Client clock runs 10 minutes behind: sent_at 11:50 at our 12:00.
        let body = r#"{"event_type":"a","user_id":"u","timestamp":"2024-06-01T11:45:00Z","sent_at":"2024-06-01T11:50:00Z"}"#;
        let event = &parse(body).expect("valid")[0];
        assert_eq!(event.timestamp.to_rfc3339(), "2024-06-01T11:55:00+00:00");
        assert_eq!(
            event.client_timestamp.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-06-01T11:45:00+00:00")
        );
        assert!(!event.timestamp_clamped);
    }

    #[test]
    fn times_before_1970_are_refused_also_after_skew_correction() {
        // sent_at far in the future pushes the corrected time before year 0.
        let skewed = r#"{"event_type":"a","user_id":"u","timestamp":"2024-06-01T11:45:00Z","sent_at":"9999-01-01T00:00:00Z"}"#;
        let early = r#"{"event_type":"a","user_id":"u","occurred_at":"1969-12-31T23:59:59Z"}"#;
        for body in [skewed, early] {
            let errors = parse(body).expect_err(body);
            let text = format!("{errors:?}");
            assert!(text.contains("1970-01-01T00:00:00Z"), "{body}: {text}");
        }
        let first = r#"{"event_type":"a","user_id":"u","timestamp":"1970-01-01T00:00:00Z"}"#;
        assert_eq!(parse(first).expect("valid")[0].timestamp, EARLIEST);
    }

    #[test]
    fn a_message_with_a_time_no_store_can_represent_fails_the_check() {
        let body = r#"{"event_type":"a","user_id":"u"}"#;
        let mut event = parse(body).expect("valid")[0].clone();
        assert_eq!(event.check(), Ok(()));
        // About 5000 BC.
        event.timestamp = DateTime::from_timestamp(-220_000_000_000, 0).unwrap_or_default();
        assert!(event.timestamp.to_rfc3339().starts_with('-'));
        assert!(event.check().is_err_and(|e| e.starts_with("timestamp:")));
        // The latest accepted time bounds a user's stored days.
        event.timestamp = latest();
        assert!(event
            .check()
            .is_err_and(|e| e.contains("before 2200-01-01")));
        event.timestamp = latest() - chrono::Duration::seconds(1);
        assert_eq!(event.check(), Ok(()));
    }

    #[test]
    fn far_future_timestamp_is_clamped_and_flagged() {
        let body = r#"{"event_type":"a","user_id":"u","timestamp":"2030-01-01T00:00:00Z"}"#;
        let event = &parse(body).expect("valid")[0];
        assert_eq!(event.timestamp, now());
        assert!(event.timestamp_clamped);
        let json = serde_json::to_string(event).expect("serializes");
        assert!(json.contains("\"timestamp_clamped\":true"), "{json}");
    }

    #[test]
    fn every_invalid_event_is_named_with_its_index() {
        let body = r#"{"events":[{"event_type":"a","user_id":"u"},{"event_type":5,"user_id":""},{"user_id":"u","extra":1}]}"#;
        let Err(ContractError::Invalid(errors)) = parse(body) else {
            panic!("expected 422")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "events[1].event_type",
                "events[1].user_id",
                "events[2].extra",
                "events[2].event_type"
            ]
        );
        assert_eq!(errors[0].index, Some(1));
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert_eq!(json_depth(br#"{"a":"[[[{{{\"]]]","b":[[1]]}"#), 3);
    }

    #[test]
    fn event_round_trips_through_json() {
        let event = parse(r#"{"event_type":"a","user_id":"u","payload":{"k":"v"}}"#)
            .expect("valid")
            .remove(0);
        let bytes = serde_json::to_vec(&event).expect("serializes");
        let back: Event = serde_json::from_slice(&bytes).expect("deserializes");
        assert_eq!(back.event_id, event.event_id);
        assert_eq!(back.payload.get(), event.payload.get());
        assert_eq!(serde_json::to_vec(&back).expect("serializes"), bytes);
    }
}
