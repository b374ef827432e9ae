//! `provision status` and `provision logs` through the binary, against a
//! stack on moto: the exit code follows the services scaled by hand, the
//! lag comes from a real Kafka-protocol broker, and log events put into
//! CloudWatch Logs come back merged, filtered and followed.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{apply, provision, recorded_id, Env};
use test_support::backend::Broker;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Joins the processor's group on `topic` and commits one event less than
/// the end of every partition: the lag is then the number of partitions
/// holding events.
fn commit_all_but_the_last(bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "event-processors")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment()?.count() == 0 {
        anyhow::ensure!(Instant::now() < deadline, "no assignment within 30 s");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let partitions = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))?
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut offsets = TopicPartitionList::new();
    let mut lag = 0;
    for p in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        if high > 0 {
            offsets.add_partition_offset(topic, p, Offset::Offset(high - 1))?;
            lag += 1;
        }
    }
    consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync)?;
    consumer.unsubscribe();
    Ok(lag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_0_when_settled_and_2_once_a_service_is_scaled_down_by_hand(
) -> anyhow::Result<()> {
    // moto runs no task: it reports this many running for each new service.
    let mut env = Env::start_emulating(&[], &[("MOTO_ECS_SERVICE_RUNNING", "1")]).await?;
    let options = env.options();
    let stack = env.stack().await?;
    apply(&stack, &options).await?;
    let state = stack.state()?;
    let id = |address: &str| recorded_id(&state, address);

    // Before any task registers, the services behind the load balancer
    // have no healthy target, and the broker has not reported its setup.
    let out = provision(&env, &["status"]).output()?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let screen = text(&out.stdout);
    assert!(screen.contains("ingest: no healthy target"), "{screen}");
    assert!(
        screen.contains("broker: setup not reported yet"),
        "{screen}"
    );

    // What ECS and the broker's user-data would do on AWS.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&env.direct);
    for (service, ip, port) in [
        ("ingest", "10.40.0.7", 8000),
        ("graphql", "10.40.1.9", 8001),
    ] {
        let target = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
            .id(ip)
            .port(port)
            .build();
        elb.register_targets()
            .target_group_arn(id(&format!("target_group.{service}"))?)
            .targets(target)
            .send()
            .await?;
    }
    aws_sdk_ec2::Client::new(&env.direct)
        .create_tags()
        .resources(id("instance.broker")?)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(provisioner::model::BROKER_SETUP_TAG)
                .value("ready")
                .build(),
        )
        .send()
        .await?;
    let broker = Broker::start().await?;
    broker.create_topic("events.raw", 3).await?;
    let records = (0..6).map(|i| (format!("user-{i}"), b"{}".to_vec()));
    broker.produce("events.raw", records).await?;
    let bootstrap = broker.bootstrap_servers();
    let lag = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || commit_all_but_the_last(&bootstrap, "events.raw"))
            .await??
    };

    let out = provision(&env, &["status", "--kafka", &bootstrap]).output()?;
    let screen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}{}", text(&out.stderr));
    assert!(
        screen.contains("ep-local (us-east-1): as the blueprint wants"),
        "{screen}"
    );
    assert!(
        screen.contains(&format!(
            "Consumer lag        {lag} event(s) behind on events.raw (3 partitions"
        )),
        "{screen}"
    );
    assert!(
        screen.contains("Load balancer       active http://ep-local-alb"),
        "{screen}"
    );

    // Scaled below the blueprint by hand.
    aws_sdk_ecs::Client::new(&env.direct)
        .update_service()
        .cluster("ep-local")
        .service("ingest")
        .desired_count(0)
        .send()
        .await?;
    let out = provision(&env, &["status", "--json", "--kafka", &bootstrap]).output()?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        status["problems"],
        serde_json::json!(["ingest: 0 task(s) desired, the blueprint wants 1"])
    );
    assert_eq!(status["services"][0]["name"], "ingest");
    assert_eq!(status["services"][0]["desired"], 0);
    assert_eq!(status["services"][0]["wanted"], 1);
    assert_eq!(status["consumer_lag"]["events"], lag);

    // Without a reachable broker the lag is unknown, and says why; the
    // verdict does not depend on it.
    let out = provision(&env, &["status", "--kafka", "127.0.0.1:9"]).output()?;
    let screen = text(&out.stdout);
    assert!(
        screen.contains("Consumer lag        unknown: the broker at 127.0.0.1:9 did not answer"),
        "{screen}"
    );
    assert_eq!(out.status.code(), Some(2));
    Ok(())
}

