//! Bad queries and bad credentials get the right error code (and the field
//! at fault) and never take the service down; GraphiQL's introspection query
//! stays within the limits; store failures are reported without internals.

use std::sync::Arc;

use event_common::auth;
use event_store::aws::{self, AwsSettings};
use event_store::hot::HotReader;
use serde_json::{json, Value};
use test_support::backend::AwsEmulator;
use test_support::fault::{Fault, FaultLayer};
use test_support::harness::GraphqlServer;
use test_support::stores::{dynamodb_store_with, sqlite_store};

/// The errors' code and `field`, asserting there are errors and all agree.
fn only_error(response: &Value) -> (String, Option<String>) {
    let errors = response["errors"].as_array().expect("errors");
    let kinds: std::collections::BTreeSet<(String, Option<String>)> = errors
        .iter()
        .map(|e| {
            let ext = &e["extensions"];
            (
                ext["code"]
                    .as_str()
                    .expect("every error has a code")
                    .to_string(),
                ext["field"].as_str().map(String::from),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 1, "one kind of error: {response}");
    kinds.into_iter().next().expect("one")
}

/// An introspection query nested `depth` levels deep.
fn nested_introspection(depth: usize) -> String {
    let mut q = String::from("name");
    for _ in 0..depth.saturating_sub(4) {
        q = format!("ofType {{ {q} }}");
    }
    format!("{{ __schema {{ types {{ fields {{ type {{ {q} }} }} }} }} }}")
}

/// The query GraphiQL sends to learn the schema.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}"#;

#[tokio::test]
async fn bad_queries_get_the_right_code_and_field_and_the_service_stays_up() {
    let (store, _dir) = sqlite_store().expect("sqlite");
    let api = GraphqlServer::start(Arc::new(store), |_| {})
        .await
        .expect("graphql");
    let full_page = "eventId eventType userId timestamp receivedAt payload";
    let too_complex = (0..4)
        .map(|i| format!("a{i}: latestEvents(limit: 1000) {{ {full_page} }}"))
        .collect::<Vec<_>>()
        .join(" ");
    // (what, query, expected code, expected field)
    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        ("syntax error", "{ latestEvents(limit: 5 { eventId } }".into(), "GRAPHQL_PARSE_FAILED", None),
        ("unknown field", "{ latestEvents { eventId secret } }".into(), "GRAPHQL_VALIDATION_FAILED", None),
        ("unknown query", "{ dropTable { ok } }".into(), "GRAPHQL_VALIDATION_FAILED", None),
        ("unknown argument", "{ latestEvents(max: 3) { eventId } }".into(), "GRAPHQL_VALIDATION_FAILED", None),
        ("missing argument", "{ eventsByUser { eventId } }".into(), "GRAPHQL_VALIDATION_FAILED", None),
        ("mutation", "mutation { deleteEvents }".into(), "GRAPHQL_VALIDATION_FAILED", None),
        ("over-deep", nested_introspection(20), "QUERY_TOO_DEEP", None),
        ("over-complex", format!("{{ {too_complex} }}"), "QUERY_TOO_COMPLEX", None),
        ("limit 0", "{ latestEvents(limit: 0) { eventId } }".into(), "BAD_USER_INPUT", Some("limit")),
        ("limit negative", r#"{ eventsByType(eventType: "a", limit: -1) { eventId } }"#.into(), "BAD_USER_INPUT", Some("limit")),
        ("limit 1001", r#"{ eventsByUser(userId: "u", limit: 1001) { eventId } }"#.into(), "BAD_USER_INPUT", Some("limit")),
        ("limit not an int", r#"{ latestEvents(limit: "ten") { eventId } }"#.into(), "BAD_USER_INPUT", None),
        ("first 5000", "{ events(first: 5000) { nodes { eventId } } }".into(), "BAD_USER_INPUT", Some("first")),
        ("forged cursor", r#"{ events(after: "bm90LWEtY3Vyc29y") { nodes { eventId } } }"#.into(), "BAD_USER_INPUT", Some("after")),
        ("empty user", r#"{ eventsByUser(userId: "") { eventId } }"#.into(), "BAD_USER_INPUT", Some("userId")),
        ("top limit", r#"{ topEvents(from: "2026-01-01", to: "2026-01-02", limit: 0) { count } }"#.into(), "BAD_USER_INPUT", Some("limit")),
        ("inverted range", r#"{ eventCount(from: "2026-03-02T00:00:00Z", to: "2026-03-01T00:00:00Z") { total } }"#.into(), "BAD_USER_INPUT", Some("to")),
        ("empty range", r#"{ eventCount(from: "2026-03-02T00:00:00Z", to: "2026-03-02T00:00:00Z") { total } }"#.into(), "BAD_USER_INPUT", Some("to")),
        ("range off the hour", r#"{ eventCount(from: "2026-03-02T00:30:00Z", to: "2026-03-03T00:00:00Z") { total } }"#.into(), "BAD_USER_INPUT", Some("from")),
        ("range over a year", r#"{ eventCount(from: "2024-01-01T00:00:00Z", to: "2026-01-01T00:00:00Z") { total } }"#.into(), "BAD_USER_INPUT", Some("to")),
        ("hourly over a month", r#"{ eventCount(from: "2026-01-01T00:00:00Z", to: "2026-03-01T00:00:00Z", bucket: HOUR) { total } }"#.into(), "BAD_USER_INPUT", Some("bucket")),
        ("bad date-time", r#"{ eventCount(from: "yesterday", to: "2026-03-01T00:00:00Z") { total } }"#.into(), "BAD_USER_INPUT", None),
        ("bad date", r#"{ dailyActiveUsers(from: "2026-02-30", to: "2026-03-01") { count } }"#.into(), "BAD_USER_INPUT", None),
        ("inverted days", r#"{ dailyActiveUsers(from: "2026-03-02", to: "2026-03-01") { count } }"#.into(), "BAD_USER_INPUT", Some("to")),
        ("days over a year", r#"{ topEvents(from: "2024-01-01", to: "2026-01-01") { count } }"#.into(), "BAD_USER_INPUT", Some("to")),
        ("no windows", r#"{ retention(startDate: "2026-03-02", windows: 0) { size } }"#.into(), "BAD_USER_INPUT", Some("windows")),
        ("too many windows", r#"{ retention(startDate: "2026-03-02", windows: 91) { size } }"#.into(), "BAD_USER_INPUT", Some("windows")),
        ("unknown window", r#"{ retention(startDate: "2026-03-02", windows: 2, windowType: MONTHLY) { size } }"#.into(), "BAD_USER_INPUT", None),
    ];
    for (what, query, code, field) in &cases {
        let response = api.query(query, json!({})).await.expect(what);
        assert_eq!(
            only_error(&response),
            (code.to_string(), field.map(String::from)),
            "{what}: {response}"
        );
        assert!(response["data"].is_null(), "{what}: no data: {response}");
    }

    // Bad values in variables are caught the same way.
    let response = api
        .query(
            "query($from: DateTime!) { eventCount(from: $from, to: \"2026-03-01T00:00:00Z\") { total } }",
            json!({"from": "not a time"}),
        )
        .await
        .expect("variables");
    assert_eq!(only_error(&response).0, "BAD_USER_INPUT", "{response}");
    let response = api
        .query(
            "query($n: Int) { latestEvents(limit: $n) { eventId } }",
            json!({"n": 5000}),
        )
        .await
        .expect("variables");
    assert_eq!(
        only_error(&response),
        ("BAD_USER_INPUT".into(), Some("limit".into()))
    );

    // Within the limits: one full page of 1,000, and GraphiQL's introspection.
    let page = format!("{{ latestEvents(limit: 1000) {{ {full_page} }} }}");
    api.data(&page, json!({}))
        .await
        .expect("a full page is allowed");
    let schema = api
        .data(INTROSPECTION, json!({}))
        .await
        .expect("introspection");
    assert_eq!(schema["__schema"]["queryType"]["name"], "Query");

    // Not a GraphQL request at all.
    let client = reqwest::Client::new();
    let post = |body: &'static str, content_type: &'static str| {
        client
            .post(format!("{}/graphql", api.url))
            .bearer_auth(&api.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (body, content_type, status) in [
        ("{not json", "application/json", 400),
        (r#"{"variables": {}}"#, "application/json", 400),
        ("{ latestEvents { eventId } }", "application/graphql", 415),
    ] {
        let response = post(body, content_type).await.expect("answers");
        assert_eq!(response.status().as_u16(), status, "{body}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(only_error(&body).0, "BAD_REQUEST");
    }

    // Still serving.
    let data = api
        .data("{ latestEvents { eventId } }", json!({}))
        .await
        .expect("alive");
    assert_eq!(data, json!({"latestEvents": []}));
}

#[tokio::test]
async fn missing_or_bad_tokens_are_refused_with_401() {
    let (store, _dir) = sqlite_store().expect("sqlite");
    let api = GraphqlServer::start(Arc::new(store), |_| {})
        .await
        .expect("graphql");
    let config = auth::JwtConfig::for_dev();
    let sign = |claims: Value| {
        auth::sign(config.secret.as_bytes(), config.algorithm, None, &claims).expect("token")
    };
    let expired = sign(json!({"sub": "u", "aud": "event-platform", "exp": 1_000_000_000u64}));
    let other_audience = sign(json!({"sub": "u", "aud": "somebody-else", "exp": 4_000_000_000u64}));
    let mut forged = api.token.clone();
    forged.push('x');
    let body = json!({"query": "{ latestEvents { eventId } }"});
    for (what, token) in [
        ("no token", None),
        ("garbage", Some("not-a-jwt")),
        ("bad signature", Some(forged.as_str())),
        ("expired", Some(expired.as_str())),
        ("wrong audience", Some(other_audience.as_str())),
    ] {
        let (status, response) = api.post(&body, token).await.expect(what);
        assert_eq!(status, 401, "{what}");
        assert_eq!(
            only_error(&response),
            ("UNAUTHENTICATED".into(), None),
            "{what}"
        );
        assert!(response.get("data").is_none(), "{what}: no data");
    }
    let (status, _) = api.post(&body, Some(&api.token)).await.expect("valid");
    assert_eq!(status, 200);

    // The dashboard page and GraphiQL are static; their data needs the token.
    let page = reqwest::get(format!("{}/", api.url))
        .await
        .expect("dashboard");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = page.text().await.expect("html");
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
    ] {
        assert!(
            !html.contains(external),
            "the dashboard loads nothing external: {external}"
        );
    }
    let graphiql = reqwest::get(format!("{}/graphql", api.url))
        .await
        .expect("graphiql");
    assert_eq!(graphiql.status(), 200);
    assert!(graphiql.text().await.expect("html").contains("graphiql"));
}

#[tokio::test]
async fn injected_store_outage_fault_layer_is_store_unavailable_without_internals() {
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let (faulty, faults) = FaultLayer::wrap(&sdk);
    let store: Arc<dyn HotReader> = Arc::new(dynamodb_store_with(&faulty, 1).await.expect("table"));
    let api = GraphqlServer::start(store, |_| {}).await.expect("graphql");
    faults.inject("Query", Fault::Unreachable, 100);
    let response = api
        .query(r#"{ eventsByUser(userId: "u") { eventId } }"#, json!({}))
        .await
        .expect("answers");
    assert_eq!(only_error(&response).0, "STORE_UNAVAILABLE", "{response}");
    let text = response.to_string();
    for internal in [emulator.endpoint(), "dispatch", "DynamoDB", "Query"] {
        assert!(!text.contains(internal), "leaks {internal}: {text}");
    }
    assert!(faults.injected("Query") > 0, "the outage was injected");
}

#[tokio::test]
async fn health_and_metrics_name_the_http_and_resolver_series() {
    let (store, _dir) = sqlite_store().expect("sqlite");
    let api = GraphqlServer::start(Arc::new(store), |_| {})
        .await
        .expect("graphql");
    for path in ["/health/live", "/health/ready"] {
        let response = reqwest::get(format!("{}{path}", api.url))
            .await
            .expect(path);
        assert_eq!(response.status(), 200, "{path}");
    }
    api.data("{ latestEvents { eventId } }", json!({}))
        .await
        .expect("query");
    let response = api
        .query("{ latestEvents(limit: 0) { eventId } }", json!({}))
        .await
        .expect("query");
    assert_eq!(only_error(&response).0, "BAD_USER_INPUT");
    let metrics = reqwest::get(format!("{}/metrics", api.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for series in [
        r#"http_requests_total{service="graphql",method="POST",path="/graphql",status="200"}"#,
        r#"http_request_duration_seconds_count{service="graphql",method="POST",path="/graphql"}"#,
        r#"graphql_resolver_duration_seconds_count{field="latestEvents"}"#,
        r#"graphql_errors_total{code="BAD_USER_INPUT"}"#,
    ] {
        assert!(metrics.contains(series), "missing {series} in:\n{metrics}");
    }
}

/// Every aliased field that reads the store costs a store round trip, not
/// just its list length: thousands of `latestEvents(limit: 1)` under
/// aliases are refused as too complex before any is run.
#[tokio::test]
async fn many_aliases_of_a_cheap_store_query_are_too_complex() {
    let (store, _dir) = sqlite_store().expect("sqlite");
    let api = GraphqlServer::start(Arc::new(store), |_| {})
        .await
        .expect("graphql");
    let aliased = |n: usize| {
        let fields: Vec<String> = (0..n)
            .map(|i| format!("a{i}: latestEvents(limit: 1) {{ eventId }}"))
            .collect();
        format!("{{ {} }}", fields.join(" "))
    };
    let response = api.query(&aliased(2000), json!({})).await.expect("answers");
    assert_eq!(only_error(&response).0, "QUERY_TOO_COMPLEX", "{response}");
    // A dashboard's handful of store reads in one request is still fine.
    api.data(&aliased(8), json!({}))
        .await
        .expect("eight aliases are fine");
}

/// A query the store answers too slowly (the fault layer delays DynamoDB's
/// answers) ends at the execution time bound with a clear error, instead
/// of holding a connection and the store's capacity.
#[tokio::test]
async fn fault_layer_a_query_slower_than_the_time_bound_is_cut_off_with_query_timeout() {
    let emulator = AwsEmulator::start().await.expect("AWS emulator");
    let sdk = aws::sdk_config(&AwsSettings::emulator(emulator.endpoint())).await;
    let (faulty, faults) = FaultLayer::wrap(&sdk);
    let store: Arc<dyn HotReader> = Arc::new(dynamodb_store_with(&faulty, 1).await.expect("table"));
    let api = GraphqlServer::start(store, |config| {
        config.limits.max_execution = std::time::Duration::from_millis(500)
    })
    .await
    .expect("graphql");
    faults.inject(
        "Query",
        Fault::Delay(std::time::Duration::from_secs(3)),
        100,
    );
    let started = std::time::Instant::now();
    let response = api
        .query(r#"{ eventsByUser(userId: "u") { eventId } }"#, json!({}))
        .await
        .expect("answers");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(only_error(&response).0, "QUERY_TIMEOUT", "{response}");
}

/// Arguments at the far ends of the calendar: each gets an answer (data or
/// `BAD_USER_INPUT`), never a panic in the date arithmetic, and the service
/// keeps serving.
#[tokio::test]
async fn extreme_dates_in_arguments_are_answered_not_panicked_on() {
    let (store, _dir) = sqlite_store().expect("sqlite");
    let api = GraphqlServer::start(Arc::new(store), |_| {})
        .await
        .expect("graphql");
    let queries = [
        r#"{ retention(startDate: "9999-12-31", windows: 90, windowType: WEEKLY) { size } }"#,
        r#"{ retention(startDate: "0001-01-01", windows: 90) { size } }"#,
        r#"{ dailyActiveUsers(from: "9999-12-01", to: "9999-12-31") { count } }"#,
        r#"{ topEvents(from: "0000-01-01", to: "0000-12-31") { count } }"#,
        r#"{ eventCount(from: "9999-12-31T00:00:00Z", to: "9999-12-31T23:00:00Z", bucket: HOUR) { total } }"#,
        r#"{ eventCount(from: "0000-01-01T00:00:00Z", to: "0000-01-02T00:00:00Z") { total } }"#,
        r#"{ eventCount(from: "+262143-12-31T00:00:00Z", to: "+262143-12-31T01:00:00Z") { total } }"#,
        r#"{ dailyActiveUsers(from: "-0001-01-01", to: "0001-01-01") { count } }"#,
    ];
    for query in queries {
        let response = api.query(query, json!({})).await.expect(query);
        let ok = response.get("errors").is_none() || only_error(&response).0 == "BAD_USER_INPUT";
        assert!(ok, "{query}: {response}");
    }
    let data = api
        .data("{ latestEvents { eventId } }", json!({}))
        .await
        .expect("alive");
    assert_eq!(data, json!({"latestEvents": []}));
}
