//! The load balancer on loopback: the listener rules read back from the
//! cloud (see [`super::routing`] for the decisions), target groups whose
//! targets are the local tasks, health checks by each group's settings, and
//! ALB's own answers: 503 when a group has no target to use, 502 when a
//! target fails before it answers, 504 when it does not answer in time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use super::deployed::{Balancer as Deployed, TargetGroup};
use super::routing::{Action, Health, HealthCheck, RequestParts, RoundRobin, Routes, TargetHealth};
use super::Report;

/// ALB's default idle timeout: a target that sends nothing for this long gets 504.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

struct Target {
    id: String,
    addr: SocketAddr,
    health: TargetHealth,
    checker: tokio::task::JoinHandle<()>,
}

struct Group {
    name: String,
    check: HealthCheck,
    targets: Vec<Target>,
    round_robin: RoundRobin,
}

/// The running load balancer.
pub struct LoadBalancer {
    routes: RwLock<Arc<Routes>>,
    groups: Mutex<BTreeMap<String, Group>>,
    client: Client<HttpConnector, Body>,
    report: Report,
    port: u16,
}

impl LoadBalancer {
    /// A load balancer with the listener and target groups read back.
    pub fn new(deployed: &Deployed, report: Report, port: u16) -> Arc<Self> {
        let balancer = Arc::new(Self {
            routes: RwLock::new(Arc::new(deployed.routes.clone())),
            groups: Mutex::new(BTreeMap::new()),
            client: Client::builder(TokioExecutor::new()).build_http(),
            report,
            port,
        });
        balancer.update(deployed);
        balancer
    }

    /// Takes new rules and target group settings (as re-read from the
    /// cloud); targets keep their health.
    pub fn update(&self, deployed: &Deployed) {
        if let Ok(mut routes) = self.routes.write() {
            if **routes != deployed.routes {
                *routes = Arc::new(deployed.routes.clone());
                self.report.say(&format!(
                    "load balancer: the rules of {} changed; now serving them",
                    deployed.listener
                ));
            }
        }
        if let Ok(mut groups) = self.groups.lock() {
            for (arn, TargetGroup { name, check }) in &deployed.target_groups {
                let group = groups.entry(arn.clone()).or_insert_with(|| Group {
                    name: name.clone(),
                    check: check.clone(),
                    targets: Vec::new(),
                    round_robin: RoundRobin::default(),
                });
                group.check = check.clone();
            }
        }
    }

    /// Adds task `id` at `addr` to target group `arn` and starts checking it.
    pub fn register(self: &Arc<Self>, arn: &str, id: &str, addr: SocketAddr) {
        let Ok(mut groups) = self.groups.lock() else {
            return;
        };
        let Some(group) = groups.get_mut(arn) else {
            self.report.say(&format!(
                "{id}: target group {arn} is not behind the load balancer"
            ));
            return;
        };
        let checker = tokio::spawn(check_target(
            self.clone(),
            arn.to_string(),
            id.to_string(),
            addr,
        ));
        group.targets.push(Target {
            id: id.to_string(),
            addr,
            health: TargetHealth::default(),
            checker,
        });
        self.report.task(
            id,
            &format!("registered with target group {} (initial)", group.name),
        );
    }

    /// Removes task `id` from target group `arn` (ECS deregisters a stopped task).
    pub fn deregister(&self, arn: &str, id: &str) {
        let Ok(mut groups) = self.groups.lock() else {
            return;
        };
        if let Some(group) = groups.get_mut(arn) {
            group.targets.retain(|t| {
                let keep = t.id != id;
                if !keep {
                    t.checker.abort();
                }
                keep
            });
        }
    }

    /// Every target with its group and health.
    #[cfg(test)]
    fn targets(&self) -> Vec<(String, String, Health)> {
        let Ok(groups) = self.groups.lock() else {
            return Vec::new();
        };
        groups
            .values()
            .flat_map(|g| {
                g.targets
                    .iter()
                    .map(|t| (t.id.clone(), g.name.clone(), t.health.state()))
            })
            .collect()
    }

