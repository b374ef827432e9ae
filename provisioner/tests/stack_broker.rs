//! The broker's setup as `apply` sees it. moto runs no user-data, so the
//! test does what the instance's script does at its end: it tags the
//! instance with its setup report (`ready` or `failed: STEP`).

mod support;

use std::time::Duration;

use support::{apply_error, recorded_id, Env};

/// A failed setup stops apply at the broker: no ECS service is created,
/// the error names the step and how to read the instance's log, and the
/// next plan replaces the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_broker_setup_stops_apply_before_the_services_and_the_next_plan_replaces_it(
) -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let stack = env.stack().await?;
    let options = env.options_with_waits(Duration::from_secs(300));
    let reported = env.broker_reports("failed: install redpanda-26.1.14", Duration::ZERO);
    let started = std::time::Instant::now();
    let text = apply_error(&stack, &options).await?;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(!reported.await??);
    let instance = recorded_id(&stack.state()?, "instance.broker")?;
    for want in [
        "instance.broker: waiting until broker ready (Redpanda running, topics created) failed",
        "its setup reported `failed: install redpanda-26.1.14`",
        &format!("aws ec2 get-console-output --instance-id {instance} --latest --output text"),
        "/var/log/event-platform-broker.log",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    assert!(!text.contains("ecs_service."), "{text}");
    let state = stack.state()?;
    assert!(
        !state
            .resources
            .keys()
            .any(|a| a.starts_with("ecs_service.")),
        "services were created"
    );

    let plan = env.stack().await?.plan(&options).await?;
    let broker = plan
        .changes
        .iter()
        .find(|c| c.address == "instance.broker")
        .ok_or_else(|| anyhow::anyhow!("the broker is not in the plan:\n{}", plan.render()))?;
    assert_eq!(
        broker.action,
        provisioner::plan::Action::Replace,
        "{}",
        plan.render()
    );
    assert!(
        broker.attrs.iter().any(|a| a.name == "setup_failed"),
        "{}",
        plan.render()
    );
    // It never served the stack, so replacing it loses nothing and is not refused.
    assert!(plan.data_loss().is_empty(), "{}", plan.render());
    Ok(())
}

/// A broker that never reports (its script died before the trap, or the
/// instance cannot reach AWS's API) ends the wait at its timeout, with the
/// same advice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_reports_times_out_with_how_to_read_its_log() -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let stack = env.stack().await?;
    let options = env.options_with_waits(Duration::from_secs(2));
    let text = apply_error(&stack, &options).await?;
    for want in [
        "not broker ready (Redpanda running, topics created) after 2s: state running, setup not reported yet",
        "aws ec2 get-console-output --instance-id i-",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    assert!(
        !stack
            .state()?
            .resources
            .keys()
            .any(|a| a.starts_with("ecs_service.")),
        "services were created"
    );
    Ok(())
}
