//! Helpers every resource kind shares: property access, tags, "is this
//! ours?", not-found as `None`, and the one poll loop for waits inside an
//! operation.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{Cloud, CloudError, Result};
use crate::model::{Props, ADDRESS_TAG, BROKER_SETUP_TAG, STACK_TAG};

/// Whether `tags` mark a resource of `cloud`'s stack at `address`.
pub fn ours(cloud: &Cloud, tags: &BTreeMap<String, String>, address: &str) -> bool {
    in_stack(cloud, tags) && tags.get(ADDRESS_TAG).map(String::as_str) == Some(address)
}

/// Whether `tags` mark a resource of `cloud`'s stack (any address).
pub fn in_stack(cloud: &Cloud, tags: &BTreeMap<String, String>) -> bool {
    tags.get(STACK_TAG) == Some(&cloud.stack)
}

/// `Ok(None)` when the call failed with one of the `gone` error codes (the
/// service's way of saying "no such resource").
pub fn absent<T>(result: Result<T>, gone: &[&str]) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if gone.contains(&e.code.as_str()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Ok(())` when a delete failed because the resource is already gone.
pub fn gone_ok(result: Result<()>, gone: &[&str]) -> Result<()> {
    absent(result, gone).map(|_| ())
}

/// How long waits inside an operation poll, and how often: set by the walk
/// from its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// Time between looks.
    pub interval: Duration,
    /// Longest wait.
    pub timeout: Duration,
}

impl Poll {
    /// Looks about twenty times within `timeout`, at most every 5 s.
    pub fn within(timeout: Duration) -> Self {
        Self {
            interval: (timeout / 20).clamp(Duration::from_millis(10), Duration::from_secs(5)),
            timeout,
        }
    }
}

impl Default for Poll {
    fn default() -> Self {
        Self::within(Duration::from_secs(15 * 60))
    }
}

/// Looks with `look` until it answers `Some`, at `cloud`'s poll interval;
/// `None` when `cloud`'s poll timeout passed first (the caller says what
/// did not happen, with `cloud.poll.timeout`).
pub async fn poll<T, F, Fut>(cloud: &Cloud, mut look: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + cloud.poll.timeout;
    loop {
        if let Some(value) = look().await? {
            return Ok(Some(value));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(cloud.poll.interval).await;
    }
}

/// Sets exactly the desired `tags` of `props` on a resource that has the
/// tag keys `current`: `tag` overwrites and adds the desired ones (called
/// only when there are some), `untag` removes the stale ones (likewise).
pub async fn replace_tags<K: AsRef<str>, T, U>(
    props: &Props,
    current: impl IntoIterator<Item = K>,
    tag: impl FnOnce(Vec<(String, String)>) -> T,
    untag: impl FnOnce(Vec<String>) -> U,
) -> Result<()>
where
    T: Future<Output = Result<()>>,
    U: Future<Output = Result<()>>,
{
    let desired = prop_tags(props)?;
    let stale = stale_tag_keys(current, props)?;
    if !desired.is_empty() {
        tag(desired).await?;
    }
    if !stale.is_empty() {
        untag(stale).await?;
    }
    Ok(())
}

/// A kind's typed properties as the generic map the planner diffs and
/// shows. Each kind declares its attributes once, as a serde struct; the
/// map exists only for comparison, display and the state file.
pub fn to_props<T: Serialize>(typed: &T) -> Props {
    match serde_json::to_value(typed) {
        Ok(Value::Object(map)) => map.into_iter().collect(),
        // A kind's properties are a struct: anything else is a defect of
        // the kind, caught by its tests, not an input.
        _ => Props::new(),
    }
}

/// The typed properties of a kind out of the generic map (desired with
/// references resolved, or recorded); a property of the wrong shape is an
/// error naming it.
pub fn from_props<T: DeserializeOwned>(props: &Props) -> Result<T> {
    let map: serde_json::Map<String, Value> =
        props.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_json::from_value(Value::Object(map))
        .map_err(|e| CloudError::invalid("properties", format!("properties: {e}")))
}

/// `props[name]` as an integer that fits AWS's 32-bit fields.
pub fn prop_i32(props: &Props, name: &str) -> Result<i32> {
    i32::try_from(prop_i64(props, name)?)
        .map_err(|_| CloudError::invalid(name, format!("property `{name}` is out of range")))
}

/// An optional string from an answer as a property value (`null` when absent).
pub fn opt_str(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// `props[name]` as a string.
pub fn prop_str<'a>(props: &'a Props, name: &str) -> Result<&'a str> {
    props
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| CloudError::invalid(name, format!("property `{name}` must be a string")))
}

/// `props[name]` as an integer.
pub fn prop_i64(props: &Props, name: &str) -> Result<i64> {
    props
        .get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| CloudError::invalid(name, format!("property `{name}` must be an integer")))
}

/// `props[name]` as a bool.
pub fn prop_bool(props: &Props, name: &str) -> Result<bool> {
    props.get(name).and_then(Value::as_bool).ok_or_else(|| {
        CloudError::invalid(name, format!("property `{name}` must be true or false"))
    })
}

/// `props[name]` as a list of strings (absent = empty).
pub fn prop_strings(props: &Props, name: &str) -> Result<Vec<String>> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    CloudError::invalid(name, format!("property `{name}` must list strings"))
                })
            })
            .collect(),
        Some(_) => Err(CloudError::invalid(
            name,
            format!("property `{name}` must be a list"),
        )),
    }
}

/// `props["tags"]` as key/value pairs, sorted by key.
pub fn prop_tags(props: &Props) -> Result<Vec<(String, String)>> {
    match props.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .ok_or_else(|| {
                        CloudError::invalid("tags", format!("tag `{k}` must be a string"))
                    })
            })
            .collect(),
        Some(_) => Err(CloudError::invalid(
            "tags",
            "property `tags` must be a table",
        )),
    }
}

/// The tag keys a resource has that its desired `tags` do not, to remove.
/// AWS's own `aws:` tags cannot be removed and are left alone.
pub fn stale_tag_keys<K: AsRef<str>>(
    current: impl IntoIterator<Item = K>,
    props: &Props,
) -> Result<Vec<String>> {
    let desired = prop_tags(props)?;
    Ok(current
        .into_iter()
        .map(|k| k.as_ref().to_string())
        .filter(|k| {
            !k.starts_with("aws:") && k != BROKER_SETUP_TAG && !desired.iter().any(|(d, _)| d == k)
        })
        .collect())
}

/// Tags as the `tags` property value.
pub fn tags_value<I, K, V>(tags: I) -> Value
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    Value::Object(
        tags.into_iter()
            .map(|(k, v)| (k.into(), Value::String(v.into())))
            .collect(),
    )
}
