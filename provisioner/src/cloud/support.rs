//! Helpers every resource kind shares: property access, tags, "is this
//! ours?", not-found as `None`, and the one poll loop for waits inside an
//! operation.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::{Cloud, CloudError, Result};
use crate::model::{Props, ADDRESS_TAG, BROKER_SETUP_TAG, STACK_TAG};

/// A resource's tags by key.
pub type Tags = BTreeMap<String, String>;

/// Whether `tags` mark a resource of `cloud`'s stack at `address`.
pub fn ours(cloud: &Cloud, tags: &BTreeMap<String, String>, address: &str) -> bool {
    in_stack(cloud, tags) && tags.get(ADDRESS_TAG).map(String::as_str) == Some(address)
}

/// Whether `tags` mark a resource of `cloud`'s stack (any address).
pub fn in_stack(cloud: &Cloud, tags: &BTreeMap<String, String>) -> bool {
    tags.get(STACK_TAG) == Some(&cloud.stack)
}

/// What `find` answers: `id` when `tags` (`None`: there is no resource of
/// that name) mark it as the stack's resource at `address`.
pub fn ours_id(cloud: &Cloud, address: &str, tags: Option<Tags>, id: String) -> Option<String> {
    tags.filter(|tags| ours(cloud, tags, address)).map(|_| id)
}

/// What `look` answers for what was `found`; `None` when nothing was.
pub async fn look_at<T, U, Fut>(found: Option<T>, look: impl FnOnce(T) -> Fut) -> Result<Option<U>>
where
    Fut: Future<Output = Result<U>>,
{
    match found {
        Some(found) => look(found).await.map(Some),
        None => Ok(None),
    }
}

/// What `list_tagged` answers: the ids of the `candidates` (id, and what
/// `tags_of` looks its tags up by) whose tags mark them as the stack's;
/// `tags_of` answers `None` for one that is gone meanwhile.
pub async fn in_stack_ids<K, F, Fut>(
    cloud: &Cloud,
    candidates: impl IntoIterator<Item = (String, K)>,
    mut tags_of: F,
) -> Result<Vec<String>>
where
    F: FnMut(K) -> Fut,
    Fut: Future<Output = Result<Option<Tags>>>,
{
    let mut found = Vec::new();
    for (id, key) in candidates {
        if tags_of(key)
            .await?
            .is_some_and(|tags| in_stack(cloud, &tags))
        {
            found.push(id);
        }
    }
    Ok(found)
}

/// Awaits one SDK call (a request's `send()`, or a paginator's
/// `send().try_collect()`), naming `operation` in its error.
pub async fn sent<T, E>(
    operation: &str,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    call.await.map_err(|e| CloudError::from_sdk(operation, e))
}

/// [`sent`] for a call whose answer says nothing we need.
pub async fn sent_ok<T, E>(
    operation: &str,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<()>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    sent(operation, call).await.map(|_| ())
}

/// [`sent_ok`] for a delete: `Ok` also when it failed with one of the
/// `gone` codes (the resource is already gone).
pub async fn deleted<T, E>(
    operation: &str,
    gone: &[&str],
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<()>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    gone_ok(sent_ok(operation, call).await, gone)
}

/// The error of an `update` asked to change `attribute`, which only a
/// replacement changes (the planner never asks; a defect if it does).
pub fn not_in_place(operation: &str, attribute: &str) -> CloudError {
    CloudError::invalid(operation, format!("`{attribute}` cannot change in place"))
}

/// `update` for a kind whose tags are all that changes in place: `retag`
/// when they changed, the error of [`not_in_place`] for anything else.
pub async fn only_tags<Fut>(
    operation: &str,
    changed: &[String],
    retag: impl FnOnce() -> Fut,
) -> Result<()>
where
    Fut: Future<Output = Result<()>>,
{
    if let Some(other) = changed.iter().find(|attribute| *attribute != "tags") {
        return Err(not_in_place(operation, other));
    }
    if changed.is_empty() {
        return Ok(());
    }
    retag().await
}

/// The error of a change to the `what` named `name`, which vanished while
/// it was being changed.
pub fn vanished(operation: &str, what: &str, name: &str) -> CloudError {
    CloudError::invalid(operation, format!("{what} {name} is gone"))
}

/// The outputs most kinds have: their `name` and `arn`.
pub fn name_and_arn(name: &str, arn: &str) -> Props {
    Props::from([
        ("name".to_string(), json!(name)),
        ("arn".to_string(), json!(arn)),
    ])
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

/// [`poll`]s until `done` answers `true`; `late` is the error when the
/// poll timeout passes first.
pub async fn wait_until<F, Fut>(
    cloud: &Cloud,
    mut done: F,
    late: impl FnOnce() -> CloudError,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let finished = poll(cloud, || {
        let look = done();
        async move { Ok(look.await?.then_some(())) }
    })
    .await?;
    finished.ok_or_else(late)
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
    fit_i32(prop_i64(props, name)?, name)
}

/// The property `name`'s `value` in AWS's 32-bit fields.
pub fn fit_i32(value: i64, name: &str) -> Result<i32> {
    i32::try_from(value)
        .map_err(|_| CloudError::invalid(name, format!("property `{name}` is out of range")))
}

/// A property that reads as null when the cloud has none, but that
/// creating or changing the resource needs.
pub fn required<T>(value: Option<T>, name: &str) -> Result<T> {
    value.ok_or_else(|| CloudError::invalid(name, format!("property `{name}` must be set")))
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

/// The `map_err` of an SDK builder that lacks a field it needs: an error
/// of `operation`.
pub fn unbuilt<E: std::fmt::Display>(operation: &str) -> impl Fn(E) -> CloudError + '_ {
    move |e| CloudError::invalid(operation, e.to_string())
}

/// `tags` as a service's own tag type, each made by `build` from a key and
/// a value (every SDK has a `Tag` of its own).
pub fn sdk_tags<T, E: std::fmt::Display>(
    tags: Vec<(String, String)>,
    build: impl Fn(String, String) -> std::result::Result<T, E>,
) -> Result<Vec<T>> {
    tags.into_iter()
        .map(|(k, v)| build(k, v).map_err(unbuilt("Tag")))
        .collect()
}

/// An answer's tag list (as key/value pairs) by key.
pub fn tag_map<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Tags {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
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
