//! The test backend itself: the broker takes produce/consume round trips and
//! the AWS emulator answers real API calls.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use test_support::backend::{AwsEmulator, Broker};
use test_support::kafka::read_topic;
use test_support::unique_name;

#[tokio::test]
async fn broker_round_trips_a_message() {
    let broker = Broker::start().await.expect("broker");
    let topic = unique_name("roundtrip");
    broker.create_topic(&topic, 2).await.expect("topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(&topic).key("k").payload("hello"),
            Duration::from_secs(5),
        )
        .await
        .expect("delivered");
    let records = read_topic(
        &broker.bootstrap_servers(),
        &topic,
        1,
        Duration::from_secs(10),
    )
    .expect("read");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value, b"hello");
}

#[tokio::test]
async fn aws_emulator_serves_the_s3_api() {
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    // ListBuckets: an emulator answers with the S3 XML document.
    let body = reqwest::get(emulator.endpoint())
        .await
        .expect("answers")
        .text()
        .await
        .expect("body");
    assert!(
        body.contains("ListAllMyBucketsResult"),
        "unexpected answer: {body}"
    );
}
