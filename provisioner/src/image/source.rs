//! Where the service binaries come from, and what the build is: the
//! workspace version, the git commit and a fixed time for every file.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;

/// The version, commit and time an image records.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildInfo {
    /// The workspace version.
    pub version: String,
    /// The git commit (`-dirty` when the work tree has changes), or `unknown`.
    pub revision: String,
    /// Every file's mtime and the image's creation time, in seconds:
    /// `SOURCE_DATE_EPOCH`, else the commit's time, else 0.
    pub epoch: u64,
}

impl BuildInfo {
    /// The build of the workspace at `dir` (its git commit), with
    /// `source_date_epoch` (the variable's value) taking precedence.
    pub fn of(dir: &Path, source_date_epoch: Option<&str>) -> Self {
        let git = |args: &[&str]| -> Option<String> {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let revision = match git(&["rev-parse", "HEAD"]) {
            Some(commit) if !commit.is_empty() => {
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{commit}-dirty")
                } else {
                    commit
                }
            }
            _ => "unknown".to_string(),
        };
        let epoch = source_date_epoch
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| git(&["log", "-1", "--format=%ct"])?.parse().ok())
            .unwrap_or(0);
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision,
            epoch,
        }
    }

    /// The tags an image is pushed under: the version and the commit.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = vec![self.version.clone()];
        if self.revision != "unknown" {
            tags.push(self.revision.clone());
        }
        tags
    }
}

/// Where the service binaries come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Binaries {
    /// `cargo build --release` in the workspace at this folder.
    Build(PathBuf),
    /// Binaries someone already built, named after their services.
    Dir(PathBuf),
}

impl Binaries {
    /// The binary of each of `services`, in their order, building them
    /// first when asked.
    pub fn locate(&self, services: &[&str]) -> Result<Vec<PathBuf>, ImageError> {
        let dir = match self {
            Binaries::Dir(dir) => dir.clone(),
            Binaries::Build(workspace) => build(workspace, services)?,
        };
        services
            .iter()
            .map(|service| {
                let path = dir.join(service);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(ImageError::Build(format!(
                        "{}: no `{service}` binary there",
                        dir.display()
                    )))
                }
            })
            .collect()
    }
}

/// Runs `cargo build --release` for `services`; returns the folder of the binaries.
fn build(workspace: &Path, services: &[&str]) -> Result<PathBuf, ImageError> {
    if !cfg!(target_os = "linux") {
        return Err(ImageError::Build(
            "images run Linux binaries and take their libraries from this host: build on \
             Linux, or pass --binaries DIR with binaries built for Linux"
                .into(),
        ));
    }
    let mut build = cargo(workspace);
    build.args(["build", "--release", "--locked"]);
    for service in services {
        build.args(["--bin", service]);
    }
    eprintln!(
        "building the service binaries: cargo build --release ({})",
        services.join(", ")
    );
    let status = build
        .status()
        .map_err(|e| ImageError::Build(format!("cargo: {e}")))?;
    if !status.success() {
        return Err(ImageError::Build(format!(
            "cargo build --release failed in {} ({status}); run it there to see why, or pass --binaries DIR",
            workspace.display()
        )));
    }
    let out = cargo(workspace)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| ImageError::Build(format!("cargo metadata: {e}")))?;
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| ImageError::Build(format!("cargo metadata: {e}")))?;
    let target = metadata["target_directory"]
        .as_str()
        .ok_or_else(|| ImageError::Build("cargo metadata names no target directory".into()))?;
    Ok(Path::new(target).join("release"))
}

/// Cargo (the one running us, when there is one) in `workspace`.
fn cargo(workspace: &Path) -> Command {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(workspace);
    cargo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_wins_and_tags_are_version_and_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let info = BuildInfo::of(dir.path(), Some("1700000000"));
        assert_eq!(info.epoch, 1_700_000_000);
        assert_eq!(info.revision, "unknown");
        assert_eq!(info.tags(), vec![env!("CARGO_PKG_VERSION").to_string()]);
        let info = BuildInfo::of(Path::new(env!("CARGO_MANIFEST_DIR")), None);
        if info.revision != "unknown" {
            assert_eq!(info.tags().len(), 2);
            assert!(info.epoch > 0, "commit time");
        }
    }

    #[test]
    fn a_folder_without_the_binary_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Binaries::Dir(dir.path().to_path_buf())
            .locate(&["ingest"])
            .expect_err("missing");
        assert!(err.to_string().contains("no `ingest` binary"), "{err}");
    }
}
