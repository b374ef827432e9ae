//! Reading back what is on a topic, to check what the services published.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
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
