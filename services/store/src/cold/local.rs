//! The archive in a local directory, for `provision dev`: each object is
//! written to a temporary file, fsynced and renamed into place, so a reader
//! or a crash never sees half an object.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{encode_objects, ColdStore};
use crate::hot::Batch;
use crate::StoreError;

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalColdStore {
    root: PathBuf,
}

impl LocalColdStore {
    /// An archive rooted at `root` (created if missing).
    pub fn new(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| io_err(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::Invalid(format!("{} has no parent", path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let tmp = path.with_extension("parquet.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    file.sync_all().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

#[async_trait]
impl ColdStore for LocalColdStore {
    async fn write(&self, batch: &Batch) -> Result<Vec<String>, StoreError> {
        let files = encode_objects(batch)?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::with_capacity(files.len());
            for (key, bytes) in files {
                write_durably(&root.join(&key), &bytes)?;
                keys.push(key);
            }
            Ok(keys)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("archive task: {e}")))?
    }

    async fn check(&self) -> Result<(), StoreError> {
        std::fs::metadata(&self.root)
            .map(|_| ())
            .map_err(|e| io_err(&self.root, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir, e)),
            };
            for entry in entries {
                let path = entry.map_err(|e| io_err(&dir, e))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "parquet") {
                    let key = path
                        .strip_prefix(&self.root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .replace('\\', "/");
                    if key.starts_with(prefix) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.root.join(key);
        std::fs::read(&path).map_err(|e| io_err(&path, e))
    }
}
