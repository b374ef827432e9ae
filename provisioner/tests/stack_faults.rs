//! Faults no emulator produces, injected by the SDK fault layer in front of
//! moto: throttling, IAM role propagation ("unable to assume role"),
//! DependencyViolation while ENIs drain, and the waits. Every test here is
//! named for the fault layer.

mod support;

use std::time::Duration;

use integration_tests::fault::Fault;
use support::{apply, Env};

fn error(code: &str, message: &str) -> Fault {
    Fault::Error {
        status: 400,
        code: code.into(),
        message: message.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_throttling_and_role_propagation_then_apply_converges() -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let stack = env.stack()?;
    let faults = env.faults.clone();
    faults.inject(
        "CreateVpc",
        error("RequestLimitExceeded", "Request limit exceeded."),
        2,
    );
    faults.inject(
        "CreateSecurityGroup",
        error("RequestLimitExceeded", "Request limit exceeded."),
        2,
    );
    faults.inject("CreateTable", Fault::throttling(), 2);
    let assume = "ECS was unable to assume the role 'arn:aws:iam::123456789012:role/ep-local-execution' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role.";
    faults.inject(
        "RegisterTaskDefinition",
        error("ClientException", assume),
        3,
    );
    faults.inject("CreateService", error("InvalidParameterException", "Unable to assume role and validate the specified targetGroupArn. Please verify that the ECS service role being passed has the proper permissions."), 2);
    let options = env.options();
    apply(&stack, &options).await?;
    for (op, n) in [
        ("CreateVpc", 2),
        ("CreateSecurityGroup", 2),
        ("CreateTable", 2),
        ("RegisterTaskDefinition", 3),
        ("CreateService", 2),
    ] {
        assert_eq!(faults.injected(op), n, "{op}");
    }
    assert_eq!(stack.state()?.resources.len(), stack.desired.len());
    let plan = env.stack()?.plan(&options).await?;
    assert!(!plan.has_changes(), "{}", plan.render());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_dependency_violation_on_groups_and_subnets_then_destroy_converges(
) -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let options = env.options();
    apply(&env.stack()?, &options).await?;
    let stack = env.stack()?;
    let faults = env.faults.clone();
    let in_use = "resource sg-0123 has a dependent object";
    faults.inject(
        "DeleteSecurityGroup",
        error("DependencyViolation", in_use),
        4,
    );
    faults.inject(
        "DeleteSubnet",
        error(
            "DependencyViolation",
            "The subnet 'subnet-1' has dependencies and cannot be deleted.",
        ),
        3,
    );
    let report = stack
        .destroy(&options, |_| true)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not approved"))?;
    assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);
    assert_eq!(faults.injected("DeleteSecurityGroup"), 4);
    assert_eq!(faults.injected("DeleteSubnet"), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_past_the_retry_bound_the_error_names_resource_cause_and_remedy(
) -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let options = env.options();
    apply(&env.stack()?, &options).await?;
    let stack = env.stack()?;
    env.faults.inject(
        "DeleteSecurityGroup",
        error(
            "DependencyViolation",
            "resource sg-x has a dependent object",
        ),
        1000,
    );
    let err = stack
        .destroy(&options, |_| true)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("destroy succeeded"))?;
    let text = format!("{err:#}");
    assert!(text.contains("security_group."), "{text}");
    assert!(
        text.contains("DependencyViolation") && text.contains("has a dependent object"),
        "{text}"
    );
    assert!(text.contains("after 8 attempts"), "{text}");
    assert!(text.contains("run the command again"), "{text}");
    // What could go went; the groups and what needs them are still recorded.
    let state = stack.state()?;
    assert!(
        state.resources.contains_key("vpc.main")
            && state.resources.contains_key("security_group.broker")
    );
    assert!(!state.resources.contains_key("ecs_service.ingest"));

    // Once the cause is gone, destroy resumes and finishes.
    let report = env
        .stack()?
        .destroy(&options, |_| true)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not approved"))?;
    assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);

    // The same for apply: role propagation that never settles.
    let stack = env.stack()?;
    env.faults.inject(
        "RegisterTaskDefinition",
        error("ClientException", "ECS was unable to assume the role 'x'"),
        1000,
    );
    let err = stack
        .apply(&options, |_| true)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("apply succeeded"))?;
    let text = format!("{err:#}");
    assert!(
        text.contains("task_definition.") && text.contains("unable to assume the role"),
        "{text}"
    );
    assert!(
        text.contains("IAM role") && text.contains("wait a minute"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_waits_ride_out_throttling_and_time_out_on_a_service_that_never_runs(
) -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let stack = env.stack()?;
    let mut options = env.options();
    options.waits = true;
    options.wait_timeout = Duration::from_secs(2);
    env.faults.inject(
        "DescribeInstances",
        error("RequestLimitExceeded", "Request limit exceeded."),
        2,
    );
    env.faults.inject(
        "DescribeLoadBalancers",
        error("Throttling", "Rate exceeded"),
        2,
    );
    // moto runs no ECS task, so a service never becomes stable: the wait must end with a clear error.
    let err = stack
        .apply(&options, |_| true)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("apply succeeded"))?;
    let text = format!("{err:#}");
    assert!(
        text.contains("ecs_service.") && text.contains("stable with healthy targets"),
        "{text}"
    );
    assert!(
        text.contains("not stable with healthy targets after 2s"),
        "{text}"
    );
    let lines = env.lines.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|l| l == "instance.broker: waiting until running"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("instance.broker: created in")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("load_balancer.main: created in")),
        "{lines:?}"
    );
    Ok(())
}