    fn record(&self, arn: &str, id: &str, passed: bool, why: &str) {
        let Ok(mut groups) = self.groups.lock() else {
            return;
        };
        let Some(group) = groups.get_mut(arn) else {
            return;
        };
        let check = group.check.clone();
        let name = group.name.clone();
        if let Some(target) = group.targets.iter_mut().find(|t| t.id == id) {
            let before = target.health.state();
            let after = target.health.record(passed, &check);
            if before != after {
                let why = if passed {
                    String::new()
                } else {
                    format!(": {why}")
                };
                self.report.task(
                    id,
                    &format!("{} in target group {name}{why}", after.as_str()),
                );
            }
        }
    }

    fn pick(&self, arn: &str) -> Option<SocketAddr> {
        let groups = self.groups.lock().ok()?;
        let group = groups.get(arn)?;
        let targets: Vec<(SocketAddr, Health)> = group
            .targets
            .iter()
            .map(|t| (t.addr, t.health.state()))
            .collect();
        group.round_robin.pick(&targets).copied()
    }

    /// Serves on `listener` until `stop`.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        let app = Router::new().fallback(handle).with_state(self);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    }
}

/// Checks one target every interval of its group, as ALB does.
async fn check_target(balancer: Arc<LoadBalancer>, arn: String, id: String, addr: SocketAddr) {
    loop {
        let check = {
            let Ok(groups) = balancer.groups.lock() else {
                return;
            };
            match groups.get(&arn) {
                Some(group) => group.check.clone(),
                None => return,
            }
        };
        let (passed, why) = probe(&balancer.client, addr, &check).await;
        balancer.record(&arn, &id, passed, &why);
        tokio::time::sleep(check.interval).await;
    }
}

/// One health check: `GET path` within the timeout, status by the matcher.
async fn probe(
    client: &Client<HttpConnector, Body>,
    addr: SocketAddr,
    check: &HealthCheck,
) -> (bool, String) {
    let Ok(uri) = format!("http://{addr}{}", check.path).parse::<Uri>() else {
        return (
            false,
            format!("health check path {:?} is not a URL path", check.path),
        );
    };
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static("ELB-HealthChecker/2.0"),
    );
    match tokio::time::timeout(check.timeout, client.request(request)).await {
        Err(_) => (false, "Target.Timeout".into()),
        Ok(Err(e)) => (false, format!("Target.FailedHealthChecks ({e})")),
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            (
                check.matcher.passes(status),
                format!("Target.ResponseCodeMismatch ({status})"),
            )
        }
    }
}

async fn handle(
    State(balancer): State<Arc<LoadBalancer>>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let routes = match balancer.routes.read() {
        Ok(routes) => routes.clone(),
        Err(_) => return alb_error(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let path = request.uri().path().to_string();
    match routes.route(&path) {
        Action::Fixed {
            status,
            content_type,
            body,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::NOT_FOUND);
            let mut response = (status, body.clone().unwrap_or_default()).into_response();
            if let Some(value) = content_type.as_deref().and_then(|c| c.parse().ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
        }
        redirect @ Action::Redirect { status, .. } => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let host = host.split(':').next().unwrap_or(host).to_string();
            let port = balancer.port.to_string();
            let parts = RequestParts {
                protocol: "HTTP",
                host: &host,
                port: &port,
                path: &path,
                query: request.uri().query().unwrap_or(""),
            };
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            match redirect
                .location(&parts)
                .and_then(|l| l.parse::<HeaderValue>().ok())
            {
                Some(location) => (status, [(header::LOCATION, location)]).into_response(),
                None => alb_error(StatusCode::INTERNAL_SERVER_ERROR),
            }
        }
        Action::Forward(arn) => {
            let Some(target) = balancer.pick(arn) else {
                return alb_error(StatusCode::SERVICE_UNAVAILABLE);
            };
            let path_and_query = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let Ok(uri) = format!("http://{target}{path_and_query}").parse::<Uri>() else {
                return alb_error(StatusCode::BAD_REQUEST);
            };
            *request.uri_mut() = uri;
            let headers = request.headers_mut();
            let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(earlier) => format!("{earlier}, {}", client.ip()),
                None => client.ip().to_string(),
            };
            if let Ok(value) = forwarded_for.parse() {
                headers.insert("x-forwarded-for", value);
            }
            headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
            if let Ok(value) = balancer.port.to_string().parse() {
                headers.insert("x-forwarded-port", value);
            }
            match tokio::time::timeout(IDLE_TIMEOUT, balancer.client.request(request)).await {
                Ok(Ok(response)) => response.map(Body::new),
                // Refused, reset or closed before the answer: ALB says 502.
                Ok(Err(_)) => alb_error(StatusCode::BAD_GATEWAY),
                Err(_) => alb_error(StatusCode::GATEWAY_TIMEOUT),
            }
        }
    }
}

