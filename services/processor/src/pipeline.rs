//! The consume -> write -> commit loop.
//!
//! Messages are batched per partition, by count and by age. A batch is
//! written in this order, and only then committed (synchronously):
//! dead letters to the DLQ topic, the hot store, the cold store. The cold
//! store comes after the hot one, never beside it: the hot store's watermark
//! is what tells a partition's next owner where this batch ended, so an
//! archived object always has boundaries a redelivery reproduces (written
//! at once, a member that lost its partition while the hot write failed left
//! objects of its own boundaries: 189 archived copies of 160 events). Any failure
//! retries the same batch with bounded exponential backoff and jitter while
//! consumption is paused; nothing is skipped and nothing goes to the DLQ for
//! it. A crash or a revoked partition loses only uncommitted work, which is
//! delivered again; the stores make that redelivery change nothing.
//!
//! Rebalances: revoked partitions' batches are dropped right after the poll
//! that revoked them, before a tick or a new assignment's message can touch
//! them. A commit that does not go through (a rebalance in progress) rewinds
//! the partition to the batch just written, so a partition never has more
//! than one written, uncommitted batch, which its next owner cuts at the
//! same boundaries. A write that comes long after the last poll first
//! checks that this member still owns the partition.
//!
//! Shutdown interrupts any wait: buffered batches get one drain of at most
//! [`DRAIN_TIME`] in all, and a batch not written by then stays uncommitted.
//!
//! After a partition is (re)assigned, its first batch is cut at the hot
//! store's watermark, so a redelivered batch has the boundaries of the one
//! written before and overwrites the same cold objects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use event_common::event::Event;
use event_common::lifecycle::Health;
use event_common::traces;
use event_store::cold::ColdStore;
use event_store::hot::{ApplyOutcome, Batch, Delivered, HotWriter};
use event_store::StoreError;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ProcessorConfig;

/// Remembers revoked partitions, so the loop drops their uncommitted batches.
#[derive(Default)]
pub struct RebalanceContext {
    revoked: Mutex<Vec<i32>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.extend(partitions.elements().iter().map(|e| e.partition()));
            }
            tracing::info!(
                partitions = partitions.count(),
                "partitions revoked; uncommitted batches will be redelivered"
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(partitions = partitions.count(), "partitions assigned");
        }
    }
}

/// The consumer type of the processor.
pub type EventConsumer = StreamConsumer<RebalanceContext>;

/// Reports `consumer_lag{partition}`: the broker's high watermark minus the
/// consumer's position, for every assigned partition. Blocking; run it off
/// the async workers.
pub fn report_lag(consumer: &EventConsumer) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for element in positions.elements() {
        let Offset::Offset(position) = element.offset() else {
            continue;
        };
        if let Ok((_, high)) =
            consumer.fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(2))
        {
            metrics::gauge!("consumer_lag", "partition" => element.partition().to_string())
                .set((high - position).max(0) as f64);
        }
    }
}

/// Puts the failure counters on `/metrics` at 0 before the first failure:
/// a series that appears only with its first increment is one Prometheus's
/// `rate()` and `increase()` miss, and the shipped alerts would not fire.
pub fn zero_series() {
    for store in ["hot", "cold", "dlq"] {
        metrics::counter!("store_write_retries_total", "store" => store, "reason" => "error")
            .increment(0);
    }
    for store in ["hot", "cold"] {
        metrics::counter!("store_throttles_total", "store" => store).increment(0);
    }
    for reason in ["decode", "contract"] {
        metrics::counter!("consumer_dlq_messages_total", "reason" => reason).increment(0);
    }
}

/// How long draining may take after shutdown is requested: well within the
/// 30 s ECS waits between SIGTERM and SIGKILL.
pub const DRAIN_TIME: Duration = Duration::from_secs(8);

/// Shutdown as the pipeline sees it: requested once, then [`DRAIN_TIME`] to finish.
#[derive(Clone, Default)]
pub struct Shutdown {
    requested: CancellationToken,
    at: Arc<OnceLock<Instant>>,
}

