//! The blueprint: one TOML file describing one stack. Parsing rejects unknown
//! keys; [`Blueprint::check`] validates and lints without any AWS call.
//! Every problem names the file, the line and the key.
//!
//! [`schema`] is what a file may say, [`check`] what makes it invalid or
//! suspect, [`cidr`] the address arithmetic the network checks need.

mod check;
mod cidr;
mod schema;

use std::path::{Path, PathBuf};

pub use check::{Finding, Severity};
pub use cidr::parse_cidr;
pub use schema::{
    instance_architecture, Broker, Bucket, Images, LoadBalancer, Logs, Network, Service,
    ServiceOverrides, Services, Spec, StackSettings, Subnet, Table, REDPANDA_REPOSITORY_SETUP,
};

use crate::image::registry::parse_endpoint;

/// A parsed blueprint and where it came from.
#[derive(Debug, Clone)]
pub struct Blueprint {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its content, for locating keys in messages.
    source: String,
    /// The stack it describes.
    pub spec: Spec,
}

/// Why a blueprint could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BlueprintError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key or value the schema does not allow.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// toml's message (names the key).
        message: String,
    },
    /// Parsed, but invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Finding>),
}

impl Blueprint {
    /// Reads and parses `path` (schema only; see [`Blueprint::check`]).
    pub fn load(path: &Path) -> Result<Self, BlueprintError> {
        let source = std::fs::read_to_string(path).map_err(|source| BlueprintError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(path, source)
    }

    /// Parses `source` as if read from `path`.
    pub fn parse(path: &Path, source: String) -> Result<Self, BlueprintError> {
        let spec: Spec = toml::from_str(&source).map_err(|e| {
            let line = e
                .span()
                .map(|span| line_of(&source, span.start))
                .unwrap_or(1);
            BlueprintError::Parse {
                path: path.display().to_string(),
                line,
                message: e.message().trim().to_string(),
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            source,
            spec,
        })
    }

    /// Loads and checks: errors fail, warnings are returned.
    pub fn load_checked(path: &Path) -> Result<(Self, Vec<Finding>), BlueprintError> {
        let blueprint = Self::load(path)?;
        let findings = blueprint.check();
        if findings.iter().any(|f| f.severity == Severity::Error) {
            return Err(BlueprintError::Invalid(findings));
        }
        Ok((blueprint, findings))
    }

    /// The stack's name.
    pub fn stack(&self) -> &str {
        &self.spec.stack.name
    }

    /// Whether the stack lives on an emulator (an endpoint in the blueprint
    /// or in `AWS_ENDPOINT_URL`): its addresses are not real, and it has
    /// no Price List API.
    pub fn on_emulator(&self) -> bool {
        self.spec.stack.endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some()
    }

    /// The three services with every default applied.
    pub fn services(&self) -> [Service; 3] {
        let s = &self.spec.services;
        [
            Service::with("ingest", &s.ingest),
            Service::with("processor", &s.processor),
            Service::with("graphql", &s.graphql),
        ]
    }

    /// `HOST[:PORT]` of `images.registry`, when set.
    pub fn image_registry_host(&self) -> Option<String> {
        let url = self.spec.images.registry.as_deref()?;
        parse_endpoint(url).map(|(_, host)| host.to_string())
    }

    /// The bucket's name in AWS account `account`.
    pub fn bucket_name(&self, account: &str) -> String {
        self.spec.bucket.name.clone().unwrap_or_else(|| {
            let stack = &self.spec.stack;
            format!("{}-raw-events-{account}-{}", stack.name, stack.region)
        })
    }

    /// The hot table's name.
    pub fn table_name(&self) -> String {
        self.spec
            .table
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-events-hot", self.spec.stack.name))
    }
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}
