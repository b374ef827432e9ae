//! The deployed stack serving events: `provision apply` of the local
//! blueprint on moto (images pushed to a real registry on loopback), then
//! `provision run-local`, which runs every task definition read back from
//! moto in its own image's root filesystem on its own task role's
//! credentials, behind a load balancer that follows the deployed rules.
//!
//! Every AWS call the tasks make goes through a recording proxy in front of
//! moto (the blueprint's endpoint), so each is checked against the policies
//! of the role whose credentials signed it. moto's own IAM enforcement is
//! faithful for S3 keys only, so it is switched on for a focused check of
//! the bucket permissions. Needs root (chroot), as CI runs.

mod platform;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use support::Env;
use test_support::aws_calls::{policy_allows, RecordingProxy};
use test_support::registry::LocalRegistry;

const EPOCH: &str = "1700000000";

/// A child process whose stdout lines are collected; killed on drop.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("run-local| {line}");
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        Ok(Self { child, lines })
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The first line after `skip` lines that contains every part, waiting up to `timeout`.
    async fn wait_for(
        &mut self,
        skip: usize,
        parts: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .lines()
                .into_iter()
                .skip(skip)
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return Ok(line);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("run-local exited ({status}) before printing {parts:?}");
            }
            ensure!(
                Instant::now() < deadline,
                "no line with {parts:?} in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Running {
    /// Ctrl-C, so that run-local stops its tasks; SIGKILL if it does not exit.
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `provision ARGS`, building the images from the binaries `cargo test` built.
fn provision(env: &Env, args: &[&str]) -> anyhow::Result<Command> {
    let mut command = support::provision_building_images(env, args, EPOCH)?;
    command.env("RUST_LOG", "warn");
    Ok(command)
}

fn run_ok(mut command: Command) -> anyhow::Result<String> {
    let out = command.output()?;
    ensure!(
        out.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A token signed with the stack's own JWT secret, read from SSM.
async fn token(env: &Env) -> anyhow::Result<String> {
    let ssm = aws_sdk_ssm::Client::new(&env.direct);
    let parameters = ssm.describe_parameters().send().await?;
    let name = parameters
        .parameters()
        .iter()
        .filter_map(|p| p.name())
        .find(|n| n.contains("ep-local"))
        .context("the stack's secret parameter")?
        .to_string();
    let secret = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await?
        .parameter()
        .and_then(|p| p.value())
        .context("secret value")?
        .to_string();
    let mut config = event_common::auth::JwtConfig::for_dev();
    config.secret = secret;
    Ok(event_common::auth::mint(
        &config,
        "run-local-test",
        Duration::from_secs(3600),
        None,
    )?)
}

/// Ingest's path rules without `/openapi.json`, so that the test can add it
/// back as a new rule.
const INGEST_WITHOUT_OPENAPI: &str =
    "[services.ingest]\npath_patterns = [\"/events*\", \"/v1/events*\"]\n";

/// The pid in a task's `started (pid N, ...)` line.
fn pid_in(line: &str) -> Option<&str> {
    line.split("(pid ").nth(1)?.split([',', ')']).next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applied_stack_serves_events_through_run_local_on_each_tasks_own_role(
) -> anyhow::Result<()> {
    support::require_root()?;
    let mut env = Env::start_building_images(&[]).await?;
    let proxy = RecordingProxy::start(env.emulator.endpoint()).await?;
    let registry = LocalRegistry::start(Some(("AWS", &support::ecr_password(&env).await?))).await?;
    let edits = [
        ("http://127.0.0.1:5001", registry.url()),
        (env.emulator.endpoint(), proxy.url()),
    ];
    let with_openapi: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let mut edits = with_openapi.clone();
    edits.push(("[services.ingest]\n", INGEST_WITHOUT_OPENAPI));
    // Without the setting, run-local names it and stops.
    let mut without = edits.clone();
    without.push(("allow_run_local = true", "allow_run_local = false"));
    env.write_blueprint(&without)?;
    run_ok(provision(&env, &["apply", "--auto-approve"])?)?;
    let refused = support::provision(&env, &["run-local", "--port", "0"]).output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("stack.allow_run_local"),
        "run-local without the setting: {stderr}"
    );

    // With it, apply changes the roles' trust in place.
    env.write_blueprint(&edits)?;
    let started = Instant::now();
    run_ok(provision(&env, &["apply", "--auto-approve"])?)?;
    let applied = started.elapsed();

    let port = test_support::free_port()?;
    let mut run = Running::spawn({
        let mut command = support::provision(&env, &["run-local", "--port", &port.to_string()]);
        command.env("RUST_LOG", "warn");
        command
    })?;
    let lb = format!("http://127.0.0.1:{port}");
    for service in ["ingest", "graphql"] {
        run.wait_for(
            0,
            &[&format!("task {service}/1: healthy in target group")],
            Duration::from_secs(90),
        )
        .await?;
    }
    run.wait_for(
        0,
        &["task processor/1: container health check: HEALTHY"],
        Duration::from_secs(90),
    )
    .await?;
    let lines = run.lines();
    ensure!(
        lines
            .iter()
            .any(|l| l.contains("substituted: KAFKA_BOOTSTRAP_SERVERS=10.40.")),
        "the broker substitution is printed: {lines:#?}"
    );
    ensure!(
        lines.iter().filter(|l| l.contains("substituted:")).count() == 1,
        "only the broker is substituted: {lines:#?}"
    );

    let token = token(&env).await?;
    let first_202 = events_through_the_load_balancer(&lb, &token, &env, || {
        format!(
            "{}\nrefused calls: {:#?}",
            task_logs(&env),
            proxy
                .calls()
                .iter()
                .filter(|c| c.status >= 400)
                .map(|c| format!("{} {}", c.status, c.summary))
                .collect::<Vec<_>>()
        )
    })
    .await?;
    eprintln!(
        "apply took {:.1} s; first 202 through the load balancer {:.1} s after apply started",
        applied.as_secs_f64(),
        first_202.duration_since(started).as_secs_f64()
    );
    let bucket = raw_events_bucket(&env).await?;
    let client = reqwest::Client::new();

    // Every call a task made is allowed by the role whose credentials signed it.
    check_recorded_calls(&env, &proxy).await?;

    // moto's enforcement, where it is faithful: the bucket's keys.
    check_bucket_permissions(&env, &run, &bucket).await?;

    // A new path rule: apply, and the running load balancer routes it.
    let before = client.get(format!("{lb}/openapi.json")).send().await?;
    let before = before.text().await.unwrap_or_default();
    ensure!(
        !before.contains("\"openapi\""),
        "routed before the rule exists: {before}"
    );
    env.write_blueprint(&with_openapi)?;
    run_ok(provision(&env, &["apply", "--auto-approve"])?)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.get(format!("{lb}/openapi.json")).send().await?;
        if response.status() == 200 && response.text().await?.contains("\"openapi\"") {
            break;
        }
        ensure!(Instant::now() < deadline, "the new rule was not followed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A killed task: 503 while no ingest task is healthy, then a new task serves.
    let started_line = run
        .wait_for(0, &["task ingest/1: started (pid "], Duration::from_secs(1))
        .await?;
    let pid = pid_in(&started_line).context("pid")?.to_string();
    let seen = run.lines().len();
    ensure!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()?
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = client
            .post(format!("{lb}/events"))
            .bearer_auth(&token)
            .json(&json!({"event_type": "x", "user_id": "u"}))
            .send()
            .await?;
        if response.status() == 503 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no 503 while ingest is down: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.wait_for(seen, &["task ingest/1: exited"], Duration::from_secs(10))
        .await?;
    run.wait_for(
        seen,
        &["task ingest/1: restarted (pid "],
        Duration::from_secs(30),
    )
    .await?;
    run.wait_for(
        seen,
        &["task ingest/1: healthy in target group"],
        Duration::from_secs(60),
    )
    .await?;
    let again = client
        .post(format!("{lb}/events"))
        .bearer_auth(&token)
        .json(&json!({"event_type": "after_restart", "user_id": "u"}))
        .send()
        .await?;
    ensure!(
        again.status() == 202,
        "after the restart: {}",
        again.status()
    );

    // Ctrl-C stops every task and exits 0.
    let pids: Vec<String> = run
        .lines()
        .iter()
        .filter_map(|l| pid_in(l).map(str::to_string))
        .collect();
    ensure!(Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status()?
        .success());
    let deadline = Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Some(status) = run.child.try_wait()? {
            break status;
        }
        ensure!(
            Instant::now() < deadline,
            "run-local still running after Ctrl-C"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(status.success(), "run-local after Ctrl-C: {status}");
    for pid in pids {
        ensure!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "task process {pid} still running"
        );
    }

    // Destroy leaves nothing tagged.
    let stack = env.stack().await?;
    let report = stack
        .destroy(&env.options(), |_| true)
        .await?
        .context("destroy ran")?;
    ensure!(report.leftovers.is_empty(), "{:?}", report.leftovers);
    Ok(())
}

/// The same events through LocalStack, whose ECS runs the tasks in Docker
/// and whose load balancer routes: the test body above, with LocalStack in
/// place of moto and `run-local`. Run with
/// `EVENT_PLATFORM_TEST_BACKEND=containers LOCALSTACK_AUTH_TOKEN=...`
/// (testcontainers starts LocalStack and Redpanda);
/// `EVENT_PLATFORM_TEST_KAFKA_FOR_TASKS` is the broker's address as the task
/// containers see it (default `host.docker.internal:<mapped port>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and a LocalStack token"]
async fn on_localstack_the_applied_stack_serves_events_through_its_own_load_balancer(
) -> anyhow::Result<()> {
    ensure!(
        std::env::var("LOCALSTACK_AUTH_TOKEN").is_ok()
            && std::env::var("EVENT_PLATFORM_TEST_BACKEND").as_deref() == Ok("containers"),
        "set EVENT_PLATFORM_TEST_BACKEND=containers and LOCALSTACK_AUTH_TOKEN"
    );
    let broker = test_support::backend::Broker::start().await?;
    for (topic, partitions) in event_common::platform::TOPICS {
        broker
            .create_topic(topic, i32::try_from(partitions)?)
            .await?;
    }
    let kafka = match std::env::var("EVENT_PLATFORM_TEST_KAFKA_FOR_TASKS") {
        Ok(addr) => addr,
        Err(_) => {
            let bootstrap = broker.bootstrap_servers();
            let port = bootstrap.rsplit(':').next().context("broker port")?;
            format!("host.docker.internal:{port}")
        }
    };
    let mut env = Env::start_building_images(&[]).await?;
    let kafka_env = |service: &str| {
        format!("[services.{service}]\nenv = {{ KAFKA_BOOTSTRAP_SERVERS = \"{kafka}\" }}\n")
    };
    let (ingest, graphql) = (kafka_env("ingest"), kafka_env("graphql"));
    let processor = format!("{}\n", kafka_env("processor"));
    // LocalStack's ECR is a registry, and its ECS runs the tasks: wait for them.
    env.write_blueprint(&[
        ("registry = \"http://127.0.0.1:5001\"", ""),
        ("waits = false", "waits = true"),
        ("[services.ingest]\n", &ingest),
        ("[services.graphql]\n", &graphql),
        ("[logs]", &format!("{processor}[logs]")),
    ])?;
    run_ok(provision(&env, &["apply", "--auto-approve"])?)?;
    let outputs: Value =
        serde_json::from_str(&run_ok(support::provision(&env, &["output", "--json"]))?)?;
    let dns = outputs["alb_dns_name"]
        .as_str()
        .context("the load balancer's DNS name")?;
    let endpoint_port = env.emulator.endpoint().rsplit(':').next().unwrap_or("4566");
    let lb = format!("http://{dns}:{endpoint_port}");
    let token = token(&env).await?;
    events_through_the_load_balancer(&lb, &token, &env, String::new).await?;
    let report = env
        .stack()
        .await?
        .destroy(&env.options(), |_| true)
        .await?
        .context("destroy ran")?;
    ensure!(report.leftovers.is_empty(), "{:?}", report.leftovers);
    Ok(())
}

/// The shared body of the end-to-end tests: single and batch events through
/// the load balancer at `lb`, stored (exact counts from GraphQL through the
/// load balancer), archived to the stack's bucket, and the dashboard
/// rendered by headless Chromium. Returns when the first event was accepted.
async fn events_through_the_load_balancer(
    lb: &str,
    token: &str,
    env: &Env,
    diagnose: impl Fn() -> String,
) -> anyhow::Result<Instant> {
    let client = reqwest::Client::new();
    let single = client
        .post(format!("{lb}/events"))
        .bearer_auth(token)
        .json(&json!({"event_type": "signup", "user_id": "u-0", "timestamp": "2026-03-02T09:00:00Z", "payload": {"plan": "pro"}}))
        .send()
        .await?;
    let first_202 = Instant::now();
    ensure!(single.status() == 202, "single event: {}", single.status());
    let batch: Vec<Value> = (1..20)
        .map(|i| {
            let event_type = ["click", "page_view"][i % 2];
            json!({"event_type": event_type, "user_id": format!("u-{}", i % 5), "timestamp": format!("2026-03-02T10:{i:02}:00Z")})
        })
        .collect();
    let response = client
        .post(format!("{lb}/v1/events"))
        .bearer_auth(token)
        .json(&json!({ "events": batch }))
        .send()
        .await?;
    ensure!(response.status() == 202, "batch: {}", response.status());
    let unauthorized = client
        .post(format!("{lb}/events"))
        .json(&json!({}))
        .send()
        .await?;
    ensure!(
        unauthorized.status() == 401,
        "no token: {}",
        unauthorized.status()
    );
    let internal = client.get(format!("{lb}/metrics")).send().await?;
    ensure!(
        internal.status() == 404,
        "/metrics at the listener: {}",
        internal.status()
    );

    // The processor stored all 20 in DynamoDB; graphql reads them through the load balancer.
    let graphql = |query| platform::graphql(lb, token, query);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = graphql(
            r#"{ eventCount(from: "2026-03-02T00:00:00Z", to: "2026-03-03T00:00:00Z") { total } }"#,
        )
        .await;
        if count["data"]["eventCount"]["total"] == json!(20) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "events not visible: {count}\n{}",
            diagnose()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let top =
        graphql(r#"{ topEvents(from: "2026-03-02", to: "2026-03-02") { eventType count } }"#).await;
    assert_eq!(
        top["data"]["topEvents"],
        json!([
            {"eventType": "page_view", "count": 10},
            {"eventType": "click", "count": 9},
            {"eventType": "signup", "count": 1}
        ]),
        "{top}"
    );
    let daily =
        graphql(r#"{ dailyActiveUsers(from: "2026-03-02", to: "2026-03-02") { count } }"#).await;
    assert_eq!(
        daily["data"]["dailyActiveUsers"][0]["count"],
        json!(5),
        "{daily}"
    );

    // ... and archived them to S3.
    let s3 = s3_client(env);
    let bucket = raw_events_bucket(env).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let objects = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("raw/")
            .send()
            .await?;
        let keys: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
        if keys
            .iter()
            .any(|k| k.starts_with("raw/dt=2026-03-02/") && k.ends_with(".parquet"))
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "nothing archived: {keys:?}\n{}",
            diagnose()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The dashboard renders through the load balancer.
    let profile = tempfile::tempdir()?;
    let page = format!("{lb}/#token={token}&from=2026-03-01&to=2026-03-03");
    let dom = platform::render(&page, "--dump-dom", profile.path());
    ensure!(
        dom.contains(r#"data-state="ready""#),
        "dashboard did not load: {dom}"
    );
    ensure!(
        dom.contains(r#"id="total" data-value="20""#),
        "dashboard total: {dom}"
    );

    Ok(first_202)
}

/// The stack's raw-events bucket.
async fn raw_events_bucket(env: &Env) -> anyhow::Result<String> {
    let buckets = s3_client(env).list_buckets().send().await?;
    Ok(buckets
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .find(|n| n.contains("ep-local"))
        .context("the raw-events bucket")?
        .to_string())
}

fn s3_client(env: &Env) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&env.direct)
            .force_path_style(true)
            .build(),
    )
}

/// The last lines of every task's log, for failure messages.
fn task_logs(env: &Env) -> String {
    let dir = env.state_dir().join("ep-local.run-local");
    let mut out = String::new();
    for slot in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let log = std::fs::read_to_string(slot.path().join("output.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        out.push_str(&format!("--- {}:\n{tail}\n", slot.path().display()));
    }
    out
}

/// The policies of role `name` as deployed: inline and attached managed ones.
async fn role_policies(iam: &aws_sdk_iam::Client, name: &str) -> anyhow::Result<Vec<Value>> {
    let decode = |text: &str| -> anyhow::Result<Value> {
        match serde_json::from_str(text) {
            Ok(v) => Ok(v),
            Err(_) => Ok(serde_json::from_str(
                &percent_encoding::percent_decode_str(text).decode_utf8_lossy(),
            )?),
        }
    };
    let mut policies = Vec::new();
    for policy in iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await?
        .policy_names()
    {
        let out = iam
            .get_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await?;
        policies.push(decode(out.policy_document())?);
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await?;
    for policy in attached.attached_policies() {
        let arn = policy.policy_arn().context("policy arn")?;
        let meta = iam.get_policy().policy_arn(arn).send().await?;
        let version = meta
            .policy()
            .and_then(|p| p.default_version_id())
            .context("default version")?;
        let out = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await?;
        let document = out
            .policy_version()
            .and_then(|v| v.document())
            .context("policy document")?;
        policies.push(decode(document)?);
    }
    Ok(policies)
}

async fn check_recorded_calls(env: &Env, proxy: &RecordingProxy) -> anyhow::Result<()> {
    let iam = aws_sdk_iam::Client::new(&env.direct);
    let roles = proxy.assumed_roles();
    let mut policies: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut denied = BTreeSet::new();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for call in proxy.calls() {
        let Some(role_arn) = roles.get(&call.access_key) else {
            continue; // run-local's own calls, with the caller's credentials
        };
        let role = role_arn.rsplit('/').next().unwrap_or(role_arn).to_string();
        let Some(action) = &call.action else {
            continue;
        };
        if !policies.contains_key(&role) {
            policies.insert(role.clone(), role_policies(&iam, &role).await?);
        }
        let granted = &policies[&role];
        used.entry(role.clone()).or_default().insert(action.clone());
        for resource in &call.resources {
            if !granted.iter().any(|p| policy_allows(p, action, resource)) {
                denied.insert(format!(
                    "{role}: {} needs {action} on {resource}",
                    call.summary
                ));
            }
        }
    }
    eprintln!("calls by role: {used:#?}");
    ensure!(denied.is_empty(), "denied on AWS: {denied:#?}");
    let made = |role: &str, action: &str| used.get(role).is_some_and(|a| a.contains(action));
    ensure!(
        made("ep-local-processor", "dynamodb:UpdateItem")
            && made("ep-local-processor", "s3:PutObject"),
        "the processor's calls were recorded on its own role: {used:#?}"
    );
    ensure!(
        made("ep-local-graphql", "dynamodb:Query"),
        "graphql's calls: {used:#?}"
    );
    ensure!(
        used.keys().any(|r| r.contains("execution")),
        "the execution role read the secret and pulled the images: {used:#?}"
    );
    Ok(())
}

/// The credentials run-local serves task `id`, read as the task reads them:
/// from the endpoint its environment names.
async fn task_credentials(
    run: &Running,
    id: &str,
) -> anyhow::Result<aws_sdk_s3::config::Credentials> {
    let line = run
        .lines()
        .into_iter()
        .find(|l| l.contains(&format!("task {id}: ")) && l.contains("(pid "))
        .context("the task's pid")?;
    let pid = pid_in(&line).context("pid")?;
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let vars: BTreeMap<String, String> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    let uri = vars
        .get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .context("the task has no credentials endpoint")?;
    let token = vars
        .get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .context("no token")?;
    let body: Value = reqwest::Client::new()
        .get(uri)
        .header("Authorization", token)
        .send()
        .await?
        .json()
        .await?;
    let field = |name: &str| {
        body[name]
            .as_str()
            .map(str::to_string)
            .context(name.to_string())
    };
    Ok(aws_sdk_s3::config::Credentials::new(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        Some(field("Token")?),
        None,
        "task",
    ))
}

async fn check_bucket_permissions(env: &Env, run: &Running, bucket: &str) -> anyhow::Result<()> {
    let processor = task_credentials(run, "processor/1").await?;
    let graphql = task_credentials(run, "graphql/1").await?;
    let s3_as = |credentials: aws_sdk_s3::config::Credentials| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&env.direct)
                .credentials_provider(credentials)
                .force_path_style(true)
                .build(),
        )
    };
    let (processor, graphql) = (s3_as(processor), s3_as(graphql));
    let put = |client: &aws_sdk_s3::Client, key: &str| {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
            .send()
    };
    let auth = |count: &str| {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", env.emulator.endpoint()))
            .header("Content-Type", "application/json")
            .body(count.to_string())
            .send()
    };
    auth("0").await?.error_for_status()?;
    let results = (
        put(&processor, "raw/permission-check").await,
        put(&processor, "elsewhere/permission-check").await,
        put(&graphql, "raw/permission-check").await,
    );
    auth("1e12").await?.error_for_status()?;
    let denied = |r: &Result<_, aws_sdk_s3::error::SdkError<_>>| matches!(r, Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(e) == Some("AccessDenied"));
    ensure!(results.0.is_ok(), "processor into raw/: {:?}", results.0);
    ensure!(
        denied(&results.1),
        "processor outside raw/: {:?}",
        results.1
    );
    ensure!(
        denied(&results.2),
        "graphql into the bucket: {:?}",
        results.2
    );
    Ok(())
}
