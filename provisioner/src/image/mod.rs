//! Service images without Docker, the way ko and jib build them: straight
//! from the build output, reproducibly, as OCI images.
//!
//! - [`elf`]: the loader and shared libraries a binary needs (its
//!   `DT_NEEDED` entries, followed transitively) on this host;
//! - [`layer`]: reproducible tar+gzip layers;
//! - [`source`]: where the binaries come from (`cargo build --release`, or
//!   `--binaries DIR`) and the build's version, commit and time;
//! - [`registry`]: pushing to ECR (or any OCI registry) by digest.
//!
//! The binary goes in without its debug sections (see [`build`]).
//!
//! Each image has two layers: a base (the loader and libraries copied from
//! this host's Debian packages, CA certificates, `/etc/passwd` and
//! `/etc/group` with the non-root user 65532, `/etc/nsswitch.conf`, `/tmp`
//! with mode 1777) and the service binary at `/app/<service>`.

pub mod elf;
pub mod layer;
pub mod registry;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use layer::{Entry, Layer};
pub use source::{Binaries, BuildInfo};

/// The services that get an image, with the port each one listens on
/// (the processor's is its health and metrics port).
pub const SERVICES: [(&str, u16); 3] = [("ingest", 8000), ("processor", 8002), ("graphql", 8001)];

/// The non-root user and group every service runs as (distroless's `nonroot`).
pub const NONROOT: u32 = 65532;

/// Where the CA bundle lives, in the image as on Debian.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// OCI media types.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How task definitions and the state name an image: `HOST/REPOSITORY@DIGEST`.
pub fn reference(registry: &str, repository: &str, digest: &str) -> String {
    format!("{registry}/{repository}@{digest}")
}

/// The path of a service's binary inside its image.
pub fn entrypoint(service: &str) -> String {
    format!("/app/{service}")
}

/// What can go wrong building an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A binary or library is not what an image can run.
    #[error("{}: {reason}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A shared library named by `DT_NEEDED` is not on this host.
    #[error("{library}, needed by {}, is not in {searched}: install the Debian package that ships it", binary.display())]
    MissingLibrary {
        /// Who needs it.
        binary: PathBuf,
        /// Its name.
        library: String,
        /// Where it was looked for.
        searched: String,
    },
    /// Writing a layer failed.
    #[error("layer: {0}")]
    Layer(String),
    /// Building the binaries failed.
    #[error("{0}")]
    Build(String),
}

/// CPU architecture of an image (and of the task that runs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// x86_64.
    Amd64,
    /// aarch64 (Graviton).
    Arm64,
}

impl Architecture {
    /// The OCI name (`amd64`, `arm64`).
    pub fn oci(self) -> &'static str {
        match self {
            Architecture::Amd64 => "amd64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// ECS's `cpuArchitecture` (`X86_64`, `ARM64`).
    pub fn ecs(self) -> &'static str {
        match self {
            Architecture::Amd64 => "X86_64",
            Architecture::Arm64 => "ARM64",
        }
    }

    /// Debian's multiarch triplet.
    pub fn gnu_triplet(self) -> &'static str {
        match self {
            Architecture::Amd64 => "x86_64-linux-gnu",
            Architecture::Arm64 => "aarch64-linux-gnu",
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A content-addressed blob.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    /// Its media type.
    pub media_type: &'static str,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    /// The bytes (cheap to clone for each upload).
    pub data: Bytes,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Self {
        Self {
            media_type,
            digest: sha256(&data),
            data: data.into(),
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.data.len()})
    }
}

/// One built image, held in memory until it is written or pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// The service it runs.
    pub service: String,
    /// Its CPU architecture.
    pub architecture: Architecture,
    /// The image config.
    pub config: Blob,
    /// Base layer, then the application layer.
    pub layers: Vec<Blob>,
    /// The manifest: these exact bytes are pushed, and their sha256 is the digest.
    pub manifest: Blob,
    /// Tags to push besides the digest: the version and the commit.
    pub tags: Vec<String>,
}

