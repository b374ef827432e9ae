//! A fault-injecting layer for the AWS SDK, for faults no emulator produces
//! (throttling, outages, DependencyViolation, IAM propagation delay). It
//! wraps the SDK's real HTTP client: requests it does not fault go to the
//! emulator unchanged. Tests that use it say so in their names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// Turns an answer's body into another (see [`Fault::Rewrite`]).
pub type Rewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What to do to a request.
#[derive(Clone)]
pub enum Fault {
    /// Answer with this AWS error (HTTP status, error code, message), in the
    /// protocol of the service, without sending the request.
    Error {
        /// HTTP status.
        status: u16,
        /// AWS error code, e.g. `ThrottlingException`.
        code: String,
        /// Error message.
        message: String,
    },
    /// Fail as if the connection was refused (an outage), without sending.
    Unreachable,
    /// Send the request, but only after this delay.
    Delay(Duration),
    /// Send the request and hand the SDK the emulator's answer rewritten,
    /// for states no emulator reaches (a deployment the circuit breaker
    /// stopped, tasks that stopped).
    Rewrite(Rewrite),
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Error {
                status,
                code,
                message,
            } => write!(f, "Error({status} {code}: {message})"),
            Fault::Unreachable => write!(f, "Unreachable"),
            Fault::Delay(delay) => write!(f, "Delay({delay:?})"),
            Fault::Rewrite(_) => write!(f, "Rewrite"),
        }
    }
}

impl Fault {
    /// DynamoDB's throttling answer.
    pub fn throttling() -> Self {
        Fault::Error {
            status: 400,
            code: "ThrottlingException".into(),
            message: "Rate of requests exceeds the allowed throughput (injected)".into(),
        }
    }
}

#[derive(Debug)]
struct Rule {
    operation: String,
    fault: Fault,
    remaining: u32,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    injected: HashMap<String, u32>,
    /// Every call as (service, operation), the service as IAM names it.
    calls: Vec<(String, String)>,
}

/// The fault layer: a handle to arm faults and read what happened.
#[derive(Debug, Clone, Default)]
pub struct FaultLayer {
    state: Arc<Mutex<State>>,
}

impl FaultLayer {
    /// A copy of `config` whose clients send through a new fault layer.
    pub fn wrap(config: &SdkConfig) -> (SdkConfig, FaultLayer) {
        // The SDK picks its default client lazily; build the same one to wrap.
        let inner = config.http_client().unwrap_or_else(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https()
        });
        let layer = FaultLayer::default();
        let client = FaultClient {
            inner,
            layer: layer.clone(),
        };
        (
            config
                .to_builder()
                .http_client(SharedHttpClient::new(client))
                .build(),
            layer,
        )
    }

    /// Applies `fault` to the next `times` calls of `operation` (`*` for any):
    /// a JSON-protocol target such as `TransactWriteItems`, a query-protocol
    /// `Action` such as `DeleteSecurityGroup`, or for REST `METHOD /path`, or
    /// just `METHOD` for any path.
    pub fn inject(&self, operation: &str, fault: Fault, times: u32) {
        if let Ok(mut state) = self.state.lock() {
            state.rules.push(Rule {
                operation: operation.to_string(),
                fault,
                remaining: times,
            });
        }
    }

    /// How many faults were served for `operation` so far.
    pub fn injected(&self, operation: &str) -> u32 {
        self.state
            .lock()
            .map(|s| s.injected.get(operation).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Every operation seen, in order, faulted or not.
    pub fn calls(&self) -> Vec<String> {
        self.calls_by_service()
            .into_iter()
            .map(|(_, operation)| operation)
            .collect()
    }

    /// Every call seen as (service, operation), the service as IAM's action
    /// prefix names it (`ec2`, `ecs`, `iam`, `s3`, ...).
    pub fn calls_by_service(&self) -> Vec<(String, String)> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    /// Stops every armed fault: what is sent from now on reaches the emulator.
    pub fn clear_faults(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.rules.clear();
        }
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.calls.clear();
        }
    }

    fn take_fault(&self, service: &str, operation: &str) -> Option<Fault> {
        let mut state = self.state.lock().ok()?;
        state
            .calls
            .push((service.to_string(), operation.to_string()));
        let rule = state
            .rules
            .iter_mut()
            .find(|r| r.remaining > 0 && matches(&r.operation, operation))?;
        rule.remaining -= 1;
        let (fault, name) = (rule.fault.clone(), rule.operation.clone());
        *state.injected.entry(name).or_default() += 1;
        Some(fault)
    }
}

fn matches(rule: &str, operation: &str) -> bool {
    rule == "*"
        || rule == operation
        || operation
            .strip_prefix(rule)
            .is_some_and(|rest| rest.starts_with(' '))
}

#[derive(Debug)]
struct FaultClient {
    inner: SharedHttpClient,
    layer: FaultLayer,
}

