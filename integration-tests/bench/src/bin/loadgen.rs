//! `loadgen`: drives `POST /events` on loopback, flat out or at a target
//! rate, with N keep-alive connections, single events or batches of B, for a
//! bounded time; prints events/s, requests/s, latency percentiles and errors
//! by status. With `--rate`, latency is measured from each request's
//! scheduled send time, so a stalled server is not hidden (no coordinated
//! omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::loopback_target;
use bytes::Bytes;
use clap::Parser;
use event_common::auth::{self, JwtConfig};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Load generator for the ingest API (loopback targets only).
#[derive(Debug, Parser)]
struct Args {
    /// Base URL of ingest or of `provision dev`'s front door; must be loopback.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token; minted with JWT_SECRET_KEY (or the development secret) when absent.
    #[arg(long, env = "LOADGEN_TOKEN")]
    token: Option<String>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// How long to run, in seconds (at most 600).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Target requests per second over all connections; 0 runs flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Events per request: 1 sends the single-event shape, more a batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Approximate payload size of each event, in bytes.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Distinct user ids to spread events over (Kafka keys).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Print the peak resident memory (VmHWM) of this process id at the end.
    #[arg(long)]
    server_pid: Option<u32>,
}

struct Worker {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    requests: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.duration_secs == 0 || args.duration_secs > 600 {
        bail!("--duration-secs must be between 1 and 600");
    }
    if args.connections == 0 || args.batch == 0 {
        bail!("--connections and --batch must be at least 1");
    }
    let (addr, host) = loopback_target(&args.url)?;
    let token = match &args.token {
        Some(t) => t.clone(),
        None => {
            let secret =
                std::env::var("JWT_SECRET_KEY").unwrap_or_else(|_| auth::DEV_JWT_SECRET.into());
            auth::mint(
                &JwtConfig {
                    secret,
                    ..JwtConfig::for_dev()
                },
                "loadgen",
                Duration::from_secs(3600),
                None,
            )?
        }
    };
    let bodies = make_bodies(&args);
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    // Each connection sends one request every `interval` when a rate is set.
    let interval = (args.rate > 0)
        .then(|| Duration::from_secs_f64(args.connections as f64 / args.rate as f64));

    println!(
        "loadgen: {} for {}s, {} connections, batch {}, {}",
        args.url,
        args.duration_secs,
        args.connections,
        args.batch,
        if args.rate > 0 {
            format!("{} req/s target", args.rate)
        } else {
            "flat out".into()
        }
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let bodies = bodies.clone();
        let (token, host) = (token.clone(), host.clone());
        tasks.push(tokio::spawn(async move {
            run_connection(c, addr, host, token, bodies, deadline, interval).await
        }));
    }
    let mut total = Worker {
        latency_us: new_histogram()?,
        statuses: BTreeMap::new(),
        requests: 0,
    };
    for task in tasks {
        let w = task.await??;
        total.latency_us.add(&w.latency_us)?;
        total.requests += w.requests;
        for (k, v) in w.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = total.statuses.get("202").copied().unwrap_or(0);
    let ms = |q: f64| total.latency_us.value_at_quantile(q) as f64 / 1000.0;
    println!("requests/s: {:.0}", total.requests as f64 / elapsed);
    println!(
        "events/s:   {:.0} (accepted)",
        (accepted * args.batch as u64) as f64 / elapsed
    );
    println!(
        "latency ms: p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        total.latency_us.max() as f64 / 1000.0
    );
    println!("statuses:   {:?}", total.statuses);
    if let Some(pid) = args.server_pid {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading the server's /proc status")?;
        for line in status
            .lines()
            .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        {
            println!("server {line}");
        }
    }
    Ok(())
}

/// A few request bodies to cycle through, spread over `users` user ids.
fn make_bodies(args: &Args) -> Vec<Bytes> {
    let filler = "x".repeat(args.payload_bytes.saturating_sub(30));
    let event = |n: usize| {
        format!(
            r#"{{"event_type":"type_{}","user_id":"user-{}","payload":{{"seq":{n},"data":"{filler}"}}}}"#,
            n % 10,
            n % args.users.max(1)
        )
    };
    (0..64)
        .map(|i| {
            let body = if args.batch == 1 {
                event(i)
            } else {
                let events: Vec<String> =
                    (0..args.batch).map(|j| event(i * args.batch + j)).collect();
                format!(r#"{{"events":[{}]}}"#, events.join(","))
            };
            Bytes::from(body)
        })
        .collect()
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

async fn run_connection(
    id: usize,
    addr: SocketAddr,
    host: String,
    token: String,
    bodies: Vec<Bytes>,
    deadline: Instant,
    interval: Option<Duration>,
) -> anyhow::Result<Worker> {
    let mut worker = Worker {
        latency_us: new_histogram()?,
        statuses: BTreeMap::new(),
        requests: 0,
    };
    let auth = format!("Bearer {token}");
    let mut sender = None;
    // Stagger connections over one interval so a paced run starts smooth.
    let mut scheduled =
        Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(id as f64 / 64.0 % 1.0));
    let mut n = id;
    while Instant::now() < deadline {
        if interval.is_some() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        if sender.is_none() {
            match connect(addr).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    *worker.statuses.entry("connect-error".into()).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let request = Request::post("/events")
            .header("host", &host)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(Full::new(bodies[n % bodies.len()].clone()))?;
        n += 1;
        let start = if interval.is_some() {
            scheduled
        } else {
            Instant::now()
        };
        let outcome = match s.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16().to_string();
                // Read the body so the connection can be reused.
                let _ = response.into_body().collect().await;
                status
            }
            Err(_) => {
                sender = None;
                "io-error".into()
            }
        };
        worker.requests += 1;
        worker
            .latency_us
            .saturating_record(start.elapsed().as_micros() as u64);
        *worker.statuses.entry(outcome).or_default() += 1;
        if let Some(i) = interval {
            scheduled += i;
        }
    }
    Ok(worker)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