impl Image {
    /// The image's digest (`sha256:<hex>` of its manifest).
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Bytes a registry stores for it: manifest, config and compressed layers.
    pub fn compressed_size(&self) -> u64 {
        let layers: usize = self.layers.iter().map(|l| l.data.len()).sum();
        (self.manifest.data.len() + self.config.data.len() + layers) as u64
    }

    /// Every blob a registry needs before the manifest: layers, then config.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers.iter().chain(std::iter::once(&self.config))
    }

    /// Writes an OCI image layout at `dir` (`oci-layout`, `index.json`,
    /// `blobs/sha256/...`), the image named by its first tag.
    pub fn write_layout(&self, dir: &Path) -> Result<(), ImageError> {
        let io = io_error;
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        for blob in self.blobs().chain(std::iter::once(&self.manifest)) {
            let path = blobs.join(blob.digest.trim_start_matches("sha256:"));
            std::fs::write(&path, &blob.data).map_err(io(&path))?;
        }
        let mut manifest = self.manifest.descriptor();
        if let Some(tag) = self.tags.first() {
            manifest["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [manifest],
        });
        let files = [
            ("oci-layout", json!({"imageLayoutVersion": "1.0.0"})),
            ("index.json", index),
        ];
        for (name, value) in files {
            let path = dir.join(name);
            std::fs::write(&path, value.to_string()).map_err(io(&path))?;
        }
        Ok(())
    }
}

/// Builds the image of `service` (listening on `port`) from `binary`.
pub fn build(
    service: &str,
    port: u16,
    binary: &Path,
    info: &BuildInfo,
) -> Result<Image, ImageError> {
    // Read once, stripped: the ELF headers the loader needs survive it.
    let data = without_debug_info(binary)?;
    let needs = elf::needs(binary, &data)?;
    let mtime = info.epoch;
    let base = base_layer(&needs)?.build(mtime)?;
    let mut app = Layer::default();
    app.add(&entrypoint(service), Entry::File { mode: 0o755, data });
    let app = app.build(mtime)?;
    let created = chrono::DateTime::from_timestamp(i64::try_from(mtime).unwrap_or(0), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let labels: BTreeMap<&str, &str> = BTreeMap::from([
        ("org.opencontainers.image.created", created.as_str()),
        ("org.opencontainers.image.revision", info.revision.as_str()),
        ("org.opencontainers.image.title", service),
        ("org.opencontainers.image.version", info.version.as_str()),
        ("org.opencontainers.image.vendor", "Event Platform"),
    ]);
    let config = json!({
        "created": created,
        "architecture": needs.architecture.oci(),
        "os": "linux",
        "config": {
            "User": format!("{NONROOT}:{NONROOT}"),
            "Entrypoint": [entrypoint(service)],
            "Env": [
                "PATH=/app:/usr/bin:/bin",
                format!("SSL_CERT_FILE={CA_BUNDLE}"),
            ],
            "ExposedPorts": {format!("{port}/tcp"): {}},
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [base.diff_id, app.diff_id]},
        "history": [
            {"created": created, "created_by": "provision image build: loader, libraries, CA certificates, users"},
            {"created": created, "created_by": format!("provision image build: {}", entrypoint(service))},
        ],
    });
    let config = Blob::new(CONFIG_MEDIA_TYPE, config.to_string().into_bytes());
    let layers = vec![
        Blob::new(LAYER_MEDIA_TYPE, base.compressed),
        Blob::new(LAYER_MEDIA_TYPE, app.compressed),
    ];
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        "annotations": labels,
    });
    Ok(Image {
        service: service.to_string(),
        architecture: needs.architecture,
        manifest: Blob::new(MANIFEST_MEDIA_TYPE, manifest.to_string().into_bytes()),
        config,
        layers,
        tags: info.tags(),
    })
}