/// ALB's own error page.
fn alb_error(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::deployed::TargetGroup;
    use crate::local::routing::{Matcher, PathPattern, Rule};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A target on loopback: answers `/health` 200 and `/who` its name;
    /// any other request is read and the connection closed without an answer.
    async fn target(name: &'static str) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).to_string();
                    let body = if request.starts_with("GET /health ") {
                        "ok"
                    } else if request.starts_with("GET /who ") {
                        name
                    } else {
                        return; // fails mid-request
                    };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Ok(addr)
    }

    fn deployed() -> Deployed {
        let check = HealthCheck {
            path: "/health".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            matcher: Matcher::parse("200").expect("valid matcher"),
        };
        let group = |name: &str| TargetGroup {
            name: name.into(),
            check: check.clone(),
        };
        let pattern = |p: &str| PathPattern::new(p).expect("valid pattern");
        Deployed {
            listener: "HTTP :80".into(),
            routes: Routes::new(
                vec![Rule {
                    priority: 10,
                    path_patterns: vec![pattern("/empty*")],
                    action: Action::Forward("empty".into()),
                }],
                Action::Forward("app".into()),
            ),
            target_groups: BTreeMap::from([
                ("app".to_string(), group("app")),
                ("empty".to_string(), group("empty")),
            ]),
        }
    }

    #[tokio::test]
    async fn round_robin_over_healthy_targets_503_without_one_502_when_one_fails_mid_request(
    ) -> anyhow::Result<()> {
        let balancer = LoadBalancer::new(&deployed(), Report, 0);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        tokio::spawn(balancer.clone().serve(listener, stop.clone()));
        let client = reqwest::Client::new();

        // No target registered: 503 from the balancer itself.
        let response = client.get(format!("{url}/who")).send().await?;
        assert_eq!(response.status(), 503);

        balancer.register("app", "a/1", target("a").await?);
        balancer.register("app", "b/1", target("b").await?);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while balancer
            .targets()
            .iter()
            .any(|(_, _, health)| *health != Health::Healthy)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "targets never healthy"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(
                client
                    .get(format!("{url}/who"))
                    .send()
                    .await?
                    .text()
                    .await?,
            );
        }
        answers.sort();
        assert_eq!(answers, ["a", "a", "b", "b"]);

        // A target that closes the connection before answering: 502.
        let response = client.get(format!("{url}/boom")).send().await?;
        assert_eq!(response.status(), 502);
        // A rule whose group has no target: 503.
        let response = client.get(format!("{url}/empty/x")).send().await?;
        assert_eq!(response.status(), 503);

        // A deregistered task gets no more requests.
        balancer.deregister("app", "a/1");
        for _ in 0..3 {
            let who = client
                .get(format!("{url}/who"))
                .send()
                .await?
                .text()
                .await?;
            assert_eq!(who, "b");
        }
        stop.cancel();
        Ok(())
    }
}
