//! Health, readiness and graceful shutdown, the same in every service.
//! Readiness turns 503 as soon as draining starts, so a load balancer stops
//! sending new work before the listener closes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Checks a service's dependencies (broker, table, bucket); `Err` says which.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>;

/// Shared health state: a service's readiness check and its draining flag.
#[derive(Clone)]
pub struct Health {
    service: &'static str,
    draining: Arc<AtomicBool>,
    /// Why the service cannot do its work although its dependencies answer
    /// (a denied or persistently failing write), set by the service itself.
    blocked: Arc<std::sync::Mutex<Option<String>>>,
    check: ReadyCheck,
}

impl Health {
    /// Health for `service`, ready when `check` passes and not draining.
    pub fn new(service: &'static str, check: ReadyCheck) -> Self {
        metrics::gauge!("service_ready", "service" => service).set(0.0);
        Self {
            service,
            draining: Arc::new(AtomicBool::new(false)),
            blocked: Arc::default(),
            check,
        }
    }

    /// Marks the service as draining: readiness answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once draining started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Reports not ready with `reason` until [`Health::unblock`].
    pub fn block(&self, reason: String) {
        if let Ok(mut blocked) = self.blocked.lock() {
            *blocked = Some(reason);
        }
        metrics::gauge!("service_ready", "service" => self.service).set(0.0);
    }

    /// Clears what [`Health::block`] reported.
    pub fn unblock(&self) {
        if let Ok(mut blocked) = self.blocked.lock() {
            *blocked = None;
        }
    }

    /// Runs the readiness check unless draining or blocked, and reports the
    /// answer as `service_ready{service}` (1 or 0).
    pub async fn ready(&self) -> Result<(), String> {
        let answer = self.answer().await;
        metrics::gauge!("service_ready", "service" => self.service).set(if answer.is_ok() {
            1.0
        } else {
            0.0
        });
        answer
    }

    async fn answer(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("draining".into());
        }
        let blocked = self.blocked.lock().ok().and_then(|b| b.clone());
        if let Some(reason) = blocked {
            return Err(reason);
        }
        (self.check)().await
    }

    /// `/health/live`, `/health/ready` and the reference platform's `/health`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/health", get(ready))
            .with_state(self)
    }
}

async fn live(State(health): State<Health>) -> Response {
    Json(json!({"status": "alive", "service": health.service})).into_response()
}

async fn ready(State(health): State<Health>) -> Response {
    match health.ready().await {
        Ok(()) => Json(json!({"status": "healthy", "service": health.service})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "service": health.service, "reason": reason})),
        )
            .into_response(),
    }
}

/// The argument that makes a service binary check its own health and exit.
pub const HEALTHCHECK_ARG: &str = "healthcheck";

/// True when the binary was started as `BINARY healthcheck`.
pub fn healthcheck_requested() -> bool {
    std::env::args().nth(1).as_deref() == Some(HEALTHCHECK_ARG)
}

/// The container health check: GETs `/health/live` on `127.0.0.1:port` and
/// tells whether it answered 200. It needs no shell or HTTP client in the
/// image (the images hold only the binary and its libraries). Liveness, not
/// readiness: ECS replaces a container whose check fails, and a broker
/// outage should take tasks out of the load balancer (its readiness check),
/// not restart every task.
pub fn check_own_health(port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    let timeout = Duration::from_secs(3);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    // "HTTP/1.1 200"
    match &head[9..12] {
        b"200" => Ok(()),
        status => Err(format!(
            "{addr}/health/live answered {}",
            String::from_utf8_lossy(status)
        )),
    }
}

/// Runs [`check_own_health`] and exits the process with 0 (healthy) or 1.
pub fn exit_with_health(port: u16) -> ! {
    match check_own_health(port) {
        Ok(()) => std::process::exit(0),
        Err(reason) => {
            eprintln!("unhealthy: {reason}");
            std::process::exit(1)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, draining"),
        () = term => tracing::info!("SIGTERM received, draining"),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then marks
/// `health` draining (readiness 503), stops accepting, and lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            health.start_draining();
        })
        .await
}

/// CORS for browser clients of `origins` (`*` for any); `None` when empty.
pub fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER]),
    )
}
