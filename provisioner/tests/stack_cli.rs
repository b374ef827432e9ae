//! The `provision` binary end to end on moto: check, plan (text, JSON,
//! detailed exit codes), apply, output, state list/show, destroy.

mod support;

use std::process::{Command, Output};

use support::Env;

fn provision(env: &Env, args: &[&str]) -> anyhow::Result<Output> {
    Ok(support::provision(env, args).output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_shipped_blueprints_and_names_file_line_and_key() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../blueprints/");
    for name in ["local.toml", "dev.toml", "production.toml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_provision"))
            .args(["check", "-b", &format!("{root}{name}")])
            .output()?;
        assert!(out.status.success(), "{name}: {}", text(&out.stdout));
        assert!(
            // local.toml notifies an address: one topic more than dev.toml.
            match name {
                "local.toml" => text(&out.stdout).contains("is valid (51 resources"),
                "dev.toml" => text(&out.stdout).contains("is valid (50 resources"),
                _ => true,
            },
            "{}",
            text(&out.stdout)
        );
    }
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    let source = std::fs::read_to_string(format!("{root}local.toml"))?
        .replace("10.40.1.0/24", "10.99.1.0/24")
        .replace(
            "desired_count = 1",
            "desired_count = 1\nport = 9000\npath_patterns = [\"/x*\"]",
        );
    std::fs::write(&bad, source)?;
    let out = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["check", "-b"])
        .arg(&bad)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("`/x*` is already routed to `ingest`"),
        "{stdout}"
    );
    assert!(stdout.contains("bad.toml:20: error: `network.subnets[1].cidr`: 10.99.1.0/24 is outside the VPC's 10.40.0.0/16"), "{stdout}");
    std::fs::write(
        &bad,
        "[stack]\nname = \"x\"\nregion = \"us-east-1\"\ncolour = \"blue\"\n",
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["check", "-b"])
        .arg(&bad)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad.toml:4: unknown field `colour`"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_output_state_destroy_through_the_binary() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    let out = provision(&env, &["plan", "--detailed-exitcode"])?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("\nPlan: 48 to create, 0 to update in place, 0 to replace, 0 to delete.\n"),
        "{stdout}"
    );
    // Then the cost, priced from the table: an emulator has no Price List API.
    let cost = stdout
        .split_once(
            "\nEstimated monthly cost, us-east-1 (USD, on demand; prices: shipped price table of ",
        )
        .map(|(_, cost)| cost)
        .unwrap_or_default();
    assert!(
        cost.contains("the stack's endpoint is an emulator"),
        "{stdout}"
    );
    assert!(
        cost.contains("instance.broker              t3.small, 730 h"),
        "{stdout}"
    );
    assert!(cost.contains("\n  Total "), "{stdout}");

    let out = provision(&env, &["apply"])?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "apply without a terminal or --auto-approve must not run"
    );
    assert!(
        text(&out.stderr).contains("cancelled"),
        "{}",
        text(&out.stderr)
    );

    let out = provision(&env, &["apply", "--auto-approve"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("vpc.main: created in"), "{stdout}");
    assert!(
        stdout.contains("ingest_url = http://ep-local-alb"),
        "{stdout}"
    );

    let out = provision(&env, &["plan", "--detailed-exitcode", "--json"])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(plan["changes"], serde_json::json!([]));
    assert_eq!(plan["unchanged"], 48);
    // Applied: the same total, no change.
    assert!(
        plan["cost"]["monthly_usd"]
            .as_f64()
            .is_some_and(|usd| usd > 0.0),
        "{plan}"
    );
    assert_eq!(plan["cost"]["change_usd"], 0.0);

    let out = provision(&env, &["output", "--json"])?;
    let outputs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(
        outputs["broker_address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.40.0.") && a.ends_with(":9092")),
        "{outputs}"
    );
    assert!(
        outputs["graphql_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/graphql")),
        "{outputs}"
    );

    let out = provision(&env, &["state", "list"])?;
    assert_eq!(text(&out.stdout).lines().count(), 48);
    let out = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["state", "show", "-b"])
        .arg(&env.blueprint_path)
        .arg("--state-dir")
        .arg(env.state_dir())
        .arg("ecs_service.ingest")
        .output()?;
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(shown["props"]["desired_count"], 1);

    let out = provision(&env, &["destroy", "--auto-approve"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no resource tagged event-platform:stack=ep-local remains"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("This deletes, with all the data in them (items, object versions, events not consumed yet): dynamodb_table.events_hot (ep-local-events-hot), instance.broker (i-"),
        "{}",
        text(&out.stdout)
    );
    let out = provision(&env, &["plan", "--detailed-exitcode"])?;
    assert_eq!(out.status.code(), Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_applies_as_reviewed_and_is_refused_once_the_stack_changed(
) -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    let path = |name: &str| env.dir.path().join(name).display().to_string();

    let first = path("first.plan");
    let out = provision(&env, &["plan", "--out", &first])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Saved the plan to"),
        "{}",
        text(&out.stderr)
    );
    // Applied without asking: it was reviewed when it was made.
    let out = provision(&env, &["apply", &first])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Apply complete in") && text(&out.stdout).contains("48 created"),
        "{}",
        text(&out.stdout)
    );
    let out = provision(&env, &["plan", "--detailed-exitcode"])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Another apply runs between the plan and its apply.
    env.write_blueprint(&[("desired_count = 1", "desired_count = 2")])?;
    let second = path("second.plan");
    let out = provision(&env, &["plan", "--out", &second])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = provision(&env, &["apply", "--auto-approve"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = provision(&env, &["apply", &second])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "refused: the saved plan is stale: the state changed since the plan was made"
        ) && stderr.contains("nothing was changed"),
        "{stderr}"
    );

    // The cloud changes by hand between the plan and its apply.
    env.write_blueprint(&[])?;
    let third = path("third.plan");
    let out = provision(&env, &["plan", "--out", &third])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    aws_sdk_cloudwatchlogs::Client::new(&env.direct)
        .put_retention_policy()
        .log_group_name("/ecs/ep-local/graphql")
        .retention_in_days(1)
        .send()
        .await?;
    let out = provision(&env, &["apply", &third])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the cloud changed since the plan was made: log_group.graphql"),
        "{stderr}"
    );
    // Nothing was applied: ingest still runs two tasks.
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        env.state_dir().join("ep-local.json"),
    )?)?;
    assert_eq!(
        state["resources"]["ecs_service.ingest"]["props"]["desired_count"],
        2
    );
    Ok(())
}