/// Puts `lines` (milliseconds after `base`, text) into one stream of `group`.
async fn put(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    base: i64,
    lines: &[(i64, &str)],
) -> anyhow::Result<()> {
    let _ = logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await;
    let events = lines
        .iter()
        .map(|(after, message)| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(base + after)
                .message(*message)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_merges_the_services_in_time_order_filters_and_follows() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&env.direct);
    for service in ["ingest", "processor", "graphql"] {
        logs.create_log_group()
            .log_group_name(format!("/ecs/ep-local/{service}"))
            .send()
            .await?;
    }
    let base = chrono::Utc::now().timestamp_millis() - 60_000;
    let ingest_task = "ingest/ingest/aaaa1111bbbb2222cccc3333dddd4444";
    put(&logs, "/ecs/ep-local/ingest", ingest_task, base, &[
        (1_000, r#"{"timestamp":"x","level":"INFO","fields":{"message":"listening","port":8000},"target":"ingest"}"#),
        (4_000, r#"{"timestamp":"x","level":"WARN","fields":{"message":"event rejected","field":"user_id"},"span":{"request_id":"req-7","name":"request"}}"#),
    ]).await?;
    put(
        &logs,
        "/ecs/ep-local/graphql",
        "graphql/graphql/eeee5555ffff6666",
        base,
        &[(2_000, "plain line from graphql")],
    )
    .await?;
    put(
        &logs,
        "/ecs/ep-local/processor",
        "processor/processor/99990000",
        base,
        &[(
            3_000,
            r#"{"level":"ERROR","fields":{"message":"store write failed","needle":"yes"}}"#,
        )],
    )
    .await?;
    // Older than --since: not shown.
    put(
        &logs,
        "/ecs/ep-local/graphql",
        "graphql/graphql/old",
        base - 3_600_000,
        &[(0, "too old")],
    )
    .await?;

    let out = provision(&env, &["logs", "--since", "10m"]).output()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "ingest    aaaa1111 INFO  listening port=8000",
            "graphql   eeee5555 plain line from graphql",
            "processor 99990000 ERROR store write failed needle=yes",
            "ingest    aaaa1111 WARN  event rejected request_id=req-7 field=user_id",
        ]
    );

    let out = provision(&env, &["logs", "--service", "graphql", "--since", "10m"]).output()?;
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("plain line from graphql"));
    let out = provision(&env, &["logs", "--filter", "store write", "--since", "10m"]).output()?;
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("processor 99990000 ERROR store write failed"));
    let out = provision(&env, &["logs", "--service", "web"]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the services are ingest, processor, graphql"),
        "{}",
        text(&out.stderr)
    );
    let out = provision(&env, &["logs", "--since", "yesterday"]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--since \"yesterday\""),
        "{}",
        text(&out.stderr)
    );

    // --follow prints what was there, then what comes, once each.
    let mut child = provision(&env, &["logs", "--follow", "--since", "10m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(receiver.recv_timeout(Duration::from_secs(30))?);
    }
    let now = chrono::Utc::now().timestamp_millis();
    put(
        &logs,
        "/ecs/ep-local/ingest",
        ingest_task,
        now,
        &[(0, "arrived while following")],
    )
    .await?;
    let arrived = receiver.recv_timeout(Duration::from_secs(30))?;
    assert!(
        arrived.ends_with("ingest    aaaa1111 arrived while following"),
        "{arrived}"
    );
    // Polls overlap; nothing is printed twice.
    let again = receiver.recv_timeout(Duration::from_secs(5));
    assert!(again.is_err(), "printed again: {again:?}");
    child.kill()?;
    child.wait()?;
    Ok(())
}
