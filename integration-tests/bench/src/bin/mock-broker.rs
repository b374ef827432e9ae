//! `mock-broker`: librdkafka's mock cluster in a process of its own, so a
//! benchmark can measure ingest apart from the broker. Prints the bootstrap
//! address and serves until SIGINT or SIGTERM.

use clap::Parser;

/// A Kafka-protocol broker on loopback, for benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// Topics to create, as name:partitions.
    #[arg(long, default_values_t = ["events.raw:4".to_string(), "events.dlq:1".to_string()])]
    topic: Vec<String>,
    /// Brokers in the cluster (partitions are spread over them).
    #[arg(long, default_value_t = 1)]
    brokers: i32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cluster = rdkafka::mocking::MockCluster::new(args.brokers)?;
    for spec in &args.topic {
        let (name, partitions) = spec.split_once(':').unwrap_or((spec, "1"));
        cluster.create_topic(name, partitions.parse()?, 1)?;
    }
    println!("{}", cluster.bootstrap_servers());
    event_common::lifecycle::shutdown_signal().await;
    Ok(())
}
