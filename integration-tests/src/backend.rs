//! Real parts for tests: a Kafka-protocol broker and an AWS API emulator.
//!
//! Which ones, in order of precedence:
//! 1. endpoints in the environment: `EVENT_PLATFORM_TEST_KAFKA` (bootstrap
//!    servers) and `EVENT_PLATFORM_TEST_AWS_ENDPOINT` (an emulator's URL);
//! 2. containers (Redpanda; LocalStack when `LOCALSTACK_AUTH_TOKEN` is set,
//!    else the moto image) when `EVENT_PLATFORM_TEST_BACKEND=containers`, or
//!    when a Docker engine answers and no backend is named;
//! 3. local processes, the default here: librdkafka's mock cluster (a
//!    Kafka-protocol broker listening on loopback, in this process) and
//!    `moto_server` on a free loopback port.
//!
//! A missing part is an error that says how to get it, never a skipped test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::free_port;

/// Which kind of backend to use, from `EVENT_PLATFORM_TEST_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Local processes (mock cluster, moto_server).
    Local,
    /// testcontainers (Redpanda, LocalStack or moto).
    Containers,
}

impl BackendKind {
    /// `EVENT_PLATFORM_TEST_BACKEND` (`local` or `containers`), else
    /// containers when a Docker engine answers, else local.
    pub fn from_env() -> Self {
        match std::env::var("EVENT_PLATFORM_TEST_BACKEND").as_deref() {
            Ok("containers") => Self::Containers,
            Ok("local") => Self::Local,
            _ if docker_answers() => Self::Containers,
            _ => Self::Local,
        }
    }
}

fn docker_answers() -> bool {
    #[cfg(unix)]
    {
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(String::from))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    }
    #[cfg(not(unix))]
    false
}

/// A Kafka-protocol broker for one test.
pub enum Broker {
    /// librdkafka's mock cluster, in this process, on loopback.
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// Redpanda in a container.
    Container {
        /// The running container.
        container: Box<ContainerAsync<GenericImage>>,
        /// Its bootstrap address on loopback.
        bootstrap: String,
    },
    /// A broker someone else runs (`EVENT_PLATFORM_TEST_KAFKA`).
    External(String),
}

impl Broker {
    /// Starts (or finds) a broker as the environment says.
    pub async fn start() -> anyhow::Result<Self> {
        if let Ok(bootstrap) = std::env::var("EVENT_PLATFORM_TEST_KAFKA") {
            return Ok(Self::External(bootstrap));
        }
        match BackendKind::from_env() {
            BackendKind::Local => Ok(Self::Mock(
                MockCluster::new(1).context("starting librdkafka's mock cluster")?,
            )),
            BackendKind::Containers => {
                let port = free_port()?;
                let container = GenericImage::new("redpandadata/redpanda", "v24.2.4")
                    .with_wait_for(WaitFor::message_on_stderr("Successfully started Redpanda!"))
                    .with_mapped_port(port, ContainerPort::Tcp(9092))
                    .with_cmd([
                        "redpanda".to_string(),
                        "start".into(),
                        "--mode=dev-container".into(),
                        "--smp=1".into(),
                        "--kafka-addr=0.0.0.0:9092".into(),
                        format!("--advertise-kafka-addr=127.0.0.1:{port}"),
                    ])
                    .start()
                    .await
                    .context(
                        "starting Redpanda with testcontainers (is a Docker engine running?)",
                    )?;
                Ok(Self::Container {
                    container: Box::new(container),
                    bootstrap: format!("127.0.0.1:{port}"),
                })
            }
        }
    }

    /// The bootstrap address clients connect to.
    pub fn bootstrap_servers(&self) -> String {
        match self {
            Self::Mock(cluster) => cluster.bootstrap_servers(),
            Self::Container { bootstrap, .. } => bootstrap.clone(),
            Self::External(bootstrap) => bootstrap.clone(),
        }
    }

