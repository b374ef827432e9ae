//! Publishing accepted events to Kafka: an idempotent producer with
//! `acks=all`, keyed by `user_id` so one user's events keep their order.
//! `publish` returns only when the broker acknowledged every event, or fails.

use std::time::Duration;

use event_common::event::Event;
use event_common::traces;
use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use tracing::Instrument;

use crate::config::IngestConfig;

/// Why events could not be published; all of them mean "retry later".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The local producer queue is full: the broker is slower than intake.
    #[error("producer queue is full")]
    QueueFull,
    /// The broker did not acknowledge in time, or refused.
    #[error("broker did not acknowledge: {0}")]
    Delivery(KafkaError),
    /// An event could not be encoded (not expected: every field serializes).
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The producer could not be created or used.
    #[error("kafka producer error: {0}")]
    Kafka(#[from] KafkaError),
}

/// The Kafka side of ingest.
pub struct KafkaPublisher {
    producer: FutureProducer,
    topic: String,
    delivery_timeout: Duration,
}

impl KafkaPublisher {
    /// Creates the producer; no connection is made until the first use.
    pub fn new(config: &IngestConfig) -> Result<Self, PublishError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_bootstrap_servers)
            .set("client.id", "ingest")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &config.kafka_compression)
            .set("linger.ms", config.kafka_linger_ms.to_string())
            // librdkafka fails a message it could not deliver in this time,
            // which bounds how long a request can wait.
            .set(
                "message.timeout.ms",
                config.kafka_delivery_timeout_ms.to_string(),
            )
            .create()?;
        Ok(Self {
            producer,
            topic: config.kafka_topic.clone(),
            delivery_timeout: Duration::from_millis(config.kafka_delivery_timeout_ms),
        })
    }

    /// Publishes `events`; `Ok` only once the broker acknowledged all of them.
    /// With traces on, this is the `produce` span, and each message carries
    /// its `traceparent` for the processor to continue the trace.
    pub async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        if !traces::enabled() {
            return self.send_all(events, None).await;
        }
        let span = tracing::info_span!("produce", events = events.len(), topic = %self.topic);
        let headers = span
            .in_scope(traces::current_traceparent)
            .map(|traceparent| {
                OwnedHeaders::new().insert(Header {
                    key: traces::TRACEPARENT,
                    value: Some(traceparent.as_str()),
                })
            });
        self.send_all(events, headers).instrument(span).await
    }

    async fn send_all(
        &self,
        events: &[Event],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), PublishError> {
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            let value = serde_json::to_vec(event)?;
            let mut record = FutureRecord::to(&self.topic)
                .key(event.user_id.as_bytes())
                .payload(&value);
            if let Some(headers) = &headers {
                record = record.headers(headers.clone());
            }
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(PublishError::QueueFull)
                }
                Err((e, _)) => return Err(PublishError::Kafka(e)),
            }
        }
        // message.timeout.ms already bounds each delivery; this outer bound is
        // a guard against a producer that stops calling back at all.
        let results = tokio::time::timeout(
            self.delivery_timeout + Duration::from_secs(1),
            join_all(deliveries),
        )
        .await
        .map_err(|_| {
            PublishError::Delivery(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            ))
        })?;
        for result in results {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(PublishError::Delivery(e)),
                Err(_canceled) => return Err(PublishError::Delivery(KafkaError::Canceled)),
            }
        }
        Ok(())
    }

    /// Asks the broker for the topic's metadata: ready when it answers and
    /// the topic exists.
    pub async fn check_broker(&self) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map_err(|e| format!("broker unreachable: {e}"))?;
            match metadata.topics().first() {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                Some(t) => Err(format!("topic {topic} unavailable: {:?}", t.error())),
                None => Err(format!("topic {topic} not found")),
            }
        })
        .await
        .map_err(|e| format!("readiness check failed: {e}"))?
    }

    /// Messages waiting in the producer for an acknowledgement.
    pub fn queue_depth(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Waits up to `timeout` for every queued message to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