impl Shutdown {
    /// Asks the pipeline to stop: waits end now, draining ends [`DRAIN_TIME`] later.
    pub fn request(&self) {
        self.at.get_or_init(Instant::now);
        self.requested.cancel();
    }

    /// Resolves once shutdown is requested.
    async fn requested(&self) {
        self.requested.cancelled().await;
    }

    /// When draining must end, once shutdown is requested.
    fn deadline(&self) -> Option<Instant> {
        self.at.get().map(|at| *at + DRAIN_TIME)
    }

    /// Resolves when draining time is up.
    async fn expired(&self) {
        self.requested().await;
        if let Some(deadline) = self.deadline() {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// A message that is not a valid event, bound for the DLQ topic.
struct DeadLetter {
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    kind: &'static str,
    error: String,
}

struct PartitionBuffer {
    cluster: String,
    first_offset: i64,
    last_offset: i64,
    events: Vec<Delivered>,
    dead: Vec<DeadLetter>,
    opened: Instant,
    /// The events that came with a `traceparent` (only kept while traces are on).
    traced: Vec<TracedEvent>,
}

/// An event whose trace the batch's write continues.
struct TracedEvent {
    traceparent: String,
    event_id: String,
    offset: i64,
}

/// How far a batch's write got, so a retry resumes where it failed instead
/// of resending dead letters or applying the hot store twice.
#[derive(Default)]
struct Progress {
    dead_letters_sent: usize,
    hot: Option<ApplyOutcome>,
    cold_written: bool,
}

/// Why a write stopped.
enum WriteError {
    /// A store failed; retried.
    Store {
        store: &'static str,
        error: StoreError,
    },
    /// The group may have given the partition to another member: the batch
    /// is theirs to write now.
    NotOwner,
}

/// Past this long without polling the consumer (a slow or retried write,
/// draining), a write first checks that this member still owns the
/// partition: meanwhile the group may have moved it to another member,
/// whose batches have other boundaries.
const OWNERSHIP_CHECK_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct Pipeline {
    pub consumer: Arc<EventConsumer>,
    dlq: FutureProducer,
    hot: Arc<dyn HotWriter>,
    cold: Arc<dyn ColdStore>,
    config: ProcessorConfig,
    /// Readiness, blocked while writes are denied or keep failing.
    health: Health,
    pub shutdown: Shutdown,
    /// The id of the Kafka cluster read from, read again at each assignment.
    cluster: String,
    /// When the consumer was last polled (rebalances are served only then).
    polled_at: Instant,
    buffers: HashMap<i32, PartitionBuffer>,
    /// Per partition since its assignment: the offset to cut the first batch at, once read.
    cut_points: HashMap<i32, Option<i64>>,
}

/// Failed attempts at one batch after which readiness reports the failure
/// (a moment of throttling is not worth taking the service out).
const UNREADY_AFTER_ATTEMPTS: u32 = 3;

impl Pipeline {
    pub fn new(
        consumer: Arc<EventConsumer>,
        dlq: FutureProducer,
        hot: Arc<dyn HotWriter>,
        cold: Arc<dyn ColdStore>,
        config: ProcessorConfig,
        health: Health,
    ) -> Self {
        Self {
            consumer,
            dlq,
            hot,
            cold,
            config,
            health,
            shutdown: Shutdown::default(),
            cluster: String::new(),
            polled_at: Instant::now(),
            buffers: HashMap::new(),
            cut_points: HashMap::new(),
        }
    }

    /// Runs until shutdown is requested, then writes and commits what is
    /// buffered, for at most [`DRAIN_TIME`].
    pub async fn run(mut self) {
        let interval = Duration::from_millis(self.config.batch_flush_interval_ms.max(1));
        let mut tick = tokio::time::interval(interval / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (consumer, shutdown) = (self.consumer.clone(), self.shutdown.clone());
        loop {
            tokio::select! {
                biased;
                () = shutdown.requested() => break,
                message = consumer.recv() => match message {
                    Ok(message) => {
                        let owned = Received::from(&message);
                        drop(message);
                        self.polled();
                        self.receive(owned).await;
                    }
                    Err(e) => {
                        // librdkafka reconnects by itself; do not spin on its errors meanwhile.
                        tracing::warn!(error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                _ = tick.tick() => {
                    self.polled();
                    let due: Vec<i32> = self.buffers.iter().filter(|(_, b)| b.opened.elapsed() >= interval).map(|(p, _)| *p).collect();
                    for partition in due {
                        self.flush(partition).await;
                    }
                }
            }
        }
        self.forget_revoked();
        tracing::info!(
            partitions = self.buffers.len(),
            "draining: writing buffered batches"
        );
        let partitions: Vec<i32> = self.buffers.keys().copied().collect();
        for partition in partitions {
            self.flush(partition).await;
        }
    }

    /// After each poll of the consumer, before anything else: rebalance
    /// callbacks run inside a poll, also one that returns no message, and a
    /// revoke and the next assignment can both happen inside one `recv()`.
    /// So the revoked partitions' batches go before a tick could write them
    /// or a message of the new assignment could join them.
    fn polled(&mut self) {
        self.polled_at = Instant::now();
        self.forget_revoked();
    }

    fn forget_revoked(&mut self) {
        let revoked: Vec<i32> = match self.consumer.context().revoked.lock() {
            Ok(mut r) => r.drain(..).collect(),
            Err(_) => return,
        };
        for partition in revoked {
            self.buffers.remove(&partition);
            self.cut_points.remove(&partition);
        }
    }

    async fn receive(&mut self, message: Received) {
        let partition = message.partition;
        if !self.cut_points.contains_key(&partition) {
            // Stopping: leave the message uncommitted, it is delivered again.
            let Some(watermark) = self.read_watermark(partition).await else {
                return;
            };
            let cut = watermark.filter(|w| *w >= message.offset);
            self.cut_points.insert(partition, cut);
        }
        let cut = self.cut_points.get(&partition).copied().flatten();
        // A compacted topic may skip the cut offset itself: close the batch before passing it.
        if cut.is_some_and(|c| message.offset > c) && self.buffers.contains_key(&partition) {
            self.flush(partition).await;
        }
        let buffer = self
            .buffers
            .entry(partition)
            .or_insert_with(|| PartitionBuffer {
                cluster: self.cluster.clone(),
                first_offset: message.offset,
                last_offset: message.offset,
                events: Vec::new(),
                dead: Vec::new(),
                opened: Instant::now(),
                traced: Vec::new(),
            });
        buffer.last_offset = message.offset;
        match decode(message.payload.as_deref()) {
            Ok(event) => {
                if let Some(traceparent) = message.traceparent {
                    buffer.traced.push(TracedEvent {
                        traceparent,
                        event_id: event.event_id.to_string(),
                        offset: message.offset,
                    });
                }
                buffer.events.push(Delivered {
                    offset: message.offset,
                    event,
                })
            }
            Err((kind, error)) => buffer.dead.push(DeadLetter {
                offset: message.offset,
                key: message.key,
                payload: message.payload,
                kind,
                error,
            }),
        }
        let full = buffer.events.len() + buffer.dead.len() >= self.config.batch_max_events;
        if full || cut == Some(message.offset) {
            self.flush(partition).await;
        }
        if cut.is_some_and(|c| message.offset >= c) {
            self.cut_points.insert(partition, None);
        }
    }

    /// The cluster's id and the partition's watermark on it, retried until
    /// read; `None` when shutdown came first.
    async fn read_watermark(&mut self, partition: i32) -> Option<Option<i64>> {
        let mut attempt = 0;
        loop {
            let read = match self.fetch_cluster_id().await {
                Ok(cluster) => {
                    let read = self
                        .hot
                        .watermark(&cluster, &self.config.kafka_topic, partition)
                        .await
                        .map_err(|e| e.to_string());
                    self.cluster = cluster;
                    read
                }
                Err(error) => Err(error),
            };
            match read {
                Ok(w) => return Some(w),
                Err(error) => {
                    attempt += 1;
                    let wait = self.backoff(attempt);
                    tracing::warn!(%error, partition, ?wait, "cannot read the cluster id or the partition watermark; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.shutdown.requested() => return None,
                    }
                }
            }
        }
    }

    async fn fetch_cluster_id(&self) -> Result<String, String> {
        let consumer = self.consumer.clone();
        let id = tokio::task::spawn_blocking(move || {
            consumer.client().fetch_cluster_id(Duration::from_secs(5))
        })
        .await
        .map_err(|e| format!("cluster id task: {e}"))?
        .ok_or_else(|| "the broker did not tell its cluster id".to_string())?;
        Ok(match &self.config.broker_run {
            Some(run) => format!("{id}.{run}"),
            None => id,
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        // Full jitter over an exponential ceiling, capped.
        let ceiling = 100u64
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.store_backoff_max_ms.max(1));
        Duration::from_millis(ceiling / 2 + fastrand::u64(..=ceiling / 2))
    }

    /// Writes and commits one partition's batch, retrying until it succeeds
    /// or, once shutdown is requested, until draining time is up. With
    /// traces on, that is the `batch write` span.
    async fn flush(&mut self, partition: i32) {
        if !traces::enabled() {
            return self.write_and_commit(partition).await;
        }
        let span = tracing::info_span!("batch write", partition);
        self.write_and_commit(partition).instrument(span).await;
    }

    async fn write_and_commit(&mut self, partition: i32) {
        let Some(buffer) = self.buffers.remove(&partition) else {
            return;
        };
        let started_at = SystemTime::now();
        let batch = Batch {
            cluster: buffer.cluster,
            topic: self.config.kafka_topic.clone(),
            partition,
            first_offset: buffer.first_offset,
            last_offset: buffer.last_offset,
            events: buffer.events,
        };
        let size = batch.events.len() + buffer.dead.len();
        let started = Instant::now();
        let mut attempt = 0;
        let mut paused: Option<TopicPartitionList> = None;
        let mut progress = Progress::default();
        let mut not_owner = false;
        let outcome = loop {
            let written = tokio::select! {
                written = self.write(&batch, &buffer.dead, &mut progress) => written,
                () = self.shutdown.expired() => {
                    tracing::error!(partition, "draining time is up during a write; the batch stays uncommitted and will be redelivered");
                    break None;
                }
            };
            match written {
                Ok(outcome) => break Some(outcome),
                Err(WriteError::NotOwner) => {
                    not_owner = true;
                    break None;
                }
                Err(WriteError::Store { store, error }) => {
                    if matches!(error, StoreError::Throttled(_)) {
                        metrics::counter!("store_throttles_total", "store" => store).increment(1);
                    }
                    metrics::counter!("store_write_retries_total", "store" => store, "reason" => "error").increment(1);
                    if paused.is_none() {
                        if let Ok(assignment) = self.consumer.assignment() {
                            if self.consumer.pause(&assignment).is_ok() {
                                paused = Some(assignment);
                            }
                        }
                    }
                    attempt += 1;
                    let denied = matches!(error, StoreError::Denied(_));
                    // A denied call waits for an operator: retry slowly, not as an outage.
                    let wait = if denied {
                        Duration::from_millis(self.config.store_backoff_max_ms.max(1))
                    } else {
                        self.backoff(attempt)
                    };
                    if denied || attempt >= UNREADY_AFTER_ATTEMPTS {
                        let why = if denied { "denied" } else { "failing" };
                        self.health.block(format!(
                            "{store} writes {why} (partition {partition}, nothing committed): {error}"
                        ));
                    }
                    if self
                        .shutdown
                        .deadline()
                        .is_some_and(|d| Instant::now() + wait > d)
                    {
                        tracing::error!(%error, store, partition, "draining: giving up on a batch; it stays uncommitted and will be redelivered");
                        break None;
                    }
                    if denied {
                        tracing::error!(%error, store, partition, "write denied: the task role does not allow this call; consumption paused, nothing committed");
                    } else {
                        tracing::warn!(%error, store, partition, attempt, ?wait, "write failed; consumption paused, retrying");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.shutdown.requested(), if self.shutdown.deadline().is_none() => {
                            tracing::error!(%error, store, partition, "shutdown during a retry: the batch stays uncommitted and will be redelivered");
                            break None;
                        }
                    }
                }
            }
        };
        if let Some(assignment) = paused {
            if let Err(e) = self.consumer.resume(&assignment) {
                tracing::warn!(error = %e, "cannot resume consumption");
            }
        }
        let Some(outcome) = outcome else {
            if not_owner && self.shutdown.deadline().is_none() {
                tracing::info!(
                    partition,
                    first = batch.first_offset,
                    "the group is moving this partition; its batch is left to the next owner"
                );
                self.rewind(partition, batch.first_offset).await;
            }
            return;
        };
        if attempt > 0 {
            self.health.unblock();
        }
        if self.commit(partition, batch.last_offset + 1).await {
            tracing::debug!(
                partition,
                first = batch.first_offset,
                last = batch.last_offset,
                ?outcome,
                "batch committed"
            );
            // One span per traced event, in its own trace, linked to this batch.
            for traced in &buffer.traced {
                traces::record_child(
                    "process event",
                    &traced.traceparent,
                    started_at,
                    &[
                        ("event.id", traced.event_id.clone()),
                        ("messaging.destination.partition.id", partition.to_string()),
                        ("messaging.kafka.offset", traced.offset.to_string()),
                    ],
                );
            }
        } else {
            self.rewind(partition, batch.first_offset).await;
        }

        let count = |outcome: &'static str, n: usize| {
            metrics::counter!("consumer_messages_processed_total", "outcome" => outcome)
                .increment(n as u64);
        };
        count("stored", outcome.counted);
        count("replayed", outcome.replayed);
        count("duplicate", outcome.duplicates);
        count("dead_lettered", buffer.dead.len());
        metrics::histogram!("consumer_batch_size").record(size as f64);
        metrics::histogram!("consumer_batch_write_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("consumer_message_processing_seconds")
            .record_many(buffer.opened.elapsed().as_secs_f64(), size);
    }

    /// Runs the stages of a batch's write that `progress` says are not done yet.
    async fn write(
        &self,
        batch: &Batch,
        dead: &[DeadLetter],
        progress: &mut Progress,
    ) -> Result<ApplyOutcome, WriteError> {
        for letter in &dead[progress.dead_letters_sent..] {
            self.dead_letter(batch.partition, letter)
                .await
                .map_err(|error| WriteError::Store {
                    store: "dlq",
                    error: StoreError::Unavailable(error),
                })?;
            progress.dead_letters_sent += 1;
        }
        let outcome = match progress.hot {
            Some(outcome) => outcome,
            None => {
                self.check_ownership(batch).await?;
                let outcome = self
                    .hot
                    .apply(batch)
                    .await
                    .map_err(|error| WriteError::Store {
                        store: "hot",
                        error,
                    })?;
                *progress.hot.insert(outcome)
            }
        };
        if !progress.cold_written && !batch.events.is_empty() {
            self.check_ownership(batch).await?;
            self.cold
                .write(batch)
                .await
                .map_err(|error| WriteError::Store {
                    store: "cold",
                    error,
                })?;
            progress.cold_written = true;
        }
        Ok(outcome)
    }

    /// Fences writes of a partition this member may have lost (see
    /// [`OWNERSHIP_CHECK_AFTER`]): committing the offset already committed
    /// changes nothing, and goes through only for a member of the group's
    /// current generation.
    async fn check_ownership(&self, batch: &Batch) -> Result<(), WriteError> {
        if self.polled_at.elapsed() < OWNERSHIP_CHECK_AFTER {
            return Ok(());
        }
        match self.commit_once(batch.partition, batch.first_offset).await {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::info!(%error, partition = batch.partition, "ownership check failed");
                Err(WriteError::NotOwner)
            }
        }
    }

    /// One synchronous commit of `next_offset` for `partition`.
    async fn commit_once(&self, partition: i32, next_offset: i64) -> Result<(), String> {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(
                &self.config.kafka_topic,
                partition,
                Offset::Offset(next_offset),
            )
            .map_err(|e| e.to_string())?;
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|e| format!("commit task: {e}"))?
            .map_err(|e| e.to_string())
    }

    async fn dead_letter(&self, partition: i32, letter: &DeadLetter) -> Result<(), String> {
        let (partition_text, offset_text) = (partition.to_string(), letter.offset.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlq.error",
                value: Some(letter.error.as_str()),
            })
            .insert(Header {
                key: "dlq.error.kind",
                value: Some(letter.kind),
            })
            .insert(Header {
                key: "dlq.original.topic",
                value: Some(self.config.kafka_topic.as_str()),
            })
            .insert(Header {
                key: "dlq.original.partition",
                value: Some(partition_text.as_str()),
            })
            .insert(Header {
                key: "dlq.original.offset",
                value: Some(offset_text.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.config.kafka_dlq_topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload.as_slice());
        }
        self.dlq
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| format!("dead-letter topic: {e}"))?;
        metrics::counter!("consumer_dlq_messages_total", "reason" => letter.kind).increment(1);
        tracing::warn!(partition, offset = letter.offset, kind = letter.kind, error = %letter.error, "message dead-lettered");
        Ok(())
    }

    /// Commits synchronously, retrying briefly: a batch is not followed by
    /// the next until its offsets are committed, so a crash leaves at most one
    /// batch to redeliver, with the boundaries the archive already has.
    /// Returns whether the commit went through.
    async fn commit(&self, partition: i32, next_offset: i64) -> bool {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match self.commit_once(partition, next_offset).await {
                Ok(()) => return true,
                Err(error) => tracing::warn!(%error, partition, attempt, "commit failed"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
        }
        tracing::warn!(
            partition,
            next_offset,
            "giving up on the commit; the batch will be redelivered"
        );
        false
    }

    /// After a commit that did not go through (most often a rebalance in
    /// progress), consumes the partition again from the batch just written,
    /// and cuts the first batch at the watermark again. Going on past it
    /// would leave several written, uncommitted batches, which a new owner
    /// (or this one) would redeliver with other boundaries, archiving their
    /// events twice. If the partition is already gone, its next owner starts
    /// from the committed offset anyway.
    async fn rewind(&mut self, partition: i32, first_offset: i64) {
        self.buffers.remove(&partition);
        self.cut_points.remove(&partition);
        let (consumer, topic) = (self.consumer.clone(), self.config.kafka_topic.clone());
        let sought = tokio::task::spawn_blocking(move || {
            consumer.seek(
                &topic,
                partition,
                Offset::Offset(first_offset),
                Duration::from_secs(5),
            )
        })
        .await;
        if !matches!(sought, Ok(Ok(()))) {
            tracing::info!(partition, first_offset, "cannot seek back (the partition moved); its next owner redelivers from the committed offset");
        }
    }
}

/// The parts of a message the pipeline keeps.
struct Received {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    /// Read only while traces are on.
    traceparent: Option<String>,
}

impl From<&BorrowedMessage<'_>> for Received {
    fn from(m: &BorrowedMessage<'_>) -> Self {
        let traceparent = if traces::enabled() {
            m.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == traces::TRACEPARENT)
                    .and_then(|h| std::str::from_utf8(h.value?).ok())
                    .map(str::to_owned)
            })
        } else {
            None
        };
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            traceparent,
        }
    }
}

/// Decodes and checks an event, or says why it is a dead letter.
fn decode(payload: Option<&[u8]>) -> Result<Event, (&'static str, String)> {
    let payload = payload.ok_or(("decode", "empty message".to_string()))?;
    let event: Event =
        serde_json::from_slice(payload).map_err(|e| ("decode", format!("not an event: {e}")))?;
    event.check().map_err(|e| ("contract", e))?;
    Ok(event)
}
