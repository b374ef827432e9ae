//! One contract, run unchanged against both hot-store adapters: SQLite
//! (embedded) and DynamoDB (on the AWS emulator). Expected values are
//! computed from the events by `Analytics::expected`, never by the stores.

use std::sync::Arc;

use chrono::Duration;
use event_common::event::Event;
use event_store::hot::{EventFilter, HotStore};
use event_store::rollup::Window;
use test_support::backend::AwsEmulator;
use test_support::stores::{
    all_pages, at, batch, day, dynamodb_store, event, sqlite_store, Analytics, TEST_CLUSTER,
};

const TYPES: &[&str] = &["signup", "page_view", "click", "purchase", "logout"];

/// 240 events over 10 days, 5 types, 20 users, timestamps out of order.
fn dataset() -> Vec<Event> {
    let start = at("2024-03-04T00:00:00Z"); // a Monday
    (0..240)
        .map(|i| {
            // A deterministic scatter: later offsets are not always later times.
            let minutes = (i * 7919) % (10 * 24 * 60);
            let user = format!("user-{}", (i * 13) % 20);
            event(
                TYPES[i % TYPES.len()],
                &user,
                start + Duration::minutes(minutes as i64),
                i,
            )
        })
        .collect()
}

async fn assert_analytics(store: &dyn HotStore, events: &[Event]) {
    let expected = Analytics::expected(events);
    let actual = Analytics::read(store, day("2024-02-26"), day("2024-03-20"), TYPES)
        .await
        .expect("reads");
    assert_eq!(actual.hourly, expected.hourly, "hourly counts");
    assert_eq!(
        actual.daily_types, expected.daily_types,
        "daily type counts"
    );
    assert_eq!(actual.dau, expected.dau, "daily active users");
    assert_eq!(actual.cohorts, expected.cohorts, "cohorts and retention");
}

