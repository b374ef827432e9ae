//! The analytics rollups of one batch, computed in memory with no I/O, so
//! both hot-store adapters apply exactly the same deltas.
//!
//! Per user the store keeps the day the user was first seen and the set of
//! days the user was active. From those, processing an event in order gives:
//! - the event count of its (type, hour) and of (all types, hour), and of
//!   its (day, type);
//! - a daily-active-users increment when the day is new for the user;
//! - cohort sizes (daily and weekly cohorts) and retention buckets, where
//!   `retained[k]` of a cohort counts its users active in the k-th period
//!   after the cohort's own. A late event that moves a user's first-seen day
//!   earlier moves the user, with all its activity, to the earlier cohort.
//!
//! Only events marked `counted` change counters; the others (redelivered
//! offsets at or below the partition watermark) still update the user state,
//! which is idempotent, so a crash between the counter write and the user
//! write heals on redelivery.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Cohort window: users first seen on a day, or in an ISO week (from Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Window {
    /// Daily cohorts and periods.
    Daily,
    /// Weekly cohorts and periods, weeks starting on Monday.
    Weekly,
}

impl Window {
    /// Both windows, in a fixed order.
    pub const ALL: [Window; 2] = [Window::Daily, Window::Weekly];

    /// The storage name of the window.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Daily => "DAILY",
            Window::Weekly => "WEEKLY",
        }
    }

    /// The first day of the period containing `day`.
    pub fn period_start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Window::Daily => day,
            Window::Weekly => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        }
    }

    /// The starts of `count` consecutive periods, from the one containing `from`.
    pub fn starts(self, from: NaiveDate, count: usize) -> Vec<NaiveDate> {
        let step = match self {
            Window::Daily => 1,
            Window::Weekly => 7,
        };
        let first = self.period_start(from);
        (0..count)
            .map(|i| first + Duration::days(step * i as i64))
            .collect()
    }

    /// Whole periods from `cohort` to `day` (both period starts).
    pub fn periods_between(self, cohort: NaiveDate, day: NaiveDate) -> i64 {
        let days = (self.period_start(day) - self.period_start(cohort)).num_days();
        match self {
            Window::Daily => days,
            Window::Weekly => days / 7,
        }
    }
}

/// What the store keeps per user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// UTC day of the user's earliest event.
    pub first_seen: Option<NaiveDate>,
    /// UTC days on which the user had events, stored as runs (see [`day_runs`]).
    #[serde(with = "day_runs")]
    pub days: BTreeSet<NaiveDate>,
}

/// A user's active days as stored: runs of consecutive days, each a varint
/// gap since the previous run (the first: days since 1970-01-01, zigzag) and
/// a varint length, base64. At most about 3 bytes per run, so even a user
/// active every other day over the whole accepted time range (1970 to
/// [`event_common::event::latest`], 84,006 days) stays far below DynamoDB's
/// 400 KB item limit; a list of dates, as stored before, passed it after
/// about 30,000 days. That list is still read.
pub mod day_runs {
    use std::collections::BTreeSet;

    use base64::Engine;
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

    /// Day 0: 1970-01-01.
    const EPOCH: NaiveDate = NaiveDate::from_yo_opt(1970, 1).expect("a valid date");

    /// More days than the accepted time range has: a stored text asking for
    /// more is corrupt, not a reason to allocate without bound.
    const MAX_DAYS: usize = 100_000;

    fn day_number(day: NaiveDate) -> i64 {
        (day - EPOCH).num_days()
    }

