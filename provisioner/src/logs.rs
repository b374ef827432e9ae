//! `provision logs`: the services' CloudWatch log events, merged in time
//! order, each line prefixed by its service and task, JSON lines shown as
//! `LEVEL message request_id=… key=value`.
//!
//! Following polls FilterLogEvents every [`POLL`] rather than opening a
//! StartLiveTail session: Live Tail is billed per session minute, an account
//! may have only 15 sessions at once, each ends after 3 hours, and the SDK
//! sends it to a `stream-` host prefix that an emulator on loopback cannot
//! answer. A poll costs a few seconds of delay, which the services' own
//! delivery to CloudWatch already has.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::cloud::support::sent;
use crate::cloud::Cloud;

/// How often `--follow` asks for new events.
pub const POLL: Duration = Duration::from_secs(2);

/// How far back each poll looks again: CloudWatch may list an event a few
/// seconds after a later one (seen ones are skipped by id).
const OVERLAP_MS: i64 = 30_000;

/// One log event of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The service (its log group's last part).
    pub service: String,
    /// The task that wrote it (the stream's last part).
    pub task: String,
    /// The line as written.
    pub message: String,
    /// CloudWatch's id of the event.
    pub event_id: String,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Query {
    /// Log group by service.
    pub groups: BTreeMap<String, String>,
    /// Events at or after this time (ms since the epoch).
    pub start_ms: i64,
    /// Only events containing this text.
    pub filter: Option<String>,
}

/// Parses `--since`: `90s`, `10m`, `2h`, `1d`, or an RFC 3339 time.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .with_context(|| {
            format!("--since {text:?}: expected a duration (90s, 10m, 2h, 1d) or an RFC 3339 time")
        })?;
    let (amount, unit) = text.split_at(unit_at);
    let amount: i64 = amount
        .parse()
        .with_context(|| format!("--since {text:?}: too large"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => anyhow::bail!("--since {text:?}: the unit must be s, m, h or d"),
    };
    let delta = amount
        .checked_mul(seconds)
        .and_then(chrono::TimeDelta::try_seconds)
        .with_context(|| format!("--since {text:?}: too large"))?;
    Ok(now - delta)
}

/// Every event of `query`'s groups since its start, in time order.
pub async fn read(cloud: &Cloud, query: &Query) -> anyhow::Result<Vec<LogLine>> {
    let reads = query
        .groups
        .iter()
        .map(|(service, group)| read_group(cloud, service, group, query));
    let mut lines: Vec<LogLine> = futures::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .collect();
    // Stable: a service's own events keep CloudWatch's order within a millisecond.
    lines.sort_by_key(|l| l.timestamp);
    Ok(lines)
}