impl HttpClient for FaultClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultConnector {
            inner: self.inner.http_connector(settings, components),
            layer: self.layer.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultConnector {
    inner: SharedHttpConnector,
    layer: FaultLayer,
}

/// The service protocols, for writing an error the SDK parses.
#[derive(Clone, Copy)]
enum Protocol {
    Json,
    Ec2Query,
    Query,
    RestXml,
    /// Smithy RPC v2 CBOR (CloudWatch).
    Cbor,
}

/// A request's service (as IAM's action prefix names it), operation name
/// and protocol.
fn operation_of(request: &HttpRequest) -> (String, String, Protocol) {
    if let Some(target) = request.headers().get("x-amz-target") {
        let (prefix, operation) = target.rsplit_once('.').unwrap_or((target, target));
        let service = match prefix {
            p if p.starts_with("AmazonEC2ContainerServiceV") => "ecs",
            p if p.starts_with("AmazonEC2ContainerRegistry") => "ecr",
            p if p.starts_with("DynamoDB") => "dynamodb",
            p if p.starts_with("Logs") => "logs",
            p if p.starts_with("AmazonSSM") => "ssm",
            p if p.starts_with("CertificateManager") => "acm",
            other => other,
        };
        return (service.to_string(), operation.to_string(), Protocol::Json);
    }
    if request.headers().get("smithy-protocol") == Some("rpc-v2-cbor") {
        // POST /service/SERVICE/operation/OPERATION
        let path = request.uri().split("/service/").nth(1).unwrap_or_default();
        let (service, operation) = path.split_once("/operation/").unwrap_or((path, path));
        let service = match service {
            "GraniteServiceVersion20100801" => "cloudwatch",
            other => other,
        };
        return (service.to_string(), operation.to_string(), Protocol::Cbor);
    }
    let body = request
        .body()
        .bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    if let Some(action) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        let version = body.split('&').find_map(|kv| kv.strip_prefix("Version="));
        let (service, protocol) = match version {
            Some("2016-11-15") => ("ec2", Protocol::Ec2Query),
            Some("2015-12-01") => ("elasticloadbalancing", Protocol::Query),
            Some("2010-05-08") => ("iam", Protocol::Query),
            Some("2011-06-15") => ("sts", Protocol::Query),
            Some("2010-03-31") => ("sns", Protocol::Query),
            _ => ("unknown", Protocol::Query),
        };
        return (service.to_string(), action.to_string(), protocol);
    }
    // REST (S3): the method and path, and the subresource that names the
    // operation (`PUT /bucket?policy` is PutBucketPolicy).
    let uri = request.uri();
    let without_host = uri
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(uri);
    let (path, query) = without_host.split_once('?').unwrap_or((without_host, ""));
    let path = match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let subresource = query
        .split('&')
        .map(|kv| kv.split('=').next().unwrap_or(kv))
        .find(|key| !key.is_empty() && *key != "x-id");
    let name = match subresource {
        Some(key) => format!("{} {path}?{key}", request.method()),
        None => format!("{} {path}", request.method()),
    };
    ("s3".to_string(), name, Protocol::RestXml)
}

fn error_response(protocol: Protocol, status: u16, code: &str, message: &str) -> Response<SdkBody> {
    let body: SdkBody = match protocol {
        Protocol::Cbor => cbor_error(code, message).into(),
        _ => text_error(protocol, code, message).into(),
    };
    let status = StatusCode::try_from(status)
        .unwrap_or_else(|_| StatusCode::try_from(500).unwrap_or_else(|_| unreachable!()));
    let mut response = Response::new(status, body);
    let headers = response.headers_mut();
    match protocol {
        Protocol::Json => {
            headers.insert("content-type", "application/x-amz-json-1.0");
            headers.insert("x-amzn-errortype", code.to_string());
        }
        Protocol::Cbor => {
            headers.insert("content-type", "application/cbor");
            headers.insert("smithy-protocol", "rpc-v2-cbor");
        }
        _ => {}
    }
    response
}

/// `{"__type": code, "message": message}` in CBOR, as RPC v2 CBOR services answer errors.
fn cbor_error(code: &str, message: &str) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, value: &str) {
        let len = value.len();
        match len {
            0..=23 => out.push(0x60 | len as u8),
            24..=255 => out.extend([0x78, len as u8]),
            _ => {
                out.push(0x7a);
                out.extend((len as u32).to_be_bytes());
            }
        }
        out.extend(value.as_bytes());
    }
    let mut out = vec![0xa2];
    text(&mut out, "__type");
    text(&mut out, code);
    text(&mut out, "message");
    text(&mut out, message);
    out
}

fn text_error(protocol: Protocol, code: &str, message: &str) -> String {
    match protocol {
        Protocol::Json => format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        Protocol::Ec2Query => format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>injected</RequestID></Response>"
        ),
        Protocol::Query => format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
        ),
        Protocol::RestXml | Protocol::Cbor => {
            format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>")
        }
    }
}

impl HttpConnector for FaultConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (service, operation, protocol) = operation_of(&request);
        match self.layer.take_fault(&service, &operation) {
            None => self.inner.call(request),
            Some(Fault::Error {
                status,
                code,
                message,
            }) => HttpConnectorFuture::ready(Ok(error_response(protocol, status, &code, &message))),
            Some(Fault::Unreachable) => HttpConnectorFuture::ready(Err(ConnectorError::io(
                format!("connection refused (injected outage) for {operation}").into(),
            ))),
            Some(Fault::Rewrite(rewrite)) => {
                let inner = self.inner.clone();
                HttpConnectorFuture::new(async move {
                    let mut response = inner.call(request).await?;
                    let body = http_body_util::BodyExt::collect(response.take_body())
                        .await
                        .map_err(|e| ConnectorError::io(e.to_string().into()))?
                        .to_bytes();
                    let text = rewrite(&String::from_utf8_lossy(&body));
                    response
                        .headers_mut()
                        .insert("content-length", text.len().to_string());
                    *response.body_mut() = SdkBody::from(text);
                    Ok(response)
                })
            }
            Some(Fault::Delay(delay)) => {
                let inner = self.inner.clone();
                HttpConnectorFuture::new(async move {
                    tokio::time::sleep(delay).await;
                    inner.call(request).await
                })
            }
        }
    }
}
