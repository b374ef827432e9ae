//! Which AWS calls a service makes, and whether an IAM policy allows them.
//!
//! [`RecordingProxy`] sits between the services and the AWS emulator and
//! records, for every request, the IAM action it needs and the ARNs it acts
//! on ([`call_needs`]); [`policy_allows`] then checks those against the
//! policies the provisioner attaches to the services' roles. The emulator
//! does not enforce IAM, so without this a missing permission only shows up
//! in a real account.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The account in resource ARNs when the access key's role is not known
/// (moto's default account).
const DEFAULT_ACCOUNT: &str = "123456789012";

/// One AWS API call that went through a [`RecordingProxy`], with what it
/// needs from IAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The access key from the SigV4 credential; `""` if unsigned.
    pub access_key: String,
    /// The credential scope's service (`dynamodb`, `s3`, `ssm`, `sts`, ...);
    /// for an unsigned request, a guess from the request's shape.
    pub service: String,
    /// The credential scope's region; `""` if unsigned.
    pub region: String,
    /// The IAM action the call needs, e.g. `dynamodb:PutItem`; `None` when it
    /// needs none (`sts:GetCallerIdentity`).
    pub action: Option<String>,
    /// The ARNs the call acts on (`*` when it acts on none in particular).
    pub resources: Vec<String>,
    /// The upstream's HTTP status (502 if the upstream could not be reached).
    pub status: u16,
    /// A short description for messages, e.g. `dynamodb TransactWriteItems`
    /// or `s3 PUT /bucket/raw/x.parquet`.
    pub summary: String,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Access key → ARN of the role whose AssumeRole issued it.
    roles: BTreeMap<String, String>,
}