/// Every call a create makes after its first one fails once with what AWS
/// answers while it has not caught up with the create (EC2 `*.NotFound`,
/// IAM `NoSuchEntity`, S3 `NoSuchBucket`, DynamoDB's continuous backups
/// not yet available, ...). Apply retries, finds each half-made resource by
/// its tags, completes it, and the next plan has nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_a_create_failing_after_its_first_call_is_completed_on_retry(
) -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let stack = env.stack()?;
    let faults = env.faults.clone();
    let not_found = |code: &str| Fault::Error {
        status: 404,
        code: code.into(),
        message: "not found right after create (injected)".into(),
    };
    let after_create = [
        ("ModifyVpcAttribute", not_found("InvalidVpcID.NotFound")),
        (
            "ModifySubnetAttribute",
            not_found("InvalidSubnetID.NotFound"),
        ),
        (
            "AttachInternetGateway",
            not_found("InvalidInternetGatewayID.NotFound"),
        ),
        (
            "AuthorizeSecurityGroupIngress",
            not_found("InvalidGroup.NotFound"),
        ),
        ("AttachRolePolicy", not_found("NoSuchEntity")),
        ("PutRolePolicy", not_found("NoSuchEntity")),
        ("UpdateTimeToLive", not_found("ResourceNotFoundException")),
        (
            "UpdateContinuousBackups",
            error(
                "ContinuousBackupsUnavailableException",
                "Backups are being enabled for the table: ep-local-events-hot. Please retry later",
            ),
        ),
        (
            "PutLifecyclePolicy",
            not_found("RepositoryNotFoundException"),
        ),
        ("PutRetentionPolicy", not_found("ResourceNotFoundException")),
        (
            "ModifyTargetGroupAttributes",
            not_found("TargetGroupNotFound"),
        ),
        (
            "PUT /ep-local-raw-events?tagging",
            not_found("NoSuchBucket"),
        ),
        (
            "PUT /ep-local-raw-events?publicAccessBlock",
            not_found("NoSuchBucket"),
        ),
        (
            "PUT /ep-local-raw-events?encryption",
            not_found("NoSuchBucket"),
        ),
        (
            "PUT /ep-local-raw-events?versioning",
            not_found("NoSuchBucket"),
        ),
        ("PUT /ep-local-raw-events?policy", not_found("NoSuchBucket")),
        (
            "PUT /ep-local-raw-events?lifecycle",
            not_found("NoSuchBucket"),
        ),
    ];
    for (operation, fault) in &after_create {
        faults.inject(operation, fault.clone(), 1);
    }
    // The bucket's six calls after CreateBucket fail one per attempt: the
    // account default of 10 attempts, not the tests' short 6.
    let mut options = env.options();
    options.retry.attempts = provisioner::engine::RetryPolicy::default().attempts;
    apply(&stack, &options).await?;
    for (operation, _) in &after_create {
        assert_eq!(faults.injected(operation), 1, "{operation} was not called");
    }
    let plan = env.stack()?.plan(&options).await?;
    assert!(
        !plan.has_changes() && plan.drift.is_empty(),
        "half-made resources left: {}",
        plan.render()
    );
    Ok(())
}
