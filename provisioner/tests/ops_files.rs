//! The shipped dashboards and alerts (`ops/`): Prometheus's own `promtool`
//! accepts the scrape config and the rules, the Grafana dashboard is what
//! Grafana imports, and every metric a panel or a rule reads is one the
//! services export: `provision dev`'s `/metrics` after traffic lists it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod platform;

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ops().join("prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; install Debian's `prometheus` package (.ci/run does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

/// The metric names a PromQL expression reads: what is left once strings,
/// label matchers, ranges, grouping clauses, functions and keywords are gone.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut depth = (0, 0);
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '{' => depth.0 += 1,
            '}' => depth.0 -= 1,
            '[' => depth.1 += 1,
            ']' => depth.1 -= 1,
            _ if depth != (0, 0) => {}
            _ => text.push(c),
        }
    }
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    let mut skip_group = false;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '(') {
        rest = &rest[start..];
        if rest.starts_with('(') {
            let close = rest.find(')').unwrap_or(rest.len() - 1);
            if skip_group {
                rest = &rest[close + 1..];
                skip_group = false;
            } else {
                rest = &rest[1..];
            }
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        // A function, or an aggregation before its grouping (`sum by (le) (...)`).
        let next = rest.trim_start();
        let is_call =
            next.starts_with('(') || next.starts_with("by") || next.starts_with("without");
        match word {
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" => {
                skip_group = true
            }
            "and" | "or" | "unless" | "bool" | "offset" => {}
            _ if is_call => {}
            _ => {
                names.insert(word.to_string());
            }
        }
    }
    names
}

/// The `expr:` blocks of the rules file (`expr: |` and the lines indented under it).
fn rule_exprs(text: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(at) = line.find("expr:") else {
            continue;
        };
        let inline = line[at + 5..].trim();
        if inline != "|" {
            exprs.push(inline.to_string());
            continue;
        }
        let mut expr = String::new();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() <= at {
                break;
            }
            expr.push_str(next.trim());
            expr.push(' ');
            lines.next();
        }
        exprs.push(expr);
    }
    exprs
}

#[test]
fn promql_names_are_told_apart_from_functions_labels_and_clauses() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, service) (rate(x_bucket{status=~"5.."}[5m]))) > 0.5 and on(job) up == 0 or absent(y)"#,
    );
    assert_eq!(
        names,
        ["up", "x_bucket", "y"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[test]
fn prometheus_accepts_the_scrape_config_and_the_alert_rules() {
    let config = promtool(&["check", "config", "prometheus.yml"]);
    assert!(config.contains("1 rule files found"), "{config}");
    let rules = promtool(&["check", "rules", "alerts.yml"]);
    assert!(rules.contains("SUCCESS: 6 rules found"), "{rules}");
}

/// What the dashboard and the rules read, with where each comes from.
fn used_metrics() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(ops().join("grafana/event-platform.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "event-platform");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert_eq!(panels.len(), 10);
    let mut used = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().expect("an expr");
            for name in metric_names(expr) {
                used.push((name, format!("panel `{title}`")));
            }
        }
    }
    let rules = std::fs::read_to_string(ops().join("prometheus/alerts.yml")).expect("rules");
    let exprs = rule_exprs(&rules);
    assert_eq!(exprs.len(), 6);
    for expr in exprs {
        for name in metric_names(&expr) {
            // `up` is Prometheus's own, one per scrape target.
            if name != "up" {
                used.push((name, format!("rule `{expr}`")));
            }
        }
    }
    used
}

#[tokio::test]
async fn every_metric_a_panel_or_an_alert_reads_is_exported_after_traffic() {
    let used = used_metrics();
    let port = test_support::free_port().expect("port").to_string();
    let dev = platform::start(&["--port", &port]);
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}{path}", dev.url))
            .bearer_auth(&dev.token)
            .json(&body)
            .send()
    };
    let good = post(
        "/events",
        json!({"event_type": "page_view", "user_id": "u-1", "payload": {}}),
    )
    .await
    .expect("POST /events");
    assert_eq!(good.status(), 202);
    let bad = post("/events", json!({"event_type": "", "user_id": "u-1"}))
        .await
        .expect("POST /events");
    assert_eq!(bad.status(), 422, "an invalid event");
    let query = post(
        "/graphql",
        json!({"query": "{ latestEvents(limit: 1) { eventId } }"}),
    )
    .await
    .expect("POST /graphql");
    assert_eq!(query.status(), 200);
    let broken = post("/graphql", json!({"query": "{ latestEvents("}))
        .await
        .expect("POST /graphql");
    assert_eq!(broken.status(), 200, "GraphQL errors are 200 with errors");
    client
        .get(format!("{}/health/ready", dev.url))
        .send()
        .await
        .expect("ready");

    // Lag is reported every 5 s once partitions are assigned.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exported = loop {
        let text = client
            .get(format!("{}/metrics", dev.url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        let names: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(String::from)
            .collect();
        let missing: Vec<&(String, String)> =
            used.iter().filter(|(n, _)| !names.contains(n)).collect();
        if missing.is_empty() {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "read but never exported: {missing:#?}\nexported: {names:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(exported.contains("consumer_lag"));
    assert!(platform::stop(dev, "-TERM").success());
}