    fn put(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn take(bytes: &mut impl Iterator<Item = u8>) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes.next()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// The encoded text of `days`.
    pub fn encode(days: &BTreeSet<NaiveDate>) -> String {
        let mut out = Vec::new();
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for n in days.iter().map(|d| day_number(*d)) {
            match runs.last_mut() {
                Some((start, len)) if *start + *len == n => *len += 1,
                _ => runs.push((n, 1)),
            }
        }
        let mut previous_end: Option<i64> = None;
        for (start, len) in runs {
            match previous_end {
                None => put(&mut out, ((start << 1) ^ (start >> 63)) as u64),
                Some(end) => put(&mut out, (start - end) as u64),
            }
            put(&mut out, len as u64);
            previous_end = Some(start + len);
        }
        ENGINE.encode(out)
    }

    /// The days of an encoded text; `None` when it is not one.
    pub fn decode(text: &str) -> Option<BTreeSet<NaiveDate>> {
        let bytes = ENGINE.decode(text).ok()?;
        let mut bytes = bytes.into_iter().peekable();
        let mut days = BTreeSet::new();
        let mut next_start: Option<i64> = None;
        while bytes.peek().is_some() {
            let raw = take(&mut bytes)?;
            let start = match next_start {
                None => ((raw >> 1) as i64) ^ -((raw & 1) as i64),
                Some(end) => end.checked_add(i64::try_from(raw).ok()?)?,
            };
            let len = i64::try_from(take(&mut bytes)?).ok()?;
            if days.len() + usize::try_from(len).ok()? > MAX_DAYS {
                return None;
            }
            for n in start..start.checked_add(len)? {
                days.insert(EPOCH.checked_add_signed(chrono::Duration::try_days(n)?)?);
            }
            next_start = Some(start + len);
        }
        Some(days)
    }

    pub(super) fn serialize<S: Serializer>(
        days: &BTreeSet<NaiveDate>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(days))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Runs(String),
        Dates(BTreeSet<NaiveDate>),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeSet<NaiveDate>, D::Error> {
        match Stored::deserialize(deserializer)? {
            Stored::Dates(days) => Ok(days),
            Stored::Runs(text) => decode(&text)
                .ok_or_else(|| serde::de::Error::custom("user days: not a valid run encoding")),
        }
    }
}

/// An event as the rollups see it.
#[derive(Debug, Clone)]
pub struct RollupEvent<'a> {
    /// The event's type.
    pub event_type: &'a str,
    /// Its user.
    pub user_id: &'a str,
    /// Its (skew-corrected) time.
    pub timestamp: DateTime<Utc>,
    /// Whether it changes counters (see the module docs).
    pub counted: bool,
}

/// Name used for "all types" in per-hour counts: empty, which no event type
/// can be (ingest and the processor refuse it), so a type spelled `*` is
/// counted as itself.
pub const ALL_TYPES: &str = "";

/// The counter changes of one batch, and the users' new state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupDelta {
    /// (event type or [`ALL_TYPES`], hour start) -> events.
    pub hourly: BTreeMap<(String, DateTime<Utc>), i64>,
    /// (day, event type) -> events.
    pub daily_types: BTreeMap<(NaiveDate, String), i64>,
    /// day -> newly active users.
    pub dau: BTreeMap<NaiveDate, i64>,
    /// (window, cohort start) -> change in cohort size.
    pub cohort_sizes: BTreeMap<(Window, NaiveDate), i64>,
    /// (window, cohort start, period) -> change in retained users.
    pub retention: BTreeMap<(Window, NaiveDate, i64), i64>,
    /// New state of every user the batch touched.
    pub users: BTreeMap<String, UserState>,
}

impl RollupDelta {
    /// How many counter items the delta changes (zero entries are dropped).
    pub fn counter_items(&self) -> usize {
        self.hourly.len()
            + self.daily_types.len()
            + self.dau.len()
            + self.cohort_sizes.len()
            + self.retention.len()
    }
}

/// The hour containing `t`.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_minute(0))
        .unwrap_or(t)
}

