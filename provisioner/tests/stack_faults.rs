//! Faults no emulator produces, injected by the SDK fault layer in front of
//! moto: throttling, IAM role propagation ("unable to assume role"),
//! DependencyViolation while ENIs drain, and the waits. Every test here is
//! named for the fault layer.

mod support;

use std::time::Duration;

use support::{apply, apply_error, Env};
use test_support::fault::Fault;

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
    let stack = env.stack().await?;
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
    // EC2 does not know a just-created instance profile for a few seconds.
    faults.inject("RunInstances", error("InvalidParameterValue", "Value (ep-local-broker) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"), 2);
    let options = env.options();
    apply(&stack, &options).await?;
    for (op, n) in [
        ("CreateVpc", 2),
        ("CreateSecurityGroup", 2),
        ("CreateTable", 2),
        ("RegisterTaskDefinition", 3),
        ("CreateService", 2),
        ("RunInstances", 2),
    ] {
        assert_eq!(faults.injected(op), n, "{op}");
    }
    assert_eq!(stack.state()?.resources.len(), stack.desired.len());
    let plan = env.stack().await?.plan(&options).await?;
    assert!(!plan.has_changes(), "{}", plan.render());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_dependency_violation_on_groups_and_subnets_then_destroy_converges(
) -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let options = env.options();
    apply(&env.stack().await?, &options).await?;
    let stack = env.stack().await?;
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
    apply(&env.stack().await?, &options).await?;
    let stack = env.stack().await?;
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
        .stack()
        .await?
        .destroy(&options, |_| true)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not approved"))?;
    assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);

    // The same for apply: role propagation that never settles.
    let stack = env.stack().await?;
    env.faults.inject(
        "RegisterTaskDefinition",
        error("ClientException", "ECS was unable to assume the role 'x'"),
        1000,
    );
    let text = apply_error(&stack, &options).await?;
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
    let stack = env.stack().await?;
    let options = env.options_with_waits(Duration::from_secs(2));
    let reported = env.broker_reports("ready", Duration::from_millis(300));
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
    let text = apply_error(&stack, &options).await?;
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
        lines.iter().any(|l| l
            == "instance.broker: waiting until broker ready (Redpanda running, topics created)"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "instance.broker: broker ready"),
        "{lines:?}"
    );
    assert!(
        !reported.await??,
        "a service existed before the broker was ready"
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
    // With the TLS-only policy, one of the bucket's calls after CreateBucket.
    let mut env = Env::start(&[("tls_only = false", "tls_only = true")]).await?;
    let stack = env.stack().await?;
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
            "PUT /ep-local-raw-events-123456789012-us-east-1?tagging",
            not_found("NoSuchBucket"),
        ),
        (
            "PUT /ep-local-raw-events-123456789012-us-east-1?publicAccessBlock",
            not_found("NoSuchBucket"),
        ),
        (
            "PUT /ep-local-raw-events-123456789012-us-east-1?encryption",
            not_found("NoSuchBucket"),
        ),
        (
            "PUT /ep-local-raw-events-123456789012-us-east-1?versioning",
            not_found("NoSuchBucket"),
        ),
        (
            "PUT /ep-local-raw-events-123456789012-us-east-1?policy",
            not_found("NoSuchBucket"),
        ),
        (
            "PUT /ep-local-raw-events-123456789012-us-east-1?lifecycle",
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
    support::assert_settled(&mut env, &options, "half-made resources left").await
}

