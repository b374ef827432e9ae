//! The bad-input suite: each case asserts the status and the problem body
//! (field and reason), and afterwards the topic holds nothing at all.

use std::io::Write;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use event_common::auth::{self, JwtConfig};
use flate2::write::GzEncoder;
use flate2::Compression;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use test_support::harness::{ingest_with_broker, IngestSetup};
use test_support::kafka::message_counts;

enum Auth {
    Valid,
    Missing,
    Header(String),
}

struct Case {
    name: &'static str,
    auth: Auth,
    content_type: Option<&'static str>,
    encoding: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The field the problem must name (`None`: the detail must match instead).
    field: Option<&'static str>,
    /// Text the named field's reason (or the detail) must contain.
    reason: &'static str,
}

fn case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    field: Option<&'static str>,
    reason: &'static str,
) -> Case {
    Case {
        name,
        auth: Auth::Valid,
        content_type: Some("application/json"),
        encoding: None,
        body: body.into(),
        status,
        field,
        reason,
    }
}

fn auth_case(name: &'static str, header: Option<String>, reason: &'static str) -> Case {
    let auth = match header {
        Some(h) => Auth::Header(h),
        None => Auth::Missing,
    };
    Case {
        auth,
        ..case(
            name,
            r#"{"event_type":"a","user_id":"u"}"#,
            401,
            None,
            reason,
        )
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

fn event(extra: &str) -> String {
    format!(r#"{{"event_type":"a","user_id":"u"{extra}}}"#)
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn cases(jwt: &JwtConfig) -> Vec<Case> {
    let now = chrono::Utc::now().timestamp();
    let claims = |aud: &str, exp: i64| json!({"sub": "test-user", "aud": aud, "exp": exp});
    let signed = |secret: &[u8], alg: Algorithm, kid: Option<&str>, c: &Value| {
        format!("Bearer {}", auth::sign(secret, alg, kid, c).expect("sign"))
    };
    let secret = jwt.secret.as_bytes();
    let none_token = format!(
        "Bearer {}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("event-platform", now + 3600).to_string())
    );
    let big_string = "x".repeat(40 * 1024);
    let over_batch: Vec<String> = (0..501).map(|_| event("")).collect();
    let mut body_over_limit =
        br#"{"events":[{"event_type":"a","user_id":"u","payload":{"s":""#.to_vec();
    body_over_limit.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 10));
    body_over_limit.extend(br#""}}]}"#);

    vec![
        // 401: missing, malformed and forged credentials.
        auth_case(
            "no authorization header",
            None,
            "missing Authorization header",
        ),
        auth_case(
            "basic scheme",
            Some("Basic dXNlcjpwYXNz".into()),
            "malformed Authorization header",
        ),
        auth_case(
            "empty bearer",
            Some("Bearer ".into()),
            "malformed Authorization header",
        ),
        auth_case(
            "bearer without space",
            Some("Bearertoken".into()),
            "malformed Authorization header",
        ),
        auth_case(
            "not a jwt",
            Some("Bearer not.a.jwt".into()),
            "invalid token",
        ),
        auth_case("alg none", Some(none_token), "invalid token"),
        auth_case(
            "wrong key",
            Some(signed(
                b"another-secret-another-secret-00",
                Algorithm::HS256,
                None,
                &claims("event-platform", now + 3600),
            )),
            "bad signature",
        ),
        auth_case(
            "expired token",
            Some(signed(
                secret,
                Algorithm::HS256,
                None,
                &claims("event-platform", now - 3600),
            )),
            "expired",
        ),
        auth_case(
            "wrong audience",
            Some(signed(
                secret,
                Algorithm::HS256,
                None,
                &claims("someone-else", now + 3600),
            )),
            "wrong audience",
        ),
        auth_case(
            "missing exp",
            Some(signed(
                secret,
                Algorithm::HS256,
                None,
                &json!({"sub":"a","aud":"event-platform"}),
            )),
            "exp",
        ),
        auth_case(
            "missing sub",
            Some(signed(
                secret,
                Algorithm::HS256,
                None,
                &json!({"aud":"event-platform","exp":now + 3600}),
            )),
            "sub",
        ),
        auth_case(
            "algorithm switched to HS512",
            Some(signed(
                secret,
                Algorithm::HS512,
                None,
                &claims("event-platform", now + 3600),
            )),
            "not accepted",
        ),
        auth_case(
            "unknown kid",
            Some(signed(
                secret,
                Algorithm::HS256,
                Some("nope"),
                &claims("event-platform", now + 3600),
            )),
            "unknown key id",
        ),
        // 415: content type and encoding.
        Case {
            content_type: None,
            ..case(
                "no content type",
                event(""),
                415,
                None,
                "missing Content-Type",
            )
        },
        Case {
            content_type: Some("text/plain"),
            ..case("text/plain", event(""), 415, None, "text/plain")
        },
        Case {
            content_type: Some("application/x-www-form-urlencoded"),
            ..case("form", "a=b", 415, None, "not accepted")
        },
        Case {
            encoding: Some("br"),
            ..case(
                "brotli encoding",
                event(""),
                415,
                None,
                "Content-Encoding br",
            )
        },
        // 400: not JSON.
        case("empty body", "", 400, Some("body"), "malformed JSON"),
        case(
            "truncated object",
            r#"{"event_type":"a""#,
            400,
            Some("body"),
            "malformed JSON",
        ),
        case(
            "not json at all",
            "hello",
            400,
            Some("body"),
            "malformed JSON",
        ),
        case(
            "trailing garbage",
            format!("{} x", event("")),
            400,
            Some("body"),
            "malformed JSON",
        ),
        case(
            "invalid utf-8",
            b"{\"event_type\":\"a\xff\xfe\",\"user_id\":\"u\"}".to_vec(),
            400,
            Some("body"),
            "not valid UTF-8",
        ),
        case(
            "document nested 100 deep",
            format!(
                r#"{{"event_type":"a","user_id":"u","payload":{{"x":{}}}}}"#,
                nested(100)
            ),
            400,
            Some("body"),
            "nested deeper",
        ),
        Case {
            encoding: Some("gzip"),
            ..case(
                "gzip header on plain bytes",
                event(""),
                400,
                Some("body"),
                "invalid gzip",
            )
        },
        // 413: size limits.
        case(
            "body over 1 MiB",
            body_over_limit,
            413,
            Some("body"),
            "exceeds the limit",
        ),
        case(
            "batch of 501",
            format!(r#"{{"events":[{}]}}"#, over_batch.join(",")),
            413,
            Some("events"),
            "501 events",
        ),
        case(
            "single event over 32 KiB",
            event(&format!(r#","payload":{{"s":"{big_string}"}}"#)),
            413,
            Some("body"),
            "exceeds the limit",
        ),
        case(
            "batch event over 32 KiB",
            format!(
                r#"{{"events":[{},{},{}]}}"#,
                event(""),
                event(""),
                event(&format!(r#","payload":{{"s":"{big_string}"}}"#))
            ),
            413,
            Some("events[2]"),
            "exceeds the limit",
        ),
        Case {
            encoding: Some("gzip"),
            ..case(
                "gzip bomb",
                gzip(&vec![b' '; 20 * 1024 * 1024]),
                413,
                Some("body"),
                "decompressed body exceeds",
            )
        },
        // 422: JSON of the wrong shape.
        case(
            "top-level array",
            format!("[{}]", event("")),
            422,
            Some("body"),
            "expected a JSON object",
        ),
        case(
            "top-level string",
            r#""event""#,
            422,
            Some("body"),
            "expected a JSON object",
        ),
        case(
            "empty batch",
            r#"{"events":[]}"#,
            422,
            Some("events"),
            "at least one",
        ),
        case(
            "events not an array",
            r#"{"events":{"event_type":"a"}}"#,
            422,
            Some("events"),
            "must be an array",
        ),
        case(
            "batch with extra key",
            format!(r#"{{"events":[{}],"meta":1}}"#, event("")),
            422,
            Some("meta"),
            "unknown field",
        ),
        case(
            "batch item not an object",
            format!(r#"{{"events":[{},42]}}"#, event("")),
            422,
            Some("events[1]"),
            "must be a JSON object",
        ),
        case(
            "missing event_type",
            r#"{"user_id":"u"}"#,
            422,
            Some("event_type"),
            "required",
        ),
        case(
            "missing user_id",
            r#"{"event_type":"a"}"#,
            422,
            Some("user_id"),
            "required",
        ),
        case(
            "event_type a number",
            r#"{"event_type":7,"user_id":"u"}"#,
            422,
            Some("event_type"),
            "must be a string",
        ),
        case(
            "user_id null",
            r#"{"event_type":"a","user_id":null}"#,
            422,
            Some("user_id"),
            "required",
        ),
        case(
            "empty event_type",
            r#"{"event_type":"","user_id":"u"}"#,
            422,
            Some("event_type"),
            "must not be empty",
        ),
        case(
            "event_type of 129 chars",
            format!(r#"{{"event_type":"{}","user_id":"u"}}"#, "e".repeat(129)),
            422,
            Some("event_type"),
            "at most 128",
        ),
        case(
            "user_id of 257 chars",
            format!(r#"{{"event_type":"a","user_id":"{}"}}"#, "é".repeat(257)),
            422,
            Some("user_id"),
            "at most 256",
        ),
        case(
            "control character in user_id",
            r#"{"event_type":"a","user_id":"u\u0000"}"#,
            422,
            Some("user_id"),
            "control characters",
        ),
        case(
            "payload an array",
            event(r#","payload":[1,2]"#),
            422,
            Some("payload"),
            "must be a JSON object",
        ),
        case(
            "payload a string",
            event(r#","payload":"{}""#),
            422,
            Some("payload"),
            "must be a JSON object",
        ),
        case(
            "payload nested 40 deep",
            event(&format!(r#","payload":{{"x":{}}}"#, nested(40))),
            422,
            Some("payload"),
            "nested deeper than 32",
        ),
        case(
            "event_id not a uuid",
            event(r#","event_id":"123""#),
            422,
            Some("event_id"),
            "must be a UUID",
        ),
        case(
            "timestamp not rfc3339",
            event(r#","timestamp":"15/01/2024 10:30""#),
            422,
            Some("timestamp"),
            "RFC 3339",
        ),
        case(
            "occurred_at a number",
            event(r#","occurred_at":1700000000"#),
            422,
            Some("occurred_at"),
            "must be a string",
        ),
        case(
            "sent_at not a date",
            event(r#","sent_at":"yesterday""#),
            422,
            Some("sent_at"),
            "RFC 3339",
        ),
        case(
            "unknown field",
            event(r#","evnt_type":"typo""#),
            422,
            Some("evnt_type"),
            "unknown field",
        ),
        case(
            "payload and properties both",
            event(r#","payload":{},"properties":{}"#),
            422,
            Some("properties"),
            "duplicate field",
        ),
        case(
            "invalid item deep in a batch",
            format!(
                r#"{{"events":[{},{},{},{{"event_type":"a"}}]}}"#,
                event(""),
                event(""),
                event("")
            ),
            422,
            Some("events[3].user_id"),
            "required",
        ),
    ]
}

#[tokio::test]
async fn bad_input_gets_a_clear_problem_and_never_reaches_the_topic() {
    let IngestSetup {
        broker,
        topic,
        server,
    } = ingest_with_broker(2, |_| {})
        .await
        .expect("broker, topic and ingest");
    let cases = cases(server.jwt());
    assert!(cases.len() >= 40, "the suite has {} cases", cases.len());

    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    for c in &cases {
        let mut request = client
            .post(format!("{}/events", server.url))
            .body(c.body.clone());
        match &c.auth {
            Auth::Valid => request = request.bearer_auth(&server.token),
            Auth::Missing => {}
            Auth::Header(h) => request = request.header("authorization", h),
        }
        if let Some(ct) = c.content_type {
            request = request.header("content-type", ct);
        }
        if let Some(enc) = c.encoding {
            request = request.header("content-encoding", enc);
        }
        let response = request.send().await.expect("ingest answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        let named = match c.field {
            Some(field) => problem["errors"].as_array().into_iter().flatten().any(|e| {
                e["field"] == field && e["reason"].as_str().is_some_and(|r| r.contains(c.reason))
            }),
            None => problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(c.reason)),
        };
        let ok = status == c.status
            && content_type == "application/problem+json"
            && problem["status"] == c.status
            && named;
        if !ok {
            failures.push(format!("{}: got {status} {content_type} {problem}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing of any refused request may have reached the topic.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counts = message_counts(&broker.bootstrap_servers(), &topic).expect("watermarks");
    assert_eq!(
        counts.values().sum::<i64>(),
        0,
        "refused requests put messages on the topic: {counts:?}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn over_the_rate_limit_gets_429_with_retry_after_and_nothing_more_is_published() {
    let IngestSetup {
        broker,
        topic,
        server,
    } = ingest_with_broker(1, |c| {
        c.rate_limit_events_per_second = 1;
        c.rate_limit_burst_events = 500;
    })
    .await
    .expect("broker, topic and ingest");
    let batch: Vec<String> = (0..500).map(|_| event("")).collect();
    let client = reqwest::Client::new();
    let send = |body: String| {
        client
            .post(format!("{}/events", server.url))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        send(format!(r#"{{"events":[{}]}}"#, batch.join(",")))
            .await
            .expect("answer")
            .status()
            .as_u16(),
        202
    );
    // 100 events: the bucket refills one a second, so however slowly the
    // first batch was acknowledged, these cannot fit (a single event could).
    let over: Vec<String> = (0..100).map(|_| event("")).collect();
    let limited = send(format!(r#"{{"events":[{}]}}"#, over.join(",")))
        .await
        .expect("answer");
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry_after >= 1);
    let counts = message_counts(&broker.bootstrap_servers(), &topic).expect("watermarks");
    assert_eq!(
        counts.values().sum::<i64>(),
        500,
        "only the accepted batch is on the topic"
    );
    server.stop().await.expect("clean stop");
}