/// The base layer: loader and libraries at the paths the loader searches,
/// CA certificates, users, name service config and `/tmp`.
fn base_layer(needs: &elf::Needs) -> Result<Layer, ImageError> {
    let mut layer = Layer::default();
    // A file reached by two paths (the loader is PT_INTERP and libc's
    // DT_NEEDED) is stored once; the other path links to it.
    let mut stored: BTreeMap<PathBuf, String> = BTreeMap::new();
    for path in needs.libraries.iter().chain(&needs.interpreter) {
        let image_path = path.to_string_lossy().into_owned();
        let real = std::fs::canonicalize(path).map_err(io_error(path))?;
        if let Some(first) = stored.get(&real) {
            layer.add(
                &image_path,
                Entry::Symlink {
                    target: first.clone(),
                },
            );
        } else {
            layer.add(
                &image_path,
                Entry::File {
                    mode: 0o755,
                    data: read(&real)?,
                },
            );
            stored.insert(real, image_path);
        }
    }
    let ca = std::fs::read(CA_BUNDLE).map_err(|e| {
        let hint = format!("{e} (install Debian's ca-certificates package)");
        io_error(Path::new(CA_BUNDLE))(std::io::Error::new(e.kind(), hint))
    })?;
    let text = |s: &str| Entry::File {
        mode: 0o644,
        data: s.as_bytes().to_vec(),
    };
    layer.add(
        CA_BUNDLE,
        Entry::File {
            mode: 0o644,
            data: ca,
        },
    );
    layer.add(
        "/etc/passwd",
        text(&format!(
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
        )),
    );
    layer.add(
        "/etc/group",
        text(&format!("root:x:0:\nnonroot:x:{NONROOT}:\n")),
    );
    layer.add(
        "/etc/nsswitch.conf",
        text("passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"),
    );
    layer.add(
        "/tmp",
        Entry::Dir {
            mode: 0o1777,
            owner: 0,
        },
    );
    layer.add(
        "/home/nonroot",
        Entry::Dir {
            mode: 0o700,
            owner: NONROOT,
        },
    );
    Ok(layer)
}

/// The binary without its debug sections (`objcopy --strip-debug`): a
/// release build with line tables is five times the size, and the image
/// keeps the symbols, so backtraces still name functions. Without objcopy
/// (Debian's binutils) the binary goes in whole, with a warning.
fn without_debug_info(binary: &Path) -> Result<Vec<u8>, ImageError> {
    let out = tempfile::NamedTempFile::new().map_err(io_error(Path::new("(temporary file)")))?;
    match std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(out.path())
        .output()
    {
        Ok(done) if done.status.success() => read(out.path()),
        Ok(done) => Err(ImageError::Build(format!(
            "objcopy --strip-debug {}: {}",
            binary.display(),
            String::from_utf8_lossy(&done.stderr).trim()
        ))),
        Err(e) => {
            eprintln!(
                "warning: objcopy not found ({e}): {} goes into its image with its debug info; install binutils for images a fifth the size",
                binary.display()
            );
            read(binary)
        }
    }
}

/// The bytes of `path`; an error names it.
fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(io_error(path))
}

/// Wraps an I/O error on `path`.
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io { path, source }
}

/// Builds the image of each of `services` (all when empty) from `binaries`.
pub fn build_all(
    binaries: &Binaries,
    services: &[&str],
    info: &BuildInfo,
) -> Result<Vec<Image>, ImageError> {
    let wanted: Vec<(&str, u16)> = SERVICES
        .iter()
        .copied()
        .filter(|(name, _)| services.is_empty() || services.contains(name))
        .collect();
    let names: Vec<&str> = wanted.iter().map(|(name, _)| *name).collect();
    let paths = binaries.locate(&names)?;
    // One thread per image: compressing the layers is the slow part.
    std::thread::scope(|scope| {
        let builds: Vec<_> = wanted
            .iter()
            .zip(&paths)
            .map(|((service, port), path)| scope.spawn(move || build(service, *port, path, info)))
            .collect();
        builds
            .into_iter()
            .map(|b| {
                b.join()
                    .unwrap_or_else(|_| Err(ImageError::Build("an image build panicked".into())))
            })
            .collect()
    })
}
