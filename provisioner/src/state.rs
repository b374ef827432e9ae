//! The state file `<state-dir>/<stack>.json`: what this tool created, by
//! address. Versioned, guarded by an OS lock on `<stack>.lock` (held for
//! the whole run, released by the OS however the run ends), and rewritten atomically
//! (temp file, fsync, rename, fsync of the folder) after every single
//! create, update or delete, so a crash loses at most the one operation in
//! flight — and that one is found again by its tags.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Kind, Props};

/// The schema version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Everything recorded about a stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Schema version.
    pub version: u32,
    /// The stack's name.
    pub stack: String,
    /// Bumped at every write.
    pub serial: u64,
    /// Recorded resources by address.
    pub resources: BTreeMap<String, Recorded>,
}

/// One resource as last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// Its kind.
    pub kind: Kind,
    /// The cloud's id (ARN, name or EC2 id).
    pub id: String,
    /// Properties as applied (references resolved). Never a secret.
    pub props: Props,
    /// Outputs other resources reference.
    pub outputs: Props,
    /// Addresses it depended on, so destroy can order it without the blueprint.
    pub deps: BTreeSet<String>,
}

impl State {
    /// An empty state for `stack`.
    pub fn new(stack: &str) -> Self {
        Self {
            version: STATE_VERSION,
            stack: stack.to_string(),
            serial: 0,
            resources: BTreeMap::new(),
        }
    }
}

/// Why the state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a state file this build understands.
    #[error("state file {path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Another run holds the lock.
    #[error("state of stack `{stack}` is locked by another provision run ({holder}; {path})")]
    Locked {
        /// The stack.
        stack: String,
        /// The lock file.
        path: String,
        /// What the lock file says of the run holding it (pid, time).
        holder: String,
    },
}

/// The state of one stack in a state folder, held under its lock while alive.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// The open lock file while this holds its OS lock (dropping it unlocks).
    lock: Option<File>,
    /// The state as last written.
    pub state: State,
    /// Whether the file existed when loaded (a stack never applied has none).
    pub existed: bool,
}

impl StateFile {
    /// The state file's path for `stack` in `dir`.
    pub fn path(dir: &Path, stack: &str) -> PathBuf {
        dir.join(format!("{stack}.json"))
    }

    /// Takes the lock and loads the state (empty when there is none yet).
    /// The lock file is never deleted: a run waiting on a deleted file's
    /// lock and one locking its successor could both proceed.
    pub fn lock(dir: &Path, stack: &str) -> Result<Self, StateError> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join(format!("{stack}.lock"));
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    stack: stack.to_string(),
                    holder: fs::read_to_string(&path).unwrap_or_default(),
                    path: path.display().to_string(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io(&path, e)),
        }
        // Who holds it, for the message another run prints.
        lock.set_len(0).map_err(|e| io(&path, e))?;
        lock.write_all(holder_text().as_bytes())
            .map_err(|e| io(&path, e))?;
        let mut file = Self::read(dir, stack)?;
        file.lock = Some(lock);
        Ok(file)
    }

    /// Loads the state without locking (for `state list`, `output`).
    pub fn read(dir: &Path, stack: &str) -> Result<Self, StateError> {
        let path = Self::path(dir, stack);
        let existed = path.exists();
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let state: State =
                    serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                if state.version != STATE_VERSION {
                    return Err(StateError::Corrupt {
                        path: path.display().to_string(),
                        message: format!(
                            "schema version {} (this build reads version {STATE_VERSION})",
                            state.version
                        ),
                    });
                }
                if state.stack != stack {
                    return Err(StateError::Corrupt {
                        path: path.display().to_string(),
                        message: format!("belongs to stack `{}`, not `{stack}`", state.stack),
                    });
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::new(stack),
            Err(e) => return Err(io(&path, e)),
        };
        Ok(Self {
            path,
            lock: None,
            state,
            existed,
        })
    }

    /// Records `address` (or forgets it with `None`) and writes the file.
    pub fn record(&mut self, address: &str, recorded: Option<Recorded>) -> Result<(), StateError> {
        match recorded {
            Some(r) => self.state.resources.insert(address.to_string(), r),
            None => self.state.resources.remove(address),
        };
        self.write()
    }

    /// Writes the state atomically: temp file, fsync, rename, fsync the folder.
    pub fn write(&mut self) -> Result<(), StateError> {
        self.state.serial += 1;
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| StateError::Corrupt {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        file.write_all(&bytes).map_err(|e| io(&tmp, e))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

fn io(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a lock file says of its holder: this process, and since when.
fn holder_text() -> String {
    format!(
        "pid {} since {}",
        std::process::id(),
        chrono::Utc::now().to_rfc3339()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_released_on_drop() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let mut first = StateFile::lock(dir.path(), "s1")?;
        first.record(
            "vpc.main",
            Some(Recorded {
                kind: Kind::Vpc,
                id: "vpc-1".into(),
                props: Props::new(),
                outputs: Props::new(),
                deps: BTreeSet::new(),
            }),
        )?;
        let second = StateFile::lock(dir.path(), "s1");
        assert!(
            matches!(second, Err(StateError::Locked { .. })),
            "{second:?}"
        );
        drop(first);
        let again = StateFile::lock(dir.path(), "s1")?;
        assert_eq!(again.state.resources["vpc.main"].id, "vpc-1");
        assert_eq!(again.state.serial, 1);
        assert!(!dir.path().join("s1.json.tmp").exists());
        Ok(())
    }

    #[test]
    fn a_lock_file_naming_a_live_process_that_holds_no_lock_does_not_strand_the_stack(
    ) -> Result<(), StateError> {
        // A killed run's lock file stays; its pid may name another process by
        // now (here pid 1). Only a run that holds the lock may refuse others.
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        fs::write(dir.path().join("s4.lock"), "pid 1 since then").map_err(|e| io(dir.path(), e))?;
        let file = StateFile::lock(dir.path(), "s4")?;
        assert!(file.state.resources.is_empty());
        Ok(())
    }

    #[test]
    fn of_many_runs_starting_at_once_exactly_one_holds_the_lock() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        // A stale lock file, as a killed run leaves it.
        fs::write(dir.path().join("s5.lock"), "pid 999999999 since then")
            .map_err(|e| io(dir.path(), e))?;
        let barrier = std::sync::Barrier::new(8);
        let held: Vec<bool> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        let lock = StateFile::lock(dir.path(), "s5");
                        // Hold it until every run has tried.
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        lock.is_ok()
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().unwrap_or(false))
                .collect()
        });
        assert_eq!(held.iter().filter(|h| **h).count(), 1, "{held:?}");
        Ok(())
    }

    #[test]
    fn a_lock_of_a_dead_process_is_taken_over() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        fs::write(dir.path().join("s2.lock"), "pid 999999999 since then")
            .map_err(|e| io(dir.path(), e))?;
        let file = StateFile::lock(dir.path(), "s2")?;
        assert!(file.state.resources.is_empty());
        Ok(())
    }

    #[test]
    fn a_state_of_another_version_is_refused() -> Result<(), StateError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        fs::write(
            dir.path().join("s3.json"),
            r#"{"version": 99, "stack": "s3", "serial": 1, "resources": {}}"#,
        )
        .map_err(|e| io(dir.path(), e))?;
        let err = StateFile::read(dir.path(), "s3").map(|_| ());
        assert!(matches!(err, Err(StateError::Corrupt { .. })), "{err:?}");
        Ok(())
    }
}
