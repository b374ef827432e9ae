//! The Event Platform's benchmark tools (see `BENCHMARKS.md`): `loadgen`
//! (ingest's `POST /events`), `procbench` (processor throughput),
//! `querybench` (GraphQL latency and freshness) and `mock-broker` (a
//! Kafka-protocol broker in a process of its own), each in `src/bin/`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

/// Resolves the `http://` URL `url` and refuses anything that is not a
/// loopback address: the benchmark tools only target this machine. Gives
/// the address and the URL's `host:port`.
pub fn loopback_target(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url} must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback {
        bail!("{authority} is not a loopback address: the benchmarks only target this machine");
    }
    Ok((addr, authority.to_string()))
}