/// Computes the delta of `events` (in offset order) given the users' state
/// before the batch (`users`; a missing user has no history).
pub fn compute(events: &[RollupEvent<'_>], users: &BTreeMap<String, UserState>) -> RollupDelta {
    let mut delta = RollupDelta::default();
    for event in events {
        let state = delta
            .users
            .entry(event.user_id.to_string())
            .or_insert_with(|| users.get(event.user_id).cloned().unwrap_or_default());
        let day = event.timestamp.date_naive();
        if event.counted {
            let hour = hour_of(event.timestamp);
            *delta
                .hourly
                .entry((event.event_type.to_string(), hour))
                .or_default() += 1;
            *delta
                .hourly
                .entry((ALL_TYPES.to_string(), hour))
                .or_default() += 1;
            *delta
                .daily_types
                .entry((day, event.event_type.to_string()))
                .or_default() += 1;
            count_activity(
                state,
                day,
                &mut delta.dau,
                &mut delta.cohort_sizes,
                &mut delta.retention,
            );
        } else {
            let mut ignore = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
            count_activity(state, day, &mut ignore.0, &mut ignore.1, &mut ignore.2);
        }
    }
    delta.cohort_sizes.retain(|_, n| *n != 0);
    delta.retention.retain(|_, n| *n != 0);
    delta
}

/// Records that the user was active on `day`, updating state and deltas.
fn count_activity(
    state: &mut UserState,
    day: NaiveDate,
    dau: &mut BTreeMap<NaiveDate, i64>,
    sizes: &mut BTreeMap<(Window, NaiveDate), i64>,
    retention: &mut BTreeMap<(Window, NaiveDate, i64), i64>,
) {
    if state.days.contains(&day) {
        return;
    }
    *dau.entry(day).or_default() += 1;
    let old_first = state.first_seen;
    let new_first = old_first.map_or(day, |f| f.min(day));
    for window in Window::ALL {
        let new_cohort = window.period_start(new_first);
        let active_periods = |days: &BTreeSet<NaiveDate>| -> BTreeSet<NaiveDate> {
            days.iter().map(|d| window.period_start(*d)).collect()
        };
        let before = active_periods(&state.days);
        match old_first.map(|f| window.period_start(f)) {
            // The user moves to an earlier cohort: take all its activity out
            // of the old cohort and put it into the new one.
            Some(old_cohort) if old_cohort != new_cohort => {
                *sizes.entry((window, old_cohort)).or_default() -= 1;
                *sizes.entry((window, new_cohort)).or_default() += 1;
                for period in &before {
                    *retention
                        .entry((
                            window,
                            old_cohort,
                            window.periods_between(old_cohort, *period),
                        ))
                        .or_default() -= 1;
                    *retention
                        .entry((
                            window,
                            new_cohort,
                            window.periods_between(new_cohort, *period),
                        ))
                        .or_default() += 1;
                }
            }
            Some(_) => {}
            None => *sizes.entry((window, new_cohort)).or_default() += 1,
        }
        let period = window.period_start(day);
        if !before.contains(&period) {
            *retention
                .entry((
                    window,
                    new_cohort,
                    window.periods_between(new_cohort, period),
                ))
                .or_default() += 1;
        }
    }
    state.first_seen = Some(new_first);
    state.days.insert(day);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    fn ev<'a>(t: &'a str, u: &'a str, ts: &str) -> RollupEvent<'a> {
        RollupEvent {
            event_type: t,
            user_id: u,
            timestamp: at(ts),
            counted: true,
        }
    }

    #[test]
    fn counts_types_hours_and_new_daily_users() {
        let events = [
            ev("click", "a", "2024-06-03T10:15:00Z"),
            ev("click", "a", "2024-06-03T10:45:00Z"),
            ev("view", "b", "2024-06-03T11:00:00Z"),
        ];
        let d = compute(&events, &BTreeMap::new());
        assert_eq!(d.hourly[&("click".into(), at("2024-06-03T10:00:00Z"))], 2);
        assert_eq!(d.hourly[&(ALL_TYPES.into(), at("2024-06-03T10:00:00Z"))], 2);
        assert_eq!(d.hourly[&(ALL_TYPES.into(), at("2024-06-03T11:00:00Z"))], 1);
        assert_eq!(d.daily_types[&(day("2024-06-03"), "click".into())], 2);
        assert_eq!(d.dau[&day("2024-06-03")], 2);
        assert_eq!(d.cohort_sizes[&(Window::Daily, day("2024-06-03"))], 2);
        assert_eq!(d.retention[&(Window::Daily, day("2024-06-03"), 0)], 2);
        // 2024-06-03 is a Monday: the weekly cohort starts that day.
        assert_eq!(d.cohort_sizes[&(Window::Weekly, day("2024-06-03"))], 2);
    }

    #[test]
    fn returning_user_is_retained_in_later_periods_once_per_period() {
        let events = [
            ev("x", "a", "2024-06-03T10:00:00Z"),
            ev("x", "a", "2024-06-05T10:00:00Z"),
            ev("x", "a", "2024-06-06T10:00:00Z"),
            ev("x", "a", "2024-06-11T10:00:00Z"),
        ];
        let d = compute(&events, &BTreeMap::new());
        assert_eq!(d.retention[&(Window::Daily, day("2024-06-03"), 2)], 1);
        assert_eq!(d.retention[&(Window::Daily, day("2024-06-03"), 8)], 1);
        assert_eq!(
            d.retention[&(Window::Weekly, day("2024-06-03"), 0)],
            1,
            "same week counted once"
        );
        assert_eq!(d.retention[&(Window::Weekly, day("2024-06-03"), 1)], 1);
        assert_eq!(d.dau.values().sum::<i64>(), 4);
    }

    #[test]
    fn late_event_moves_the_user_to_the_earlier_cohort() {
        let mut users = BTreeMap::new();
        users.insert(
            "a".to_string(),
            UserState {
                first_seen: Some(day("2024-06-05")),
                days: [day("2024-06-05"), day("2024-06-07")].into(),
            },
        );
        let d = compute(&[ev("x", "a", "2024-06-04T23:00:00Z")], &users);
        let daily = |c: &str| {
            d.cohort_sizes
                .get(&(Window::Daily, day(c)))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!((daily("2024-06-05"), daily("2024-06-04")), (-1, 1));
        let ret = |c: &str, k: i64| {
            d.retention
                .get(&(Window::Daily, day(c), k))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!((ret("2024-06-05", 0), ret("2024-06-05", 2)), (-1, -1));
        assert_eq!(
            (
                ret("2024-06-04", 0),
                ret("2024-06-04", 1),
                ret("2024-06-04", 3)
            ),
            (1, 1, 1)
        );
        // Same ISO week (Mon 3rd to Sun 9th): the weekly cohort does not move.
        assert!(!d
            .cohort_sizes
            .contains_key(&(Window::Weekly, day("2024-06-03"))));
        assert_eq!(d.users["a"].first_seen, Some(day("2024-06-04")));
    }

    #[test]
    fn uncounted_events_update_users_but_no_counter() {
        let mut e = ev("x", "a", "2024-06-03T10:00:00Z");
        e.counted = false;
        let d = compute(&[e, ev("x", "a", "2024-06-03T12:00:00Z")], &BTreeMap::new());
        assert_eq!(d.hourly[&("x".into(), at("2024-06-03T12:00:00Z"))], 1);
        assert!(
            d.dau.is_empty(),
            "the day was already counted with the uncounted event"
        );
        assert_eq!(d.users["a"].days.len(), 1);
    }

    /// DynamoDB refuses items over 400 KB; the processor would retry such
    /// a user's batch forever.
    #[test]
    fn a_user_active_every_other_day_of_the_accepted_range_fits_one_item() {
        let last = event_common::event::latest().date_naive();
        let days: BTreeSet<NaiveDate> = std::iter::successors(Some(day("1970-01-01")), |d| {
            d.checked_add_signed(Duration::days(2))
        })
        .take_while(|d| *d < last)
        .collect();
        assert_eq!(days.len(), 42_003);
        let state = UserState {
            first_seen: days.first().copied(),
            days,
        };
        let stored = serde_json::to_string(&state).expect("serializes");
        assert!(
            stored.len() < 150_000,
            "{} bytes, DynamoDB's item limit is 400 KB",
            stored.len()
        );
        let read: UserState = serde_json::from_str(&stored).expect("reads");
        assert_eq!(read, state);
    }

    #[test]
    fn user_days_round_trip_and_the_list_stored_before_is_still_read() {
        let days: BTreeSet<NaiveDate> = [
            "1970-01-01",
            "1970-01-02",
            "2024-02-28",
            "2024-02-29",
            "2024-03-01",
            "2024-03-05",
            "2199-12-31",
        ]
        .into_iter()
        .map(day)
        .collect();
        assert_eq!(
            day_runs::decode(&day_runs::encode(&days)),
            Some(days.clone())
        );
        assert_eq!(
            day_runs::decode(&day_runs::encode(&BTreeSet::new())),
            Some(BTreeSet::new())
        );
        let before_1970: BTreeSet<NaiveDate> = [day("1969-12-31"), day("1970-01-02")].into();
        assert_eq!(
            day_runs::decode(&day_runs::encode(&before_1970)),
            Some(before_1970)
        );

        let legacy = r#"{"first_seen":"2024-02-28","days":["2024-02-28","2024-03-05"]}"#;
        let state: UserState = serde_json::from_str(legacy).expect("reads the old form");
        assert_eq!(state.days, [day("2024-02-28"), day("2024-03-05")].into());
        for corrupt in ["not base64!", "/////w", "AP////8P"] {
            assert_eq!(day_runs::decode(corrupt), None, "{corrupt}");
        }
    }
}