struct Shared {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the calls from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An HTTP/1.1 reverse proxy on loopback in front of the AWS emulator that
/// forwards every request unchanged (so SigV4 signatures still verify) and
/// records a [`Call`] for each. Stops when dropped.
pub struct RecordingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl RecordingProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (e.g.
    /// `http://127.0.0.1:5000`), on the current tokio runtime.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let upstream = upstream.trim_end_matches('/').to_string();
        anyhow::ensure!(
            upstream.starts_with("http://"),
            "the upstream {upstream} must be a plain http:// URL"
        );
        upstream
            .parse::<Uri>()
            .with_context(|| format!("upstream {upstream}"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
            state: Mutex::new(State::default()),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// The proxy's URL, `http://127.0.0.1:PORT`, to use as the AWS endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The calls recorded so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.state().calls.clone()
    }

    /// Forgets the calls recorded so far (not the assumed roles).
    pub fn clear(&self) {
        self.shared.state().calls.clear();
    }

    /// Role ARN for every access key issued by an sts AssumeRole that went
    /// through the proxy.
    pub fn assumed_roles(&self) -> BTreeMap<String, String> {
        self.shared.state().roles.clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts the
        // connections too.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors and the like: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(forward(&shared, request).await) }
            });
            // A client hanging up mid-request is not the proxy's concern.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Hop-by-hop headers: they describe one connection, not the message, and
/// the bodies are re-framed here (buffered), so they are not passed on.
/// SigV4 never signs them.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn plain_response(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = status;
    response
}

async fn forward(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (mut parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return plain_response(StatusCode::BAD_REQUEST, format!("reading the request: {e}"))
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let method = parts.method.to_string();
    let headers = parts.headers.clone();

    // Host stays as the client signed it; only the connection target changes.
    let (status, response_body, response) =
        match format!("{}{path_and_query}", shared.upstream).parse::<Uri>() {
            Err(e) => (
                StatusCode::BAD_GATEWAY,
                Bytes::new(),
                plain_response(StatusCode::BAD_GATEWAY, format!("bad path: {e}")),
            ),
            Ok(uri) => {
                parts.uri = uri;
                parts.extensions = http::Extensions::new();
                strip_hop_by_hop(&mut parts.headers);
                let upstream_request = Request::from_parts(parts, Full::new(body.clone()));
                match upstream_call(shared, upstream_request).await {
                    Ok((response, response_body)) => (response.status(), response_body, response),
                    Err(e) => (
                        StatusCode::BAD_GATEWAY,
                        Bytes::new(),
                        plain_response(StatusCode::BAD_GATEWAY, format!("upstream: {e:#}")),
                    ),
                }
            }
        };

    record(
        shared,
        &method,
        &path_and_query,
        &headers,
        &body,
        status,
        &response_body,
    );
    response
}

async fn upstream_call(
    shared: &Shared,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(Response<Full<Bytes>>, Bytes)> {
    let response = shared.client.request(request).await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    strip_hop_by_hop(&mut parts.headers);
    Ok((Response::from_parts(parts, Full::new(body.clone())), body))
}

fn record(
    shared: &Shared,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    status: StatusCode,
    response_body: &[u8],
) {
    let (access_key, region, scope_service) =
        credential_scope(headers, path_and_query).unwrap_or_default();
    let service = scope_service.unwrap_or_else(|| guess_service(path_and_query, headers, body));
    let summary = summary(&service, method, path_and_query, headers, body);

    let mut state = shared.state();
    let account = state
        .roles
        .get(&access_key)
        .and_then(|role| role.split(':').nth(4))
        .filter(|account| !account.is_empty())
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_string();
    for (action, resources) in call_needs(method, path_and_query, headers, body, &region, &account)
    {
        state.calls.push(Call {
            access_key: access_key.clone(),
            service: service.clone(),
            region: region.clone(),
            action,
            resources,
            status: status.as_u16(),
            summary: summary.clone(),
        });
    }

    if service == "sts" && status.is_success() {
        let params = form_params(path_and_query, headers, body);
        if param(&params, "Action") == Some("AssumeRole") {
            if let (Some(role), Some(key)) = (
                param(&params, "RoleArn"),
                xml_element(response_body, "AccessKeyId"),
            ) {
                state.roles.insert(key, role.to_string());
            }
        }
    }
}

/// `(access key, region, service)` from the SigV4 `Authorization` header or a
/// presigned URL's `X-Amz-Credential`.
fn credential_scope(
    headers: &HeaderMap,
    path_and_query: &str,
) -> Option<(String, String, Option<String>)> {
    let credential = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|auth| {
            let start = auth.find("Credential=")? + "Credential=".len();
            let rest = &auth[start..];
            let end = rest
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(rest.len());
            Some(rest[..end].to_string())
        })
        .or_else(|| {
            let params = query_params(path_and_query);
            param(&params, "X-Amz-Credential").map(str::to_string)
        })?;
    // AKID/date/region/service/aws4_request (SigV4a leaves out the region).
    let parts: Vec<&str> = credential.split('/').collect();
    let access_key = parts.first()?.to_string();
    let service = parts
        .len()
        .checked_sub(2)
        .filter(|&i| i > 0)
        .map(|i| parts[i].to_string());
    let region = if parts.len() >= 5 { parts[2] } else { "" }.to_string();
    Some((access_key, region, service))
}

/// The service of an unsigned request, from its shape.
fn guess_service(path_and_query: &str, headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(target) = header(headers, "x-amz-target") {
        if target.starts_with("DynamoDB") {
            return "dynamodb".into();
        }
        if target.starts_with("AmazonSSM") {
            return "ssm".into();
        }
        return String::new();
    }
    let params = form_params(path_and_query, headers, body);
    match param(&params, "Action") {
        Some(
            "AssumeRole" | "AssumeRoleWithWebIdentity" | "GetCallerIdentity" | "GetSessionToken",
        ) => "sts".into(),
        Some(_) => String::new(),
        None => "s3".into(),
    }
}

fn summary(
    service: &str,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> String {
    if let Some(op) = target_op(headers) {
        return format!("{service} {op}");
    }
    if service != "s3" {
        let params = form_params(path_and_query, headers, body);
        if let Some(op) = param(&params, "Action") {
            return format!("{service} {op}");
        }
    }
    let path = path_and_query.split('?').next().unwrap_or("/");
    format!("{service} {method} {path}")
}

/// What a request needs from IAM: `(action, resources)` pairs, usually one;
/// a `TransactWriteItems` or `TransactGetItems` gives one per distinct item
/// action (`dynamodb:UpdateItem`, `dynamodb:PutItem`, ...), each with the
/// tables of those items, because IAM checks the items' actions.
///
/// The service is the SigV4 credential scope's (from `headers`, or a
/// presigned URL's query), else guessed from the request's shape. `region`
/// and `account` go into the ARNs built from names (tables, parameters).
/// S3 requests are taken as path-style (`/{bucket}/{key}`). Actions this
/// does not know come out as `{service}:?{METHOD} {what}`, which no policy
/// short of a `*` action allows.
pub fn call_needs(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    region: &str,
    account: &str,
) -> Vec<(Option<String>, Vec<String>)> {
    let service = credential_scope(headers, path_and_query)
        .and_then(|(_, _, service)| service)
        .unwrap_or_else(|| guess_service(path_and_query, headers, body));
    let json = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    match (service.as_str(), target_op(headers)) {
        ("s3", _) => vec![s3_needs(method, path_and_query, Some(body))],
        ("dynamodb", Some(op)) => dynamodb_needs(&op, &json(), region, account),
        ("ssm", Some(op)) => vec![ssm_needs(&op, &json(), region, account)],
        (_, Some(op)) => vec![(Some(format!("{service}:{op}")), vec!["*".into()])],
        (_, None) => {
            let params = form_params(path_and_query, headers, body);
            match (service.as_str(), param(&params, "Action")) {
                ("sts", Some("GetCallerIdentity")) => vec![(None, vec!["*".into()])],
                ("sts", Some(op @ "AssumeRole")) => {
                    let role = param(&params, "RoleArn").unwrap_or("*");
                    vec![(Some(format!("sts:{op}")), vec![role.to_string()])]
                }
                (_, Some(op)) => vec![(Some(format!("{service}:{op}")), vec!["*".into()])],
                (_, None) => {
                    let path = path_and_query.split('?').next().unwrap_or("/");
                    vec![(
                        Some(format!("{service}:?{method} {path}")),
                        vec!["*".into()],
                    )]
                }
            }
        }
    }
}

fn dynamodb_needs(
    op: &str,
    body: &Value,
    region: &str,
    account: &str,
) -> Vec<(Option<String>, Vec<String>)> {
    let table = |name: &str| {
        if name.starts_with("arn:") {
            name.to_string()
        } else {
            format!("arn:aws:dynamodb:{region}:{account}:table/{name}")
        }
    };
    match op {
        "TransactWriteItems" | "TransactGetItems" => {
            // IAM authorizes each item as its single-item action.
            let mut needs: Vec<(Option<String>, Vec<String>)> = Vec::new();
            let items = body["TransactItems"].as_array().into_iter().flatten();
            for (kind, inner) in items.filter_map(Value::as_object).flatten() {
                let action = match kind.as_str() {
                    "Put" => "dynamodb:PutItem",
                    "Update" => "dynamodb:UpdateItem",
                    "Delete" => "dynamodb:DeleteItem",
                    "ConditionCheck" => "dynamodb:ConditionCheckItem",
                    "Get" => "dynamodb:GetItem",
                    _ => continue,
                };
                let resource = inner["TableName"].as_str().map(table);
                let index = match needs.iter().position(|(a, _)| a.as_deref() == Some(action)) {
                    Some(index) => index,
                    None => {
                        needs.push((Some(action.to_string()), Vec::new()));
                        needs.len() - 1
                    }
                };
                if let Some(resource) = resource {
                    if !needs[index].1.contains(&resource) {
                        needs[index].1.push(resource);
                    }
                }
            }
            if needs.is_empty() {
                needs.push((Some(format!("dynamodb:{op}")), vec!["*".into()]));
            }
            needs
        }
        _ => {
            let mut resources: Vec<String> = match body["RequestItems"].as_object() {
                // BatchGetItem, BatchWriteItem.
                Some(items) => items.keys().map(|name| table(name)).collect(),
                None => body["TableName"].as_str().map(table).into_iter().collect(),
            };
            if let (Some(index), [resource]) =
                (body["IndexName"].as_str(), resources.as_mut_slice())
            {
                resource.push_str(&format!("/index/{index}"));
            }
            if let Some(arn) = body["ResourceArn"].as_str() {
                resources.push(arn.to_string());
            }
            if resources.is_empty() {
                resources.push("*".into());
            }
            vec![(Some(format!("dynamodb:{op}")), resources)]
        }
    }
}

fn ssm_needs(op: &str, body: &Value, region: &str, account: &str) -> (Option<String>, Vec<String>) {
    let parameter = |name: &str| {
        if name.starts_with("arn:") {
            name.to_string()
        } else if name.starts_with('/') {
            format!("arn:aws:ssm:{region}:{account}:parameter{name}")
        } else {
            format!("arn:aws:ssm:{region}:{account}:parameter/{name}")
        }
    };
    let mut resources: Vec<String> = body["Name"]
        .as_str()
        .into_iter()
        .chain(
            body["Names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        )
        // GetParametersByPath.
        .chain(body["Path"].as_str())
        .map(parameter)
        .collect();
    if resources.is_empty() {
        resources.push("*".into());
    }
    (Some(format!("ssm:{op}")), resources)
}

/// Query parameters that only shape a bucket listing (or are added by the
/// SDK or a presigned URL), not subresources that change the action.
fn is_plain_parameter(name: &str) -> bool {
    matches!(
        name,
        "list-type"
            | "prefix"
            | "delimiter"
            | "max-keys"
            | "continuation-token"
            | "start-after"
            | "encoding-type"
            | "fetch-owner"
            | "marker"
            | "key-marker"
            | "version-id-marker"
            | "upload-id-marker"
            | "max-uploads"
            | "x-id"
    ) || name.to_ascii_lowercase().starts_with("x-amz-")
}

/// What an S3 REST call needs from IAM: the action and the ARNs it acts on.
/// The one table of S3 calls for every permission test: the proxy gives the
/// request as sent; the fault layer, which records no bodies, gives `body`
/// as `None` and `path_and_query` as `/{bucket}[/{key}][?{subresource}]`.
/// Requests are taken as path-style (`/{bucket}/{key}`); a call this does not
/// know comes out as `s3:?{METHOD} ...`, which no policy short of `*` allows.
pub fn s3_needs(
    method: &str,
    path_and_query: &str,
    body: Option<&[u8]>,
) -> (Option<String>, Vec<String>) {
    let (path, _) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let params = query_params(path_and_query);
    let has = |name: &str| params.iter().any(|(n, _)| n == name);
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let bucket = decode(bucket);
    let method = method.to_ascii_uppercase();
    let need = |action: &str, resource: String| (Some(format!("s3:{action}")), vec![resource]);

    if bucket.is_empty() {
        return need("ListAllMyBuckets", "*".into());
    }
    if !key.is_empty() {
        let object = format!("arn:aws:s3:::{bucket}/{}", decode(key));
        let action = match method.as_str() {
            "PUT" | "POST" => "PutObject",
            "GET" if has("uploadId") => "ListMultipartUploadParts",
            "GET" | "HEAD" if has("versionId") => "GetObjectVersion",
            "GET" | "HEAD" => "GetObject",
            "DELETE" if has("uploadId") => "AbortMultipartUpload",
            "DELETE" if has("versionId") => "DeleteObjectVersion",
            "DELETE" => "DeleteObject",
            other => return (Some(format!("s3:?{other} object")), vec![object]),
        };
        return need(action, object);
    }

    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let subresource = params
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| !is_plain_parameter(name));
    match (method.as_str(), subresource) {
        ("HEAD", _) | ("GET", None) => need("ListBucket", bucket_arn),
        ("GET", Some("versions")) => need("ListBucketVersions", bucket_arn),
        ("GET", Some("uploads")) => need("ListBucketMultipartUploads", bucket_arn),
        ("GET", Some("location")) => need("GetBucketLocation", bucket_arn),
        ("PUT", None) => need("CreateBucket", bucket_arn),
        ("DELETE", None) => need("DeleteBucket", bucket_arn),
        // Deleting a bucket's tags is authorized as putting them.
        ("PUT" | "DELETE", Some("tagging")) => need("PutBucketTagging", bucket_arn),
        ("GET", Some("tagging")) => need("GetBucketTagging", bucket_arn),
        ("PUT", Some("publicAccessBlock")) => need("PutBucketPublicAccessBlock", bucket_arn),
        ("GET", Some("publicAccessBlock")) => need("GetBucketPublicAccessBlock", bucket_arn),
        ("PUT", Some("encryption")) => need("PutEncryptionConfiguration", bucket_arn),
        ("GET", Some("encryption")) => need("GetEncryptionConfiguration", bucket_arn),
        ("PUT", Some("versioning")) => need("PutBucketVersioning", bucket_arn),
        ("GET", Some("versioning")) => need("GetBucketVersioning", bucket_arn),
        ("PUT", Some("policy")) => need("PutBucketPolicy", bucket_arn),
        ("GET", Some("policy")) => need("GetBucketPolicy", bucket_arn),
        ("DELETE", Some("policy")) => need("DeleteBucketPolicy", bucket_arn),
        ("PUT", Some("lifecycle")) => need("PutLifecycleConfiguration", bucket_arn),
        ("GET", Some("lifecycle")) => need("GetLifecycleConfiguration", bucket_arn),
        ("POST", Some("delete")) => {
            let Some(body) = body else {
                // Unrecorded keys: taken as the batch delete of versions that
                // empties a versioned bucket (the provisioner's destroy).
                return need("DeleteObjectVersion", format!("{bucket_arn}/*"));
            };
            // DeleteObjects: IAM checks s3:DeleteObject on every key.
            let body = String::from_utf8_lossy(body);
            let mut resources = Vec::new();
            for chunk in body.split("<Key>").skip(1) {
                if let Some((key, _)) = chunk.split_once("</Key>") {
                    resources.push(format!("{bucket_arn}/{}", xml_unescape(key)));
                }
            }
            if resources.is_empty() {
                resources.push(format!("{bucket_arn}/*"));
            }
            (Some("s3:DeleteObject".into()), resources)
        }
        (other, sub) => (
            Some(format!("s3:?{other} {}", sub.unwrap_or(""))),
            vec![bucket_arn],
        ),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The operation of a JSON-protocol request: `X-Amz-Target: Prefix.Op`.
fn target_op(headers: &HeaderMap) -> Option<String> {
    let target = header(headers, "x-amz-target")?;
    let (_, op) = target.rsplit_once('.')?;
    Some(op.to_string()).filter(|op| !op.is_empty())
}

/// Decodes `%XX` escapes (and `+` as a space when `form`).
fn decode_with(text: &str, form: bool) -> String {
    let text = if form {
        text.replace('+', " ")
    } else {
        text.to_string()
    };
    percent_decode_str(&text).decode_utf8_lossy().into_owned()
}

fn decode(text: &str) -> String {
    decode_with(text, false)
}

fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_with(name, true), decode_with(value, true))
        })
        .collect()
}

fn query_params(path_and_query: &str) -> Vec<(String, String)> {
    path_and_query
        .split_once('?')
        .map(|(_, query)| parse_form(query))
        .unwrap_or_default()
}

/// Query-protocol parameters: the form body (when it is one) and the query.
fn form_params(path_and_query: &str, headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let is_form = header(headers, "content-type")
        .is_some_and(|content_type| content_type.contains("x-www-form-urlencoded"));
    if is_form {
        params = parse_form(&String::from_utf8_lossy(body));
    }
    params.extend(query_params(path_and_query));
    params
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of the first `<name>…</name>` in an XML document; a string
/// search is enough for the small, flat answers of STS.
fn xml_element(xml: &[u8], name: &str) -> Option<String> {
    let xml = String::from_utf8_lossy(xml);
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml_unescape(xml[start..end].trim()))
}

/// Whether an identity policy document (IAM JSON, as GetRolePolicy returns it
/// after decoding; a JSON string holding the document is accepted too)
/// allows `action` on `resource`: an Allow statement whose `Action` (string
/// or list; `*` and `?` wildcards, case-insensitive) matches and whose
/// `Resource` (string or list; `*` and `?` wildcards, case-sensitive)
/// matches, and no Deny statement that matches.
///
/// What this does not evaluate is resolved conservatively, so that it never
/// allows what IAM would deny: an Allow statement with `NotAction`,
/// `NotResource` or `Condition` never matches; in a Deny statement those
/// elements (and a missing `Action`/`Resource`) are taken as matching, so it
/// denies whenever its `Action` and `Resource`, where present, match.
/// Policy variables (`${aws:username}`) are not substituted.
pub fn policy_allows(policy: &Value, action: &str, resource: &str) -> bool {
    if let Some(text) = policy.as_str() {
        return serde_json::from_str::<Value>(text)
            .is_ok_and(|parsed| !parsed.is_string() && policy_allows(&parsed, action, resource));
    }
    let statements: Vec<&Value> = match &policy["Statement"] {
        Value::Array(statements) => statements.iter().collect(),
        Value::Object(_) => vec![&policy["Statement"]],
        _ => Vec::new(),
    };
    let action = action.to_ascii_lowercase();
    let matches = |statement: &Value, element: &str, value: &str, fold_case: bool| {
        let patterns: Vec<&str> = match &statement[element] {
            Value::String(pattern) => vec![pattern.as_str()],
            Value::Array(patterns) => patterns.iter().filter_map(Value::as_str).collect(),
            _ => return None,
        };
        Some(patterns.iter().any(|pattern| {
            if fold_case {
                wildcard_match(&pattern.to_ascii_lowercase(), value)
            } else {
                wildcard_match(pattern, value)
            }
        }))
    };
    let mut allowed = false;
    for statement in statements {
        let action_matches = matches(statement, "Action", &action, true);
        let resource_matches = matches(statement, "Resource", resource, false);
        match statement["Effect"].as_str() {
            Some("Deny") if action_matches.unwrap_or(true) && resource_matches.unwrap_or(true) => {
                return false;
            }
            Some("Allow") => {
                let unevaluated = ["NotAction", "NotResource", "Condition"]
                    .iter()
                    .any(|element| statement.get(element).is_some());
                if !unevaluated && action_matches == Some(true) && resource_matches == Some(true) {
                    allowed = true;
                }
            }
            _ => {}
        }
    }
    allowed
}

/// IAM wildcard match: `*` is any run of characters, `?` any one.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and where in `text` it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn signed(service: &str, target: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20240101/eu-west-1/{service}/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc123"
        );
        headers.insert(
            "authorization",
            HeaderValue::from_str(&auth).expect("test setup"),
        );
        if let Some(target) = target {
            headers.insert(
                "x-amz-target",
                HeaderValue::from_str(target).expect("test setup"),
            );
        }
        headers
    }

    fn needs(
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: &str,
    ) -> Vec<(Option<String>, Vec<String>)> {
        call_needs(
            method,
            path,
            headers,
            body.as_bytes(),
            "eu-west-1",
            "111122223333",
        )
    }

    fn one(action: &str, resources: &[&str]) -> Vec<(Option<String>, Vec<String>)> {
        vec![(
            Some(action.to_string()),
            resources.iter().map(|r| r.to_string()).collect(),
        )]
    }

    #[test]
    fn dynamodb_query_on_an_index() {
        let headers = signed("dynamodb", Some("DynamoDB_20120810.Query"));
        let body =
            r#"{"TableName":"events","IndexName":"by-tenant","KeyConditionExpression":"t = :t"}"#;
        assert_eq!(
            needs("POST", "/", &headers, body),
            one(
                "dynamodb:Query",
                &["arn:aws:dynamodb:eu-west-1:111122223333:table/events/index/by-tenant"]
            )
        );
    }

    #[test]
    fn transact_write_items_needs_the_items_actions() {
        let headers = signed("dynamodb", Some("DynamoDB_20120810.TransactWriteItems"));
        let body = json!({"TransactItems": [
            {"Update": {"TableName": "a", "Key": {}, "UpdateExpression": "SET x = :x"}},
            {"Update": {"TableName": "b", "Key": {}, "UpdateExpression": "SET x = :x"}},
            {"Update": {"TableName": "a", "Key": {}, "UpdateExpression": "SET y = :y"}},
        ]})
        .to_string();
        assert_eq!(
            needs("POST", "/", &headers, &body),
            one(
                "dynamodb:UpdateItem",
                &[
                    "arn:aws:dynamodb:eu-west-1:111122223333:table/a",
                    "arn:aws:dynamodb:eu-west-1:111122223333:table/b"
                ]
            )
        );

        let mixed = json!({"TransactItems": [
            {"Put": {"TableName": "a", "Item": {}}},
            {"ConditionCheck": {"TableName": "b", "Key": {}, "ConditionExpression": "x"}},
        ]})
        .to_string();
        let got = needs("POST", "/", &headers, &mixed);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.as_deref(), Some("dynamodb:PutItem"));
        assert_eq!(got[1].0.as_deref(), Some("dynamodb:ConditionCheckItem"));
        assert_eq!(
            got[1].1,
            vec!["arn:aws:dynamodb:eu-west-1:111122223333:table/b".to_string()]
        );
    }

    #[test]
    fn batch_get_item_acts_on_every_table() {
        let headers = signed("dynamodb", Some("DynamoDB_20120810.BatchGetItem"));
        let body = r#"{"RequestItems":{"t1":{"Keys":[]},"t2":{"Keys":[]}}}"#;
        assert_eq!(
            needs("POST", "/", &headers, body),
            one(
                "dynamodb:BatchGetItem",
                &[
                    "arn:aws:dynamodb:eu-west-1:111122223333:table/t1",
                    "arn:aws:dynamodb:eu-west-1:111122223333:table/t2"
                ]
            )
        );
    }

    #[test]
    fn s3_put_object_decodes_the_key() {
        let headers = signed("s3", None);
        assert_eq!(
            needs(
                "PUT",
                "/lake/raw/tenant%3Da/part%2001.parquet?x-id=PutObject",
                &headers,
                "PAR1..."
            ),
            one(
                "s3:PutObject",
                &["arn:aws:s3:::lake/raw/tenant=a/part 01.parquet"]
            )
        );
    }

    #[test]
    fn s3_bucket_and_service_calls() {
        let headers = signed("s3", None);
        assert_eq!(
            needs("HEAD", "/lake", &headers, ""),
            one("s3:ListBucket", &["arn:aws:s3:::lake"])
        );
        assert_eq!(
            needs("GET", "/lake?list-type=2&prefix=raw%2F", &headers, ""),
            one("s3:ListBucket", &["arn:aws:s3:::lake"])
        );
        assert_eq!(
            needs("GET", "/lake?versions", &headers, ""),
            one("s3:ListBucketVersions", &["arn:aws:s3:::lake"])
        );
        assert_eq!(
            needs("DELETE", "/lake/k?versionId=3", &headers, ""),
            one("s3:DeleteObjectVersion", &["arn:aws:s3:::lake/k"])
        );
        assert_eq!(
            needs("DELETE", "/lake/k?uploadId=u1", &headers, ""),
            one("s3:AbortMultipartUpload", &["arn:aws:s3:::lake/k"])
        );
        assert_eq!(
            needs("GET", "/", &headers, ""),
            one("s3:ListAllMyBuckets", &["*"])
        );
    }

    #[test]
    fn ssm_get_parameters() {
        let headers = signed("ssm", Some("AmazonSSM.GetParameters"));
        let body = r#"{"Names":["/platform/prod/jwt-secret","plain"],"WithDecryption":true}"#;
        assert_eq!(
            needs("POST", "/", &headers, body),
            one(
                "ssm:GetParameters",
                &[
                    "arn:aws:ssm:eu-west-1:111122223333:parameter/platform/prod/jwt-secret",
                    "arn:aws:ssm:eu-west-1:111122223333:parameter/plain"
                ]
            )
        );
    }

    const ROLE: &str = "arn:aws:iam::111122223333:role/ingest-task";

    const ASSUME_ROLE_RESPONSE: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <SessionToken>FQoGZXIvYXdzEBYaDEXAMPLETOKEN</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <Expiration>2024-01-01T13:00:00.000Z</Expiration>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROA123456789EXAMPLE:session</AssumedRoleId>
      <Arn>arn:aws:sts::111122223333:assumed-role/ingest-task/session</Arn>
    </AssumedRoleUser>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;

    fn assume_role_body() -> String {
        format!(
            "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=session",
            ROLE.replace(':', "%3A").replace('/', "%2F")
        )
    }

    #[test]
    fn sts_assume_role() {
        let mut headers = signed("sts", None);
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(
            needs("POST", "/", &headers, &assume_role_body()),
            one("sts:AssumeRole", &[ROLE])
        );
        assert_eq!(
            xml_element(ASSUME_ROLE_RESPONSE.as_bytes(), "AccessKeyId").as_deref(),
            Some("ASIAEXAMPLE")
        );
        assert_eq!(
            needs(
                "POST",
                "/",
                &headers,
                "Action=GetCallerIdentity&Version=2011-06-15"
            ),
            vec![(None, vec!["*".to_string()])]
        );
    }

    #[test]
    fn policy_wildcards_and_deny() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/raw/*"},
                {"Effect": "Allow", "Action": ["dynamodb:Query", "dynamodb:GetItem"],
                 "Resource": ["arn:aws:dynamodb:*:*:table/T", "arn:aws:dynamodb:*:*:table/T/index/*"]},
                {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::secret/*"},
                {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "arn:aws:s3:::secret/*"},
                {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}},
                {"Effect": "Allow", "Action": "ssm:Get?arameters", "Resource": "*"},
            ]
        });
        assert!(policy_allows(
            &policy,
            "s3:PutObject",
            "arn:aws:s3:::b/raw/x"
        ));
        assert!(!policy_allows(
            &policy,
            "s3:PutObject",
            "arn:aws:s3:::b/other/x"
        ));
        assert!(!policy_allows(
            &policy,
            "s3:GetObject",
            "arn:aws:s3:::b/raw/x"
        ));
        // Actions are case-insensitive, resources are not.
        assert!(policy_allows(
            &policy,
            "S3:putobject",
            "arn:aws:s3:::b/raw/x"
        ));
        assert!(!policy_allows(
            &policy,
            "s3:PutObject",
            "arn:aws:s3:::B/raw/x"
        ));
        let index = "arn:aws:dynamodb:us-east-1:123456789012:table/T/index/by-tenant";
        assert!(policy_allows(&policy, "dynamodb:Query", index));
        assert!(!policy_allows(
            &policy,
            "dynamodb:Query",
            "arn:aws:dynamodb:us-east-1:123456789012:table/U"
        ));
        // Deny wins over an Allow.
        assert!(policy_allows(
            &policy,
            "s3:GetObject",
            "arn:aws:s3:::secret/k"
        ));
        assert!(!policy_allows(
            &policy,
            "s3:DeleteObject",
            "arn:aws:s3:::secret/k"
        ));
        // A Condition is not evaluated, so it never allows.
        assert!(!policy_allows(&policy, "ssm:GetParameter", "arn:aws:ssm:x"));
        assert!(policy_allows(&policy, "ssm:GetParameters", "arn:aws:ssm:x"));
        // A single statement object, and a document still encoded as a string.
        let single = json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}});
        assert!(policy_allows(
            &single,
            "iam:PassRole",
            "arn:aws:iam::1:role/r"
        ));
        let encoded = Value::String(single.to_string());
        assert!(policy_allows(
            &encoded,
            "iam:PassRole",
            "arn:aws:iam::1:role/r"
        ));
    }

    /// An upstream that answers every request with the AssumeRole XML and
    /// says which Host header and body it got.
    async fn upstream() -> (String, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("test setup");
        let url = format!("http://{}", listener.local_addr().expect("test setup"));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(|request: Request<Incoming>| async move {
                        let host = request.headers().get("host").cloned();
                        let body = request.into_body().collect().await?.to_bytes();
                        let mut response = Response::new(Full::new(Bytes::from_static(
                            ASSUME_ROLE_RESPONSE.as_bytes(),
                        )));
                        if let Some(host) = host {
                            response.headers_mut().insert("x-seen-host", host);
                        }
                        response.headers_mut().insert(
                            "x-seen-body",
                            HeaderValue::from_bytes(&body).expect("test setup"),
                        );
                        Ok::<_, hyper::Error>(response)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn proxy_forwards_and_records() {
        let (upstream_url, upstream_task) = upstream().await;
        let proxy = RecordingProxy::start(&upstream_url)
            .await
            .expect("test setup");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("test setup");
        let proxy_authority = proxy.url().trim_start_matches("http://").to_string();

        let auth = |key: &str, service: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential={key}/20240101/us-east-1/{service}/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=0123abcd"
            )
        };
        let response = client
            .post(proxy.url())
            .header("authorization", auth("AKIDBASE", "sts"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(assume_role_body())
            .send()
            .await
            .expect("test setup");
        assert_eq!(response.status(), 200);
        // The upstream saw the Host and body the client signed.
        assert_eq!(response.headers()["x-seen-host"], proxy_authority.as_str());
        assert_eq!(
            response.headers()["x-seen-body"],
            assume_role_body().as_str()
        );
        assert_eq!(
            response.text().await.expect("test setup"),
            ASSUME_ROLE_RESPONSE
        );
        assert_eq!(
            proxy.assumed_roles(),
            BTreeMap::from([("ASIAEXAMPLE".to_string(), ROLE.to_string())])
        );

        // The assumed key's calls are in its role's account.
        let body = r#"{"TableName":"events","Item":{}}"#;
        let response = client
            .post(format!("{}/", proxy.url()))
            .header("authorization", auth("ASIAEXAMPLE", "dynamodb"))
            .header("x-amz-target", "DynamoDB_20120810.PutItem")
            .header("content-type", "application/x-amz-json-1.0")
            .body(body)
            .send()
            .await
            .expect("test setup");
        assert_eq!(response.headers()["x-seen-body"], body);

        // A HEAD answer keeps the upstream's Content-Length (HeadObject's size).
        let response = client
            .head(format!("{}/lake/raw/x.parquet", proxy.url()))
            .header("authorization", auth("AKIDBASE", "s3"))
            .send()
            .await
            .expect("test setup");
        assert_eq!(
            response.headers()["content-length"],
            ASSUME_ROLE_RESPONSE.len().to_string().as_str()
        );

        let calls = proxy.calls();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[2].action.as_deref(), Some("s3:GetObject"));
        assert_eq!(calls[2].summary, "s3 HEAD /lake/raw/x.parquet");
        assert_eq!(
            calls[0],
            Call {
                access_key: "AKIDBASE".into(),
                service: "sts".into(),
                region: "us-east-1".into(),
                action: Some("sts:AssumeRole".into()),
                resources: vec![ROLE.into()],
                status: 200,
                summary: "sts AssumeRole".into(),
            }
        );
        assert_eq!(
            calls[1],
            Call {
                access_key: "ASIAEXAMPLE".into(),
                service: "dynamodb".into(),
                region: "us-east-1".into(),
                action: Some("dynamodb:PutItem".into()),
                resources: vec!["arn:aws:dynamodb:us-east-1:111122223333:table/events".into()],
                status: 200,
                summary: "dynamodb PutItem".into(),
            }
        );
        proxy.clear();
        assert!(proxy.calls().is_empty());
        upstream_task.abort();
    }
}