/// Prints `query`'s events, then, with `follow`, new ones as they come
/// until `stop` resolves.
pub async fn show(
    cloud: &Cloud,
    mut query: Query,
    follow: bool,
    stop: impl std::future::Future<Output = ()>,
    mut print: impl FnMut(&str),
) -> anyhow::Result<()> {
    // Events printed, by id, with their time: kept only while a poll can see them again.
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut latest = query.start_ms;
    tokio::pin!(stop);
    loop {
        let lines = read(cloud, &query).await?;
        for line in lines {
            if seen.insert(line.event_id.clone(), line.timestamp).is_none() {
                latest = latest.max(line.timestamp);
                print(&render(&line));
            }
        }
        if !follow {
            return Ok(());
        }
        query.start_ms = latest.saturating_sub(OVERLAP_MS).max(query.start_ms);
        seen.retain(|_, timestamp| *timestamp >= query.start_ms);
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn read_group(
    cloud: &Cloud,
    service: &str,
    group: &str,
    query: &Query,
) -> anyhow::Result<Vec<LogLine>> {
    let request = cloud
        .logs
        .filter_log_events()
        .log_group_name(group)
        .start_time(query.start_ms)
        .set_filter_pattern(query.filter.as_deref().map(phrase));
    let pages = request.into_paginator().send();
    let pages: Vec<_> = sent("FilterLogEvents", pages.try_collect())
        .await
        .with_context(|| format!("reading log group {group}"))?;
    Ok(pages
        .into_iter()
        .flat_map(|page| page.events.unwrap_or_default())
        .map(|e| LogLine {
            timestamp: e.timestamp.unwrap_or_default(),
            service: service.to_string(),
            task: e
                .log_stream_name
                .as_deref()
                .and_then(|s| s.rsplit('/').next())
                .unwrap_or("-")
                .to_string(),
            message: e.message.unwrap_or_default(),
            event_id: e.event_id.unwrap_or_default(),
        })
        .collect())
}

/// `text` as a CloudWatch filter pattern matching it exactly, as a phrase.
fn phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One line: time, service, the task's first 8 characters, then the
/// message (a JSON line as `LEVEL message request_id=… key=value`).
pub fn render(line: &LogLine) -> String {
    let time = DateTime::<Utc>::from_timestamp_millis(line.timestamp)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| line.timestamp.to_string());
    let task: String = line.task.chars().take(8).collect();
    let text = readable(line.message.trim_end());
    format!("{time} {:<9} {task:<8} {text}", line.service)
}

/// A JSON log line (tracing-subscriber's format) as `LEVEL message
/// request_id=… key=value`; anything else as it is.
fn readable(message: &str) -> String {
    let Ok(Value::Object(json)) = serde_json::from_str::<Value>(message) else {
        return message.to_string();
    };
    let level = json.get("level").and_then(Value::as_str).unwrap_or("-");
    let fields = json.get("fields").and_then(Value::as_object);
    let text = fields
        .and_then(|f| f.get("message"))
        .or(json.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = format!("{level:<5} {text}");
    let span = json.get("span").and_then(Value::as_object);
    if let Some(id) = span
        .and_then(|s| s.get("request_id"))
        .and_then(Value::as_str)
    {
        out.push_str(&format!(" request_id={id}"));
    }
    for (key, value) in fields.into_iter().flatten() {
        if key == "message" {
            continue;
        }
        match value {
            Value::String(s) => out.push_str(&format!(" {key}={s}")),
            other => out.push_str(&format!(" {key}={other}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times_and_names_what_is_wrong() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let at = |text: &str| parse_since(text, now).map(|t| t.to_rfc3339());
        assert_eq!(at("10m").ok().as_deref(), Some("2026-12-07T11:50:00+00:00"));
        assert_eq!(at("2h").ok().as_deref(), Some("2026-12-07T10:00:00+00:00"));
        assert_eq!(at("1d").ok().as_deref(), Some("2026-12-06T12:00:00+00:00"));
        assert_eq!(at("90s").ok().as_deref(), Some("2026-12-07T11:58:30+00:00"));
        assert_eq!(
            at("2026-12-07T09:30:00Z").ok().as_deref(),
            Some("2026-12-07T09:30:00+00:00")
        );
        for bad in [
            "",
            "m",
            "10",
            "10w",
            "99999999999999999999m",
            "9999999999999d",
        ] {
            let err = at(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.starts_with("--since"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn json_lines_read_as_level_message_request_and_fields() {
        let line = LogLine {
            timestamp: 1_796_644_800_123,
            service: "ingest".into(),
            task: "0123456789abcdef0123456789abcdef".into(),
            message: r#"{"timestamp":"2026-12-07T12:00:00.123Z","level":"WARN","fields":{"message":"event rejected","status":422,"field":"user_id"},"target":"ingest::routes","span":{"request_id":"5f1c","name":"request"}}"#.into(),
            event_id: "1".into(),
        };
        assert_eq!(
            render(&line),
            "2026-12-07T12:00:00.123Z ingest    01234567 WARN  event rejected request_id=5f1c field=user_id status=422"
        );
        let plain = LogLine {
            message: "plain text\n".into(),
            ..line
        };
        assert!(render(&plain).ends_with("01234567 plain text"));
    }

    #[test]
    fn a_filter_is_one_quoted_phrase() {
        assert_eq!(phrase("user 42"), r#""user 42""#);
        assert_eq!(phrase(r#"say "hi""#), r#""say \"hi\"""#);
    }
}
