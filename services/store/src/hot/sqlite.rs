//! The embedded hot store: SQLite in WAL mode, for `provision dev` and
//! single-machine use. A batch is one SQLite transaction, so the fence of
//! the module docs is simply "read `W`, write everything, `W := max(W,
//! last)`, commit". One writer connection; reads use their own connections
//! so they never wait behind a batch.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::{
    batch_keys, empty_cohorts, plan_batch, sortable_time, ApplyOutcome, Batch, CohortRow, Cursor,
    EventFilter, EventPage, HotReader, HotWriter, Reachable, StoredEvent,
};
use crate::rollup::{UserState, Window};
use crate::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload     TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_latest  ON events (ts DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS events_by_type ON events (event_type, ts DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, ts DESC, event_id DESC);
-- `expires_at` mirrors DynamoDB's TTL attribute; nothing here queries it,
-- so no index keeps it (one fewer B-tree to write per event).
DROP INDEX IF EXISTS events_expiry;
CREATE TABLE IF NOT EXISTS hourly_counts (event_type TEXT, hour TEXT, count INTEGER NOT NULL, PRIMARY KEY (event_type, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_type_counts (day TEXT, event_type TEXT, count INTEGER NOT NULL, PRIMARY KEY (day, event_type)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_active_users (day TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cohort_sizes (window TEXT, cohort TEXT, size INTEGER NOT NULL, PRIMARY KEY (window, cohort)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retention (window TEXT, cohort TEXT, period INTEGER, count INTEGER NOT NULL, PRIMARY KEY (window, cohort, period)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cluster_watermarks (cluster TEXT, topic TEXT, partition INTEGER, last_offset INTEGER NOT NULL, PRIMARY KEY (cluster, topic, partition)) WITHOUT ROWID;
";

/// A partition's watermark on a cluster (`?1` cluster, `?2` topic, `?3` partition).
const WATERMARK_SQL: &str =
    "SELECT last_offset FROM cluster_watermarks WHERE cluster = ?1 AND topic = ?2 AND partition = ?3";

/// How many reader connections serve queries.
const READERS: usize = 4;

/// The SQLite adapter.
#[derive(Clone)]
pub struct SqliteHotStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    path: PathBuf,
    ttl: Duration,
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

impl SqliteHotStore {
    /// Opens (creating if needed) the database at `path`; event rows expire
    /// `ttl_days` after their timestamp.
    pub fn open(path: &Path, ttl_days: u32) -> Result<Self, StoreError> {
        let writer = Connection::open(path).map_err(sql_err)?;
        // WAL: readers never block the writer; FULL: a committed batch
        // survives a crash of the process and of the machine. A 64 MiB page
        // cache keeps index pages out of pread copies (profiled); a 32 MiB
        // WAL between checkpoints writes a page changed by many batches back
        // once (profiled: 8% of throughput).
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;
                 PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=8000;",
            )
            .map_err(sql_err)?;
        writer.execute_batch(SCHEMA).map_err(sql_err)?;
        let readers = (0..READERS)
            .map(|_| {
                let c = Connection::open(path).map_err(sql_err)?;
                c.execute_batch("PRAGMA busy_timeout=5000; PRAGMA query_only=1;")
                    .map_err(sql_err)?;
                Ok(Mutex::new(c))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(readers),
            path: path.to_path_buf(),
            ttl: Duration::days(i64::from(ttl_days)),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer connection off the async runtime.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| StoreError::Unavailable("sqlite writer poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task: {e}")))?
    }

    /// Runs `f` on a free reader connection (or waits for one).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers
                .iter()
                .find_map(|r| r.try_lock().ok())
                .map_or_else(|| readers[fastrand::usize(..readers.len())].lock(), Ok)
                .map_err(|_| StoreError::Unavailable("sqlite reader poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task: {e}")))?
    }
}

fn apply_in_transaction(
    conn: &mut Connection,
    batch: &Batch,
    ttl: Duration,
) -> Result<ApplyOutcome, StoreError> {
    let tx = conn.transaction().map_err(sql_err)?;
    let watermark: Option<i64> = tx
        .query_row(
            WATERMARK_SQL,
            params![batch.cluster, batch.topic, batch.partition],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err)?;
    let (ids, user_ids) = batch_keys(batch);
    let mut stored = HashSet::new();
    {
        let mut exists = tx
            .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")
            .map_err(sql_err)?;
        for id in ids {
            if exists.exists(params![id.to_string()]).map_err(sql_err)? {
                stored.insert(id);
            }
        }
    }
    let mut users = BTreeMap::new();
    {
        let mut get_user = tx
            .prepare_cached("SELECT state FROM users WHERE user_id = ?1")
            .map_err(sql_err)?;
        for user in user_ids {
            let state: Option<String> = get_user
                .query_row(params![user], |r| r.get(0))
                .optional()
                .map_err(sql_err)?;
            if let Some(state) = state {
                let state: UserState = serde_json::from_str(&state).map_err(|e| {
                    StoreError::Invalid(format!("stored state of user {user}: {e}"))
                })?;
                users.insert(user, state);
            }
        }
    }
    let plan = plan_batch(batch, watermark, &stored, &users);
    let delta = &plan.delta;
    {
        let mut hourly = tx
            .prepare_cached(
                "INSERT INTO hourly_counts VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE SET count = count + excluded.count",
            )
            .map_err(sql_err)?;
        for ((event_type, hour), n) in &delta.hourly {
            hourly
                .execute(params![event_type, sortable_time(*hour), n])
                .map_err(sql_err)?;
        }
        let mut daily = tx
            .prepare_cached(
                "INSERT INTO daily_type_counts VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE SET count = count + excluded.count",
            )
            .map_err(sql_err)?;
        for ((day, event_type), n) in &delta.daily_types {
            daily
                .execute(params![day.to_string(), event_type, n])
                .map_err(sql_err)?;
        }
        let mut dau = tx
            .prepare_cached(
                "INSERT INTO daily_active_users VALUES (?1, ?2) ON CONFLICT DO UPDATE SET count = count + excluded.count",
            )
            .map_err(sql_err)?;
        for (day, n) in &delta.dau {
            dau.execute(params![day.to_string(), n]).map_err(sql_err)?;
        }
        let mut sizes = tx
            .prepare_cached("INSERT INTO cohort_sizes VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE SET size = size + excluded.size")
            .map_err(sql_err)?;
        for ((window, cohort), n) in &delta.cohort_sizes {
            sizes
                .execute(params![window.as_str(), cohort.to_string(), n])
                .map_err(sql_err)?;
        }
        let mut retention = tx
            .prepare_cached(
                "INSERT INTO retention VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET count = count + excluded.count",
            )
            .map_err(sql_err)?;
        for ((window, cohort, period), n) in &delta.retention {
            retention
                .execute(params![window.as_str(), cohort.to_string(), period, n])
                .map_err(sql_err)?;
        }
        let mut put_user = tx
            .prepare_cached("INSERT OR REPLACE INTO users VALUES (?1, ?2)")
            .map_err(sql_err)?;
        for (user, state) in &delta.users {
            let state =
                serde_json::to_string(state).map_err(|e| StoreError::Invalid(e.to_string()))?;
            put_user.execute(params![user, state]).map_err(sql_err)?;
        }
        let mut put_event = tx
            .prepare_cached("INSERT OR IGNORE INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .map_err(sql_err)?;
        for delivered in &plan.new_events {
            let e = &delivered.event;
            put_event
                .execute(params![
                    e.event_id.to_string(),
                    e.event_type,
                    e.user_id,
                    sortable_time(e.timestamp),
                    sortable_time(e.received_at),
                    e.payload.get(),
                    (e.timestamp + ttl).timestamp(),
                ])
                .map_err(sql_err)?;
        }
    }
    tx.execute(
        "INSERT INTO cluster_watermarks VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET last_offset = max(last_offset, excluded.last_offset)",
        params![batch.cluster, batch.topic, batch.partition, batch.last_offset],
    )
    .map_err(sql_err)?;
    tx.commit().map_err(sql_err)?;
    Ok(plan.outcome)
}

fn row_to_event(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn parse_event(
    (id, event_type, user_id, ts, received_at, payload): (
        String,
        String,
        String,
        String,
        String,
        String,
    ),
) -> Result<StoredEvent, StoreError> {
    let time = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::Invalid(format!("stored time {s}: {e}")))
    };
    Ok(StoredEvent {
        event_id: Uuid::parse_str(&id)
            .map_err(|e| StoreError::Invalid(format!("stored id {id}: {e}")))?,
        event_type,
        user_id,
        timestamp: time(&ts)?,
        received_at: time(&received_at)?,
        payload,
    })
}

fn parse_day(s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| StoreError::Invalid(format!("stored day {s}: {e}")))
}

#[async_trait]
impl HotWriter for SqliteHotStore {
    async fn apply(&self, batch: &Batch) -> Result<ApplyOutcome, StoreError> {
        let batch = batch.clone();
        let ttl = self.ttl;
        self.write(move |conn| apply_in_transaction(conn, &batch, ttl))
            .await
    }

    async fn watermark(
        &self,
        cluster: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        let (cluster, topic) = (cluster.to_string(), topic.to_string());
        self.read(move |c| {
            c.query_row(WATERMARK_SQL, params![cluster, topic, partition], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_err)
        })
        .await
    }
}

#[async_trait]
impl Reachable for SqliteHotStore {
    async fn check(&self) -> Result<(), StoreError> {
        self.read(|c| {
            c.query_row("SELECT count(*) FROM cluster_watermarks", [], |_| Ok(()))
                .map_err(sql_err)
        })
        .await
    }
}

#[async_trait]
impl HotReader for SqliteHotStore {
    async fn events(
        &self,
        filter: &EventFilter,
        limit: usize,
        after: Option<Cursor>,
    ) -> Result<EventPage, StoreError> {
        let filter = filter.clone();
        self.read(move |c| {
            let mut sql = String::from("SELECT event_id, event_type, user_id, ts, received_at, payload FROM events WHERE 1=1");
            let mut args: Vec<String> = Vec::new();
            if let Some(t) = &filter.event_type {
                args.push(t.clone());
                sql.push_str(&format!(" AND event_type = ?{}", args.len()));
            }
            if let Some(u) = &filter.user_id {
                args.push(u.clone());
                sql.push_str(&format!(" AND user_id = ?{}", args.len()));
            }
            if let Some(cursor) = after {
                args.push(sortable_time(cursor.timestamp));
                args.push(cursor.event_id.to_string());
                sql.push_str(&format!(" AND (ts, event_id) < (?{}, ?{})", args.len() - 1, args.len()));
            }
            sql.push_str(&format!(" ORDER BY ts DESC, event_id DESC LIMIT {limit}"));
            let mut stmt = c.prepare_cached(&sql).map_err(sql_err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), row_to_event)
                .map_err(sql_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            let events = rows.into_iter().map(parse_event).collect::<Result<Vec<_>, _>>()?;
            let next = if events.len() == limit { events.last().map(StoredEvent::cursor) } else { None };
            Ok(EventPage { events, next })
        })
        .await
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |c| {
            let row = c
                .query_row(
                    "SELECT event_id, event_type, user_id, ts, received_at, payload FROM events WHERE event_id = ?1",
                    params![event_id.to_string()],
                    row_to_event,
                )
                .optional()
                .map_err(sql_err)?;
            row.map(parse_event).transpose()
        })
        .await
    }

    async fn hourly_counts(
        &self,
        event_type: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64)>, StoreError> {
        let event_type = event_type.unwrap_or(crate::rollup::ALL_TYPES).to_string();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT hour, count FROM hourly_counts WHERE event_type = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![event_type, sortable_time(from), sortable_time(to)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(sql_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            rows.into_iter()
                .map(|(hour, n)| {
                    DateTime::parse_from_rfc3339(&hour)
                        .map(|h| (h.with_timezone(&Utc), n))
                        .map_err(|e| StoreError::Invalid(format!("stored hour {hour}: {e}")))
                })
                .collect()
        })
        .await
    }

    async fn daily_type_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, i64)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT day, event_type, count FROM daily_type_counts WHERE day >= ?1 AND day <= ?2 ORDER BY day, event_type",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![from.to_string(), to.to_string()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(sql_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            rows.into_iter().map(|(d, t, n)| Ok((parse_day(&d)?, t, n))).collect()
        })
        .await
    }

    async fn daily_active_users(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, i64)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT day, count FROM daily_active_users WHERE day >= ?1 AND day <= ?2 ORDER BY day")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![from.to_string(), to.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sql_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            rows.into_iter().map(|(d, n)| Ok((parse_day(&d)?, n))).collect()
        })
        .await
    }

    async fn cohorts(
        &self,
        window: Window,
        from: NaiveDate,
        count: usize,
    ) -> Result<Vec<CohortRow>, StoreError> {
        let Some((first, last, mut rows)) = empty_cohorts(window, from, count) else {
            return Ok(Vec::new());
        };
        self.read(move |c| {
            let mut sizes = c
                .prepare_cached("SELECT cohort, size FROM cohort_sizes WHERE window = ?1 AND cohort >= ?2 AND cohort <= ?3")
                .map_err(sql_err)?;
            let found = sizes
                .query_map(params![window.as_str(), first.to_string(), last.to_string()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(sql_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            for (cohort, size) in found {
                if let Some(row) = rows.get_mut(&parse_day(&cohort)?) {
                    row.size = size;
                }
            }
            let mut retention = c
                .prepare_cached(
                    "SELECT cohort, period, count FROM retention WHERE window = ?1 AND cohort >= ?2 AND cohort <= ?3",
                )
                .map_err(sql_err)?;
            let found = retention
                .query_map(params![window.as_str(), first.to_string(), last.to_string()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(sql_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            for (cohort, period, n) in found {
                if let Some(row) = rows.get_mut(&parse_day(&cohort)?) {
                    if n != 0 {
                        row.retained.insert(period, n);
                    }
                }
            }
            Ok(rows.into_values().collect())
        })
        .await
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserState>, StoreError> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let state: Option<String> = c
                .query_row(
                    "SELECT state FROM users WHERE user_id = ?1",
                    params![user_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err)?;
            state
                .map(|s| {
                    serde_json::from_str(&s)
                        .map_err(|e| StoreError::Invalid(format!("stored user: {e}")))
                })
                .transpose()
        })
        .await
    }
}