/// Applies with the waits of a real account while the fault layer rewrites
/// moto's ECS answers (moto runs no task): every service's deployments
/// become `deployments`, and its stopped tasks one that exited with 1.
/// Returns apply's error, after checking that it came at once (not at the
/// wait's timeout) and that no service existed before the broker was ready.
async fn apply_with_deployments(deployments: serde_json::Value) -> anyhow::Result<String> {
    let mut env = Env::start(&[]).await?;
    let stack = env.stack().await?;
    let options = env.options_with_waits(Duration::from_secs(300));
    let rewrite_deployments = move |body: &str| -> String {
        let Ok(mut answer) = serde_json::from_str::<serde_json::Value>(body) else {
            return body.to_string();
        };
        if let Some(services) = answer["services"].as_array_mut() {
            for service in services {
                service["deployments"] = deployments.clone();
                service["runningCount"] = service["desiredCount"].clone();
            }
        }
        answer.to_string()
    };
    let stopped_task =
        "arn:aws:ecs:us-east-1:123456789012:task/ep-local/0123456789abcdef0123456789abcdef";
    let stopped_tasks = format!(r#"{{"taskArns":["{stopped_task}"]}}"#);
    let described = serde_json::json!({"tasks": [{
        "taskArn": stopped_task,
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "containers": [{"name": "ingest", "lastStatus": "STOPPED", "exitCode": 1}],
    }], "failures": []})
    .to_string();
    env.faults.inject(
        "DescribeServices",
        Fault::Rewrite(std::sync::Arc::new(rewrite_deployments)),
        u32::MAX,
    );
    env.faults.inject(
        "ListTasks",
        Fault::Rewrite(std::sync::Arc::new(move |_: &str| stopped_tasks.clone())),
        u32::MAX,
    );
    env.faults.inject(
        "DescribeTasks",
        Fault::Rewrite(std::sync::Arc::new(move |_: &str| described.clone())),
        u32::MAX,
    );
    let reported = env.broker_reports("ready", Duration::from_secs(1));
    let started = std::time::Instant::now();
    let text = apply_error(&stack, &options).await?;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}: {text}",
        started.elapsed()
    );
    assert!(
        !reported.await??,
        "a service existed before the broker was ready"
    );
    assert!(
        text.contains("task 0123456789abcdef0123456789abcdef stopped: Essential container in task exited (ingest exited with 1)"),
        "{text}"
    );
    Ok(text)
}

/// The circuit breaker stops a first deployment (nothing to roll back to):
/// apply reports it at once with the reasons the tasks stopped, instead of
/// waiting out its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_a_failed_first_deployment_is_reported_at_once_with_its_stopped_tasks(
) -> anyhow::Result<()> {
    let text = apply_with_deployments(serde_json::json!([{
        "id": "ecs-svc/1111111111111111111",
        "status": "PRIMARY",
        "desiredCount": 1,
        "runningCount": 0,
        "failedTasks": 3,
        "rolloutState": "FAILED",
        "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start.",
    }]))
    .await?;
    assert!(
        text.contains("ecs_service.ingest: waiting until stable with healthy targets failed")
            && text.contains("deployment ecs-svc/1111111111111111111 failed: ECS deployment circuit breaker: tasks failed to start."),
        "{text}"
    );
    Ok(())
}

/// The circuit breaker already rolled the service back to an older
/// revision, which runs stable: that is a failed apply, not a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_a_deployment_rolled_back_by_the_circuit_breaker_fails_the_apply(
) -> anyhow::Result<()> {
    let older = "arn:aws:ecs:us-east-1:123456789012:task-definition/ep-local-ingest:7";
    let text = apply_with_deployments(serde_json::json!([{
        "id": "ecs-svc/2222222222222222222",
        "status": "PRIMARY",
        "taskDefinition": older,
        "desiredCount": 1,
        "runningCount": 1,
        "rolloutState": "COMPLETED",
    }]))
    .await?;
    assert!(
        text.contains(&format!(
            "the circuit breaker rolled the service back to {older}"
        )),
        "{text}"
    );
    Ok(())
}

/// A bucket of the stack's name in another region answers a redirect: the
/// create stops at once and names the blueprint key to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_layer_a_bucket_name_taken_in_another_region_is_a_clear_error_at_once(
) -> anyhow::Result<()> {
    let mut env = Env::start(&[]).await?;
    let stack = env.stack().await?;
    let bucket = stack.blueprint.bucket_name(&stack.account);
    env.faults.inject(
        &format!("GET /{bucket}?tagging"),
        Fault::Error {
            status: 301,
            code: "PermanentRedirect".into(),
            message: "The bucket you are attempting to access must be addressed using the specified endpoint.".into(),
        },
        u32::MAX,
    );
    let text = apply_error(&stack, &env.options()).await?;
    assert!(
        text.contains(&format!(
            "bucket `{bucket}` exists in another region than us-east-1"
        )) && text.contains("set `bucket.name` in the blueprint"),
        "{text}"
    );
    // One attempt: a name taken is not retried.
    assert!(
        text.contains("s3_bucket.raw_events: create failed. AWS said"),
        "{text}"
    );
    Ok(())
}
