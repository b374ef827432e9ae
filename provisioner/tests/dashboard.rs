//! The dashboard as a user sees it: `provision dev` with a crafted dataset
//! sent through its front door, the page rendered by headless Chromium
//! (Debian's `chromium`), a screenshot taken, and the numbers the charts
//! hold read from the rendered DOM and compared with answers written here.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod platform;

use platform::{graphql, render, start, stop};

/// Mon 2026-03-02 to Wed 2026-03-04: alice and bob first seen on the 2nd,
/// carol on the 3rd.
const EVENTS: &[(&str, &str, &str)] = &[
    ("2026-03-02T09:15:00Z", "page_view", "alice"),
    ("2026-03-02T09:40:00Z", "click", "alice"),
    ("2026-03-02T10:05:00Z", "page_view", "bob"),
    ("2026-03-02T23:59:59Z", "purchase", "bob"),
    ("2026-03-03T00:00:00Z", "page_view", "alice"),
    ("2026-03-03T12:30:00Z", "page_view", "carol"),
    ("2026-03-03T12:45:00Z", "click", "carol"),
    ("2026-03-04T08:00:00Z", "page_view", "bob"),
    ("2026-03-04T08:10:00Z", "purchase", "bob"),
];

/// The value of `attr="..."` in `tag`, if any.
fn attr<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {attr}=\""))? + attr.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// The opening tags inside the element carrying `data-chart="name"`.
fn chart<'a>(dom: &'a str, name: &str) -> Vec<&'a str> {
    let marker = format!("data-chart=\"{name}\"");
    let Some(at) = dom.find(&marker) else {
        panic!("no {name} chart in the page:\n{dom}");
    };
    let rest = &dom[at..];
    let end = ["</svg>", "</table>"]
        .iter()
        .filter_map(|close| rest.find(close))
        .min()
        .unwrap_or(rest.len());
    rest[..end].split('<').skip(1).collect()
}

/// (data-label, data-value) of each bar of a chart, in page order.
fn bars(dom: &str, name: &str) -> Vec<(String, i64)> {
    chart(dom, name)
        .into_iter()
        .filter_map(|tag| {
            let label = attr(tag, "data-label")?;
            let value = attr(tag, "data-value")?.parse().ok()?;
            Some((label.to_string(), value))
        })
        .collect()
}

fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
    expected.iter().map(|(l, v)| (l.to_string(), *v)).collect()
}

#[tokio::test]
async fn dashboard_in_headless_chromium_shows_the_crafted_numbers() {
    let port = test_support::free_port().expect("port").to_string();
    let dev = start(&["--port", &port]);
    assert_eq!(
        dev.dashboard,
        format!("{}/#token={}", dev.url, dev.token),
        "the banner prints the dashboard's URL"
    );
    let events: Vec<Value> = EVENTS
        .iter()
        .map(|(ts, t, u)| json!({"event_type": t, "user_id": u, "timestamp": ts}))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{}/events", dev.url))
        .bearer_auth(&dev.token)
        .json(&json!({ "events": events }))
        .send()
        .await
        .expect("front door answers");
    assert_eq!(response.status(), 202);

    // Wait until the processor stored everything, as the API reports it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let count = graphql(
            &dev.url,
            &dev.token,
            r#"{ eventCount(from: "2026-03-01T00:00:00Z", to: "2026-03-06T00:00:00Z") { total } }"#,
        )
        .await;
        if count["data"]["eventCount"]["total"] == json!(EVENTS.len()) {
            break;
        }
        assert!(Instant::now() < deadline, "events not visible: {count}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let page = format!("{}&from=2026-03-01&to=2026-03-05", dev.dashboard);
    let profile = tempfile::tempdir().expect("chromium profile");
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    render(
        &page,
        &format!("--screenshot={}", screenshot.display()),
        profile.path(),
    );
    let png = std::fs::read(&screenshot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot"
    );
    eprintln!("dashboard screenshot: {}", screenshot.display());

    let dom = render(&page, "--dump-dom", profile.path());
    assert!(
        dom.contains(r#"data-state="ready""#),
        "the page loaded its data:\n{dom}"
    );
    assert!(
        dom.contains(r#"id="total" data-value="9""#),
        "total events 9"
    );
    assert_eq!(
        bars(&dom, "volume"),
        pairs(&[
            ("2026-03-01", 0),
            ("2026-03-02", 4),
            ("2026-03-03", 3),
            ("2026-03-04", 2),
            ("2026-03-05", 0),
        ])
    );
    assert_eq!(
        bars(&dom, "top"),
        pairs(&[("page_view", 5), ("click", 2), ("purchase", 2)])
    );
    assert_eq!(
        bars(&dom, "dau"),
        pairs(&[
            ("2026-03-01", 0),
            ("2026-03-02", 2),
            ("2026-03-03", 2),
            ("2026-03-04", 1),
            ("2026-03-05", 0),
        ])
    );
    // Retention rows, oldest cohort first: (cohort, size, retained per day).
    let mut rows: Vec<(String, i64, Vec<i64>)> = Vec::new();
    for tag in chart(&dom, "retention") {
        if let (Some(cohort), Some(size)) = (attr(tag, "data-cohort"), attr(tag, "data-size")) {
            rows.push((cohort.into(), size.parse().expect("size"), Vec::new()));
        } else if let (Some(_), Some(value)) = (attr(tag, "data-period"), attr(tag, "data-value")) {
            let row = rows.last_mut().expect("a cell inside a row");
            row.2.push(value.parse().expect("value"));
        }
    }
    let cohort = |d: &str, size: i64, retained: [i64; 5]| (d.to_string(), size, retained.to_vec());
    assert_eq!(
        rows,
        vec![
            cohort("2026-03-01", 0, [0, 0, 0, 0, 0]),
            cohort("2026-03-02", 2, [2, 1, 1, 0, 0]),
            cohort("2026-03-03", 1, [1, 0, 0, 0, 0]),
            cohort("2026-03-04", 0, [0, 0, 0, 0, 0]),
            cohort("2026-03-05", 0, [0, 0, 0, 0, 0]),
        ]
    );
    assert!(stop(dev, "-TERM").success());
}
