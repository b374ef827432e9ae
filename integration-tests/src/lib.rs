//! Test support for the Event Platform: what the services' tests (in each
//! crate's `tests/`), the provisioner's tests and the benchmarks (`bench/`)
//! share.
//!
//! - [`aws_calls`]: a proxy in front of the AWS emulator that records each
//!   call's IAM action and resources, and a small IAM policy evaluator, to
//!   check the services' roles grant what they use.
//! - [`backend`]: a real Kafka-protocol broker and a real AWS API emulator for
//!   each test: local processes by default, containers when asked, or
//!   endpoints given in the environment.
//! - [`fault`]: a fault-injecting layer for the AWS SDK, which also records
//!   every call.
//! - [`harness`]: starts a service on `127.0.0.1:0` against the backend.
//! - [`kafka`]: reading back what landed on a topic.
//! - [`registry`]: a real OCI registry (Debian's `docker-registry`) on loopback.
//! - [`stores`]: hot and cold stores on the backend, events and batches to
//!   fill them, and the analytics to compare them by.
//! - free ports, unique names and commands on `PATH` (this module).

pub mod aws_calls;
pub mod backend;
pub mod fault;
pub mod harness;
pub mod kafka;
pub mod registry;
pub mod stores;

use uuid::Uuid;

/// A name no other test uses: `prefix-<random>`, for topics, tables and buckets.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// A command on `PATH`, or in the sbin and bin folders (`chroot` is in
/// `/usr/sbin`, which a test's `PATH` may lack).
pub fn find_command(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
