//! Reproducible layers: a sorted tar with fixed times and owners, gzipped
//! without a name or time in its header, so the same files always give the
//! same bytes and digests.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use super::{sha256, ImageError};

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A directory with its mode (e.g. `0o1777` for `/tmp`) and owner.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner uid and gid.
        owner: u32,
    },
    /// A regular file (owned by root).
    File {
        /// Permission bits.
        mode: u32,
        /// Contents.
        data: Vec<u8>,
    },
    /// A symbolic link to `target`.
    Symlink {
        /// Where it points.
        target: String,
    },
}

/// A layer being assembled: paths inside the image (no leading `/`).
#[derive(Debug, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

/// A finished layer.
#[derive(Debug, Clone)]
pub struct Built {
    /// The gzipped tar.
    pub compressed: Vec<u8>,
    /// `sha256:` of the uncompressed tar (the config's `diff_id`).
    pub diff_id: String,
}

impl Layer {
    /// Adds `entry` at `path`, and every parent directory not added yet
    /// (mode 0755, root).
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/').to_string();
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            self.entries.entry(up.to_string()).or_insert(Entry::Dir {
                mode: 0o755,
                owner: 0,
            });
            parent = up;
        }
        self.entries.insert(path, entry);
    }

    /// The tar, sorted by path (parents before children), every time
    /// `mtime`, then gzipped.
    pub fn build(&self, mtime: u64) -> Result<Built, ImageError> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(mtime);
            header.set_uid(0);
            header.set_gid(0);
            let append = match entry {
                Entry::Dir { mode, owner } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(u64::from(*owner));
                    header.set_gid(u64::from(*owner));
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), std::io::empty())
                }
                Entry::File { mode, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, data.as_slice())
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)
                }
            };
            append.map_err(|e| ImageError::Layer(format!("{path}: {e}")))?;
        }
        let tar = tar
            .into_inner()
            .map_err(|e| ImageError::Layer(e.to_string()))?;
        let diff_id = sha256(&tar);
        let mut gz: GzEncoder<Vec<u8>> = GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), Compression::best());
        gz.write_all(&tar)
            .map_err(|e| ImageError::Layer(e.to_string()))?;
        let compressed = gz.finish().map_err(|e| ImageError::Layer(e.to_string()))?;
        Ok(Built {
            compressed,
            diff_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(built: &Built) -> Vec<(String, u32, u64, u64, u64)> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(built.compressed.as_slice())
            .read_to_end(&mut tar)
            .expect("gunzip");
        let mut archive = tar::Archive::new(tar.as_slice());
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").to_string_lossy().into_owned(),
                    h.mode().expect("mode"),
                    h.uid().expect("uid"),
                    h.gid().expect("gid"),
                    h.mtime().expect("mtime"),
                )
            })
            .collect()
    }

    #[test]
    fn same_files_in_any_order_give_the_same_bytes() {
        let mut a = Layer::default();
        a.add(
            "/etc/passwd",
            Entry::File {
                mode: 0o644,
                data: b"x".to_vec(),
            },
        );
        a.add(
            "/tmp",
            Entry::Dir {
                mode: 0o1777,
                owner: 0,
            },
        );
        let mut b = Layer::default();
        b.add(
            "/tmp",
            Entry::Dir {
                mode: 0o1777,
                owner: 0,
            },
        );
        b.add(
            "/etc/passwd",
            Entry::File {
                mode: 0o644,
                data: b"x".to_vec(),
            },
        );
        let (a, b) = (a.build(7).expect("a"), b.build(7).expect("b"));
        assert_eq!(a.compressed, b.compressed);
        assert_eq!(a.diff_id, b.diff_id);
        assert_eq!(
            entries(&a),
            vec![
                ("etc/".to_string(), 0o755, 0, 0, 7),
                ("etc/passwd".to_string(), 0o644, 0, 0, 7),
                ("tmp/".to_string(), 0o1777, 0, 0, 7),
            ]
        );
    }

    #[test]
    fn a_changed_file_changes_the_digest() {
        let mut a = Layer::default();
        a.add(
            "app/x",
            Entry::File {
                mode: 0o755,
                data: b"1".to_vec(),
            },
        );
        let mut b = Layer::default();
        b.add(
            "app/x",
            Entry::File {
                mode: 0o755,
                data: b"2".to_vec(),
            },
        );
        assert_ne!(
            a.build(0).expect("a").diff_id,
            b.build(0).expect("b").diff_id
        );
    }
}