/// Batches in offset order, of uneven sizes: exact rollups and stored events.
async fn rollups_are_exact(store: Arc<dyn HotStore>) {
    let events = dataset();
    let mut offset = 0;
    for chunk in events.chunks(37) {
        store
            .apply(&batch("t", 0, offset, chunk))
            .await
            .expect("apply");
        offset += chunk.len() as i64;
    }
    assert_analytics(store.as_ref(), &events).await;
    assert_eq!(
        store
            .watermark(TEST_CLUSTER, "t", 0)
            .await
            .expect("watermark"),
        Some(offset - 1)
    );
    let stored = store
        .event(events[5].event_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        (stored.event_type.as_str(), stored.payload.as_str()),
        (events[5].event_type.as_str(), r#"{"n":5}"#)
    );
}

/// Redelivery of whole batches, of overlapping ranges and of ranges that
/// extend into new offsets changes nothing that was counted.
async fn redelivery_changes_nothing(store: Arc<dyn HotStore>) {
    let events = dataset();
    store
        .apply(&batch("t", 1, 0, &events[..50]))
        .await
        .expect("apply");
    store
        .apply(&batch("t", 1, 50, &events[50..100]))
        .await
        .expect("apply");
    let outcome = store
        .apply(&batch("t", 1, 0, &events[..100]))
        .await
        .expect("whole redelivery");
    assert_eq!((outcome.counted, outcome.replayed), (0, 100));
    store
        .apply(&batch("t", 1, 25, &events[25..75]))
        .await
        .expect("partial redelivery");
    let outcome = store
        .apply(&batch("t", 1, 90, &events[90..160]))
        .await
        .expect("overlap into new offsets");
    assert_eq!((outcome.counted, outcome.replayed), (60, 10));
    assert_analytics(store.as_ref(), &events[..160]).await;
}

/// A new broker (another cluster id, offsets from 0 again) is not a
/// redelivery: its events count, and each cluster keeps its own watermark.
async fn offsets_of_another_cluster_are_new(store: Arc<dyn HotStore>) {
    let events = dataset();
    store
        .apply(&batch("t", 2, 0, &events[..120]))
        .await
        .expect("apply");
    let mut from_new_broker = batch("t", 2, 0, &events[120..]);
    from_new_broker.cluster = "a-new-broker".into();
    let outcome = store.apply(&from_new_broker).await.expect("apply");
    assert_eq!((outcome.counted, outcome.replayed), (120, 0));
    assert_analytics(store.as_ref(), &events).await;
    assert_eq!(
        store
            .watermark(TEST_CLUSTER, "t", 2)
            .await
            .expect("watermark"),
        Some(119)
    );
    assert_eq!(
        store
            .watermark("a-new-broker", "t", 2)
            .await
            .expect("watermark"),
        Some(119)
    );
    // A redelivery from the new broker is still one.
    let outcome = store.apply(&from_new_broker).await.expect("apply again");
    assert_eq!((outcome.counted, outcome.replayed), (0, 120));
    assert_analytics(store.as_ref(), &events).await;
}

/// A client retry (same event id, later offset) and an in-batch duplicate count once.
async fn same_event_id_counts_once(store: Arc<dyn HotStore>) {
    let mut events = dataset()[..60].to_vec();
    let mut retry = events[10].clone();
    retry.received_at += Duration::seconds(3);
    events.push(retry.clone());
    events.push(retry);
    store
        .apply(&batch("t", 2, 0, &events[..30]))
        .await
        .expect("apply");
    let outcome = store
        .apply(&batch("t", 2, 30, &events[30..]))
        .await
        .expect("apply");
    assert_eq!(outcome.duplicates, 2);
    assert_analytics(store.as_ref(), &events).await;
}

/// A late event that moves a user's first-seen day earlier moves the user,
/// with all its activity, to the earlier cohort.
async fn late_event_moves_cohort(store: Arc<dyn HotStore>) {
    let events = vec![
        event("click", "late", at("2024-03-06T10:00:00Z"), 0),
        event("click", "late", at("2024-03-08T10:00:00Z"), 1),
        event("click", "other", at("2024-03-06T11:00:00Z"), 2),
        event("click", "late", at("2024-03-05T09:00:00Z"), 3),
    ];
    store
        .apply(&batch("t", 3, 0, &events[..3]))
        .await
        .expect("apply");
    store
        .apply(&batch("t", 3, 3, &events[3..]))
        .await
        .expect("apply");
    assert_analytics(store.as_ref(), &events).await;
    let user = store.user("late").await.expect("read").expect("user");
    assert_eq!(user.first_seen, Some(day("2024-03-05")));
}

/// A batch whose counter changes do not fit one DynamoDB transaction, and one
/// event that alone does not (a late event re-bucketing 70 active days).
async fn large_batches_are_exact(store: Arc<dyn HotStore>) {
    let start = at("2024-03-04T00:00:00Z");
    let mut events: Vec<Event> = (0..400)
        .map(|i| {
            event(
                TYPES[i % 5],
                &format!("u{}", i % 37),
                start + Duration::hours(i as i64 % 170),
                i,
            )
        })
        .collect();
    // One user active on 70 consecutive days, then an event before all of them.
    events.extend((0..70).map(|d| {
        event(
            "click",
            "veteran",
            start + Duration::days(d),
            1000 + d as usize,
        )
    }));
    store
        .apply(&batch("t", 4, 0, &events))
        .await
        .expect("apply");
    let late = vec![event("click", "veteran", start - Duration::days(1), 9999)];
    store
        .apply(&batch("t", 4, events.len() as i64, &late))
        .await
        .expect("apply heavy event");
    events.extend(late);
    let expected = Analytics::expected(&events);
    let actual = Analytics::read(store.as_ref(), day("2024-02-26"), day("2024-05-20"), TYPES)
        .await
        .expect("reads");
    assert_eq!(actual, expected);
}

/// Pages walk every event newest first with no duplicate and no gap, for
/// latest, by type and by user.
async fn pagination_is_complete_and_ordered(store: Arc<dyn HotStore>) {
    let mut events = dataset();
    // Ties on the timestamp are broken by event id.
    let tie = events[0].timestamp;
    for e in events.iter_mut().take(12) {
        e.timestamp = tie;
    }
    store
        .apply(&batch("t", 5, 0, &events))
        .await
        .expect("apply");
    let mut expected: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.timestamp,
                e.event_id,
                e.event_type.clone(),
                e.user_id.clone(),
            )
        })
        .collect();
    expected.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    for filter in [
        EventFilter::default(),
        EventFilter {
            event_type: Some("click".into()),
            user_id: None,
        },
        EventFilter {
            event_type: None,
            user_id: Some("user-7".into()),
        },
        EventFilter {
            event_type: Some("click".into()),
            user_id: Some("user-7".into()),
        },
    ] {
        let walked = all_pages(&store, &filter, 7).await.expect("pages");
        let want: Vec<_> = expected
            .iter()
            .filter(|e| {
                filter.event_type.as_ref().is_none_or(|t| *t == e.2)
                    && filter.user_id.as_ref().is_none_or(|u| *u == e.3)
            })
            .map(|e| e.1)
            .collect();
        let got: Vec<_> = walked.iter().map(|e| e.event_id).collect();
        assert_eq!(got, want, "pages for {filter:?}");
    }
}

