//! Reading back what is on a topic, to check what the services published.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// One message as read from the topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition it landed on.
    pub partition: i32,
    /// The key bytes.
    pub key: Vec<u8>,
    /// The value bytes.
    pub value: Vec<u8>,
    /// The headers, as text.
    pub headers: HashMap<String, String>,
}

/// Reads every message of `topic` from the beginning until `expected` have
/// arrived or `timeout` passes; returns what it read either way.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique_name("test-reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let partitions = partition_count(&consumer, topic)?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => records.push(Record {
                partition: m.partition(),
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => return Err(e).context("reading the topic"),
            None => {}
        }
    }
    Ok(records)
}

/// Messages on `topic` by partition, from the high watermarks: counts what a
/// producer put there without waiting for a consumer.
pub fn message_counts(bootstrap: &str, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let partitions = partition_count(&consumer, topic)?;
    let mut counts = HashMap::new();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        counts.insert(p, high - low);
    }
    Ok(counts)
}

fn partition_count(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i32> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let topic_metadata = metadata
        .topics()
        .first()
        .context("topic missing from metadata")?;
    Ok(topic_metadata.partitions().len() as i32)
}

/// The offsets `group` has committed on `topic`, by partition (absent: none).
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> anyhow::Result<HashMap<i32, i64>> {
    committed_by(&group_reader(bootstrap, group)?, topic)
}

/// A client of `group` that reads its offsets without joining it.
fn group_reader(bootstrap: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()?)
}

fn committed_by(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let mut partitions = TopicPartitionList::new();
    for p in 0..partition_count(consumer, topic)? {
        partitions.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(partitions, Duration::from_secs(5))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// Waits until `group` has committed everything on `topic` (committed offset
/// equals the high watermark on every partition). Fails when the group makes
/// no progress for `stall_timeout`: a slow emulator under a loaded machine
/// still passes, a stuck consumer fails.
pub async fn wait_until_caught_up(
    bootstrap: &str,
    group: &str,
    topic: &str,
    stall_timeout: Duration,
) -> anyhow::Result<()> {
    let (bootstrap, group, topic) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // One client for every poll: ends and committed offsets of the same group.
        let consumer = group_reader(&bootstrap, &group)?;
        let mut deadline = Instant::now() + stall_timeout;
        let mut last_committed = HashMap::new();
        loop {
            let mut ends = HashMap::new();
            for p in 0..partition_count(&consumer, &topic)? {
                ends.insert(
                    p,
                    consumer
                        .fetch_watermarks(&topic, p, Duration::from_secs(5))?
                        .1,
                );
            }
            let committed = committed_by(&consumer, &topic)?;
            if ends
                .iter()
                .all(|(p, end)| *end == 0 || committed.get(p) == Some(end))
            {
                return Ok(());
            }
            if committed != last_committed {
                deadline = Instant::now() + stall_timeout;
                last_committed = committed;
            } else {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "group {group} made no progress on {topic} in {stall_timeout:?}: ends {ends:?}, committed {committed:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await?
}

/// Moves `group`'s committed offsets on `topic` back to the beginning. It
/// joins the group to do so (brokers refuse commits from non-members), so
/// the group must have no other live member.
pub async fn reset_group(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<()> {
    let (bootstrap, group, topic) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()?;
        consumer.subscribe(&[&topic])?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while consumer.assignment()?.count() == 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "no assignment for {group} within 30 s"
            );
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let mut offsets = TopicPartitionList::new();
        for p in 0..partition_count(&consumer, &topic)? {
            offsets.add_partition_offset(&topic, p, Offset::Offset(0))?;
        }
        consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync)?;
        consumer.unsubscribe();
        Ok(())
    })
    .await?
}