    /// Produces `(key, payload)` records to `topic` in order, as a producer
    /// other than ingest could; returns where each landed (partition, offset).
    pub async fn produce(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> anyhow::Result<Vec<(i32, i64)>> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .create()?;
        let mut landed = Vec::new();
        for (key, payload) in records {
            let delivery = producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
            landed.push((delivery.partition, delivery.offset));
        }
        Ok(landed)
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        if let Self::Mock(cluster) = self {
            return cluster
                .create_topic(topic, partitions, 1)
                .context("creating topic on the mock cluster");
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .create()?;
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await?;
        for result in results {
            if let Err((name, code)) = result {
                bail!("creating topic {name}: {code}");
            }
        }
        Ok(())
    }

    /// Injects a topic-level error the broker then answers for `topic`
    /// (`NoError` lifts it); only the mock cluster can.
    pub fn inject_topic_error(
        &self,
        topic: &str,
        error: rdkafka::types::RDKafkaRespErr,
    ) -> anyhow::Result<()> {
        match self {
            Self::Mock(cluster) => Ok(cluster.topic_error(topic, error)?),
            _ => bail!("only the mock cluster can inject a topic error"),
        }
    }

    /// Takes the broker down: connections are dropped and refused.
    pub async fn stop(&self) -> anyhow::Result<()> {
        match self {
            Self::Mock(cluster) => Ok(cluster.broker_down(-1)?),
            Self::Container { container, .. } => Ok(container.stop().await?),
            Self::External(_) => {
                bail!("an external broker (EVENT_PLATFORM_TEST_KAFKA) cannot be stopped by a test")
            }
        }
    }

    /// Brings the broker back.
    pub async fn resume(&self) -> anyhow::Result<()> {
        match self {
            Self::Mock(cluster) => Ok(cluster.broker_up(-1)?),
            Self::Container { container, .. } => Ok(container.start().await?),
            Self::External(_) => {
                bail!("an external broker (EVENT_PLATFORM_TEST_KAFKA) cannot be started by a test")
            }
        }
    }
}

/// An AWS API emulator for one test.
pub enum AwsEmulator {
    /// `moto_server` as a child process on loopback; killed on drop.
    Process {
        /// The child.
        child: Child,
        /// Its URL.
        endpoint: String,
    },
    /// LocalStack or moto in a container.
    Container {
        /// The running container.
        container: Box<ContainerAsync<GenericImage>>,
        /// Its URL.
        endpoint: String,
    },
    /// An emulator someone else runs (`EVENT_PLATFORM_TEST_AWS_ENDPOINT`).
    External(String),
}

impl AwsEmulator {
    /// Starts (or finds) an emulator as the environment says, and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_env(&[]).await
    }

    /// [`AwsEmulator::start`] with `env` set for a moto this starts (its
    /// `MOTO_*` switches); an emulator someone else runs keeps its own.
    pub async fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        if let Ok(endpoint) = std::env::var("EVENT_PLATFORM_TEST_AWS_ENDPOINT") {
            return Ok(Self::External(endpoint));
        }
        let emulator = match BackendKind::from_env() {
            BackendKind::Local => {
                let port = free_port()?;
                let binary = moto_server_binary()?;
                let child = Command::new(&binary)
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                    .envs(env.iter().copied())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {}", binary.display()))?;
                Self::Process {
                    child,
                    endpoint: format!("http://127.0.0.1:{port}"),
                }
            }
            BackendKind::Containers => {
                let port = free_port()?;
                let (image, container_port) = match std::env::var("LOCALSTACK_AUTH_TOKEN") {
                    Ok(token) => (
                        GenericImage::new("localstack/localstack-pro", "latest")
                            .with_wait_for(WaitFor::message_on_stdout("Ready."))
                            .with_env_var("LOCALSTACK_AUTH_TOKEN", token),
                        4566,
                    ),
                    Err(_) => (
                        env.iter().fold(
                            GenericImage::new("motoserver/moto", "latest")
                                .with_wait_for(WaitFor::message_on_stderr("Running on"))
                                .with_env_var("MOTO_IAM_LOAD_MANAGED_POLICIES", "true"),
                            |image, (key, value)| image.with_env_var(*key, *value),
                        ),
                        5000,
                    ),
                };
                let container = image
                    .with_mapped_port(port, ContainerPort::Tcp(container_port))
                    .start()
                    .await
                    .context("starting the AWS emulator with testcontainers (is a Docker engine running?)")?;
                Self::Container {
                    container: Box::new(container),
                    endpoint: format!("http://127.0.0.1:{port}"),
                }
            }
        };
        emulator
            .wait_until_answering(Duration::from_secs(30))
            .await?;
        Ok(emulator)
    }

    /// The emulator's URL, for `AWS_ENDPOINT_URL` or an SDK's endpoint.
    pub fn endpoint(&self) -> &str {
        match self {
            Self::Process { endpoint, .. } | Self::Container { endpoint, .. } => endpoint,
            Self::External(endpoint) => endpoint,
        }
    }

    async fn wait_until_answering(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if client.get(self.endpoint()).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "AWS emulator at {} did not answer within {timeout:?}",
                    self.endpoint()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for AwsEmulator {
    fn drop(&mut self) {
        if let Self::Process { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `moto_server`: `EVENT_PLATFORM_MOTO_SERVER`, else the workspace's
/// `.venv` (made by `integration-tests/run-all-tests.sh`), else `PATH`.
fn moto_server_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("EVENT_PLATFORM_MOTO_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.exists() {
        return Ok(venv);
    }
    crate::find_command("moto_server").context(
        "moto_server not found: run integration-tests/run-all-tests.sh (it installs moto into .venv), \
         or set EVENT_PLATFORM_MOTO_SERVER or EVENT_PLATFORM_TEST_AWS_ENDPOINT",
    )
}
