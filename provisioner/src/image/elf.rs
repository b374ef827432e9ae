//! What a dynamically linked binary needs to run: its program interpreter
//! (`PT_INTERP`) and every shared library named by `DT_NEEDED`, followed
//! transitively through the libraries themselves, found where the dynamic
//! loader looks for them on this (Debian) host.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use goblin::elf::{header, Elf};

use super::{read, Architecture, ImageError};

/// A binary's runtime needs, as image paths and the host files to copy there.
#[derive(Debug, Clone, PartialEq)]
pub struct Needs {
    /// The binary's CPU architecture.
    pub architecture: Architecture,
    /// `PT_INTERP` (the dynamic loader), absent for a static binary.
    pub interpreter: Option<PathBuf>,
    /// Every shared library, at the host path where the loader finds it,
    /// which is also its path in the image.
    pub libraries: BTreeSet<PathBuf>,
}

/// Resolves the interpreter and libraries of `binary` (its bytes `data`,
/// read once by the caller) on this host.
pub fn needs(binary: &Path, data: &[u8]) -> Result<Needs, ImageError> {
    let elf = parse(binary, data)?;
    let architecture = machine(binary, &elf)?;
    let interpreter = elf.interpreter.map(PathBuf::from);
    let search = search_dirs(architecture);
    let mut libraries = BTreeSet::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(String, PathBuf)> = elf
        .libraries
        .iter()
        .map(|l| (l.to_string(), binary.to_path_buf()))
        .collect();
    while let Some((name, needed_by)) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let found = search
            .iter()
            .map(|dir| Path::new(dir).join(&name))
            .find(|candidate| candidate.exists())
            .ok_or_else(|| ImageError::MissingLibrary {
                binary: needed_by.clone(),
                library: name.clone(),
                searched: search.join(", "),
            })?;
        let data = read(&found)?;
        let lib = parse(&found, &data)?;
        if machine(&found, &lib)? != architecture {
            return Err(ImageError::Elf {
                path: found,
                reason: format!("not a {} library", architecture.oci()),
            });
        }
        for next in &lib.libraries {
            queue.push_back((next.to_string(), found.clone()));
        }
        libraries.insert(found);
    }
    Ok(Needs {
        architecture,
        interpreter,
        libraries,
    })
}

/// Where glibc's loader looks without `/etc/ld.so.cache` (which the image
/// does not carry): the multiarch directories first, as on Debian.
fn search_dirs(architecture: Architecture) -> Vec<String> {
    let triplet = architecture.gnu_triplet();
    let mut dirs = vec![format!("/lib/{triplet}"), format!("/usr/lib/{triplet}")];
    if architecture == Architecture::Amd64 {
        dirs.extend(["/lib64".to_string(), "/usr/lib64".to_string()]);
    }
    dirs.extend(["/lib".to_string(), "/usr/lib".to_string()]);
    dirs
}

fn parse<'a>(path: &Path, data: &'a [u8]) -> Result<Elf<'a>, ImageError> {
    Elf::parse(data).map_err(|e| ImageError::Elf {
        path: path.to_path_buf(),
        reason: format!(
            "not a Linux ELF binary ({e}); build on Linux, or pass --binaries with Linux builds"
        ),
    })
}

fn machine(path: &Path, elf: &Elf<'_>) -> Result<Architecture, ImageError> {
    match elf.header.e_machine {
        header::EM_X86_64 => Ok(Architecture::Amd64),
        header::EM_AARCH64 => Ok(Architecture::Arm64),
        other => Err(ImageError::Elf {
            path: path.to_path_buf(),
            reason: format!(
                "machine {} is neither x86_64 nor aarch64",
                header::machine_to_str(other)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::process::Command;

    /// The resolved set is exactly what glibc's own `ldd` lists for this
    /// test binary (minus the kernel's vDSO, which is no file).
    #[test]
    fn libraries_match_ldd_for_this_test_binary() {
        let exe = std::env::current_exe().expect("test binary path");
        let data = std::fs::read(&exe).expect("test binary");
        let needs = needs(&exe, &data).expect("resolves");
        let out = Command::new("ldd").arg(&exe).output().expect("ldd runs");
        assert!(out.status.success(), "ldd failed");
        let ldd: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let name = line.split_whitespace().next()?;
                (!name.starts_with("linux-vdso") && !name.starts_with('/'))
                    .then(|| name.to_string())
            })
            .collect();
        let ours: BTreeSet<String> = needs
            .libraries
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
            .filter(|name| {
                // ldd prints the loader by its absolute path, not by name.
                needs
                    .interpreter
                    .as_ref()
                    .and_then(|i| i.file_name())
                    .is_none_or(|i| i.to_string_lossy() != *name)
            })
            .collect();
        assert!(ours.contains("libc.so.6"), "{ours:?}");
        assert_eq!(ours, ldd);
        assert_eq!(
            needs.interpreter.as_deref(),
            Some(Path::new(match needs.architecture {
                Architecture::Amd64 => "/lib64/ld-linux-x86-64.so.2",
                Architecture::Arm64 => "/lib/ld-linux-aarch64.so.1",
            }))
        );
    }

    #[test]
    fn a_text_file_is_refused_with_advice() {
        let err = needs(Path::new("not-elf"), b"#!/bin/sh\n")
            .expect_err("not ELF")
            .to_string();
        assert!(err.contains("not a Linux ELF binary"), "{err}");
        assert!(err.contains("--binaries"), "{err}");
    }
}