/// Users and types spelled with the store's own key prefixes and
/// separators (`USER#`, `#`, the all-types key `*`) are data like any other:
/// each user's and each type's events and counts are exactly its own.
async fn keys_with_the_stores_own_separators_are_data_like_any_other(store: Arc<dyn HotStore>) {
    let users = ["u1", "USER#u1", "USER#", "a#b", "#"];
    let types = ["click", "*", "TYPE#click#0", "click#0", "#"];
    let start = at("2024-03-04T10:00:00Z");
    let events: Vec<Event> = (0..50)
        .map(|i| {
            event(
                types[i % types.len()],
                users[(i / types.len()) % users.len()],
                start + Duration::minutes(i as i64),
                i,
            )
        })
        .collect();
    store
        .apply(&batch("t", 0, 0, &events))
        .await
        .expect("apply");
    for user in users {
        let filter = EventFilter {
            user_id: Some(user.to_string()),
            ..EventFilter::default()
        };
        let got = all_pages(&store, &filter, 7).await.expect("pages").len();
        let want = events.iter().filter(|e| e.user_id == user).count();
        assert_eq!(got, want, "events of user {user:?}");
    }
    let hour_end = start + Duration::hours(1);
    for event_type in types {
        let filter = EventFilter {
            event_type: Some(event_type.to_string()),
            ..EventFilter::default()
        };
        let want = events.iter().filter(|e| e.event_type == event_type).count();
        let got = all_pages(&store, &filter, 7).await.expect("pages").len();
        assert_eq!(got, want, "events of type {event_type:?}");
        let counted: i64 = store
            .hourly_counts(Some(event_type), start, hour_end)
            .await
            .expect("counts")
            .iter()
            .map(|(_, n)| n)
            .sum();
        assert_eq!(counted, want as i64, "count of type {event_type:?}");
    }
    let all: i64 = store
        .hourly_counts(None, start, hour_end)
        .await
        .expect("counts")
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(all, events.len() as i64, "count of all types");
    let daily = store
        .daily_type_counts(day("2024-03-04"), day("2024-03-04"))
        .await
        .expect("daily");
    for event_type in types {
        let want = events.iter().filter(|e| e.event_type == event_type).count() as i64;
        let got: i64 = daily
            .iter()
            .filter(|(_, t, _)| t == event_type)
            .map(|(_, _, n)| n)
            .sum();
        assert_eq!(got, want, "daily count of type {event_type:?}");
    }
    let dau = store
        .daily_active_users(day("2024-03-04"), day("2024-03-04"))
        .await
        .expect("dau");
    assert_eq!(dau, vec![(day("2024-03-04"), users.len() as i64)]);
    // A redelivery changes nothing; a day later every user is found again
    // by its state (first seen on the first day), none is new.
    let outcome = store
        .apply(&batch("t", 0, 0, &events))
        .await
        .expect("redelivery");
    assert_eq!(outcome.counted, 0);
    let next_day: Vec<Event> = users
        .iter()
        .enumerate()
        .map(|(i, user)| event("click", user, start + Duration::days(1), 100 + i))
        .collect();
    store
        .apply(&batch("t", 0, events.len() as i64, &next_day))
        .await
        .expect("next day");
    let cohorts = store
        .cohorts(Window::Daily, day("2024-03-04"), 2)
        .await
        .expect("cohorts");
    let sizes: Vec<(chrono::NaiveDate, i64)> = cohorts.iter().map(|c| (c.start, c.size)).collect();
    assert!(
        sizes.contains(&(day("2024-03-04"), users.len() as i64))
            && sizes.contains(&(day("2024-03-05"), 0)),
        "{sizes:?}"
    );
}

macro_rules! contract {
    ($($scenario:ident),*) => {
        mod sqlite {
            use super::*;
            $(#[tokio::test]
            async fn $scenario() {
                let (store, _dir) = sqlite_store().expect("sqlite");
                super::$scenario(Arc::new(store)).await;
            })*
        }
        mod dynamodb_on_emulator {
            use super::*;
            $(#[tokio::test]
            async fn $scenario() {
                let emulator = AwsEmulator::start().await.expect("AWS emulator");
                let store = dynamodb_store(emulator.endpoint(), 3).await.expect("table");
                super::$scenario(Arc::new(store)).await;
            })*
        }
    };
}

contract!(
    rollups_are_exact,
    redelivery_changes_nothing,
    offsets_of_another_cluster_are_new,
    same_event_id_counts_once,
    late_event_moves_cohort,
    large_batches_are_exact,
    pagination_is_complete_and_ordered,
    keys_with_the_stores_own_separators_are_data_like_any_other
);
