//! Reading Debian packages without dpkg: an ar archive holding `control.tar.*` and
//! `data.tar.*`, each a (usually compressed) tar stream.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::ar::{self, ArMember};
use super::decompress::{self, Compression};
use crate::error::{MicrovmError, Result};

fn unpack_err(path: &Path, reason: impl Into<String>) -> MicrovmError {
    MicrovmError::Unpack {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

/// Finds the member whose name starts with `prefix` ("control.tar", "data.tar").
fn member(deb: &Path, prefix: &str) -> Result<ArMember> {
    let members = ar::list(deb)?;
    if !members.iter().any(|m| m.name == "debian-binary") {
        return Err(unpack_err(
            deb,
            "not a Debian package: no debian-binary member",
        ));
    }
    members
        .into_iter()
        .find(|m| m.name.starts_with(prefix))
        .ok_or_else(|| unpack_err(deb, format!("not a Debian package: no {prefix}.* member")))
}

/// Opens the tar stream of the member `prefix.*`, decompressing as its name says.
fn tar_stream(deb: &Path, prefix: &str) -> Result<(String, Box<dyn Read>)> {
    let m = member(deb, prefix)?;
    let c = Compression::from_member_name(&m.name).map_err(|r| unpack_err(deb, r))?;
    let raw = ar::open_member(deb, &m)?;
    let stream: Box<dyn Read> = match c {
        None => Box::new(raw),
        Some(c) => {
            decompress::decoder(c, raw).map_err(|e| unpack_err(deb, format!("{}: {e}", m.name)))?
        }
    };
    Ok((m.name, stream))
}

/// A tar entry's path without a leading "./" or "/".
fn clean(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    PathBuf::from(s.trim_start_matches("./").trim_start_matches('/'))
}

/// The text of the package's `control` file.
pub fn read_control(deb: &Path) -> Result<String> {
    let (name, stream) = tar_stream(deb, "control.tar")?;
    let mut archive = tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|e| unpack_err(deb, format!("{name}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_err(deb, format!("{name}: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| unpack_err(deb, format!("{name}: {e}")))?;
        if clean(&path) == Path::new("control") {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| unpack_err(deb, format!("{name}/control: {e}")))?;
            return Ok(text);
        }
    }
    Err(unpack_err(deb, format!("{name} has no control file")))
}

/// One field of a control file (continuation lines joined with spaces).
pub fn control_field(control: &str, field: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in control.lines() {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case(field) {
                value = Some(v.trim().to_string());
            }
        }
    }
    value
}

/// A dependency: a package name and an optional exact version (`name (= version)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub exact_version: Option<String>,
}

/// Parses a Depends value, taking the first alternative of each `a | b` group.
pub fn parse_depends(value: &str) -> Vec<Dependency> {
    value
        .split(',')
        .filter_map(|group| {
            let first = group.split('|').next()?.trim();
            let name: String = first
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '(' && *c != ':' && *c != '[')
                .collect();
            if name.is_empty() {
                return None;
            }
            let exact_version = first
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .and_then(|(cond, _)| cond.trim().strip_prefix('='))
                .map(|v| v.trim().to_string());
            Some(Dependency {
                name,
                exact_version,
            })
        })
        .collect()
}

/// Calls `each` with every regular file of the package's data (its cleaned path and its
/// reader) until it returns true.
fn walk_files(
    deb: &Path,
    mut each: impl FnMut(&Path, &mut dyn Read) -> Result<bool>,
) -> Result<()> {
    let (name, stream) = tar_stream(deb, "data.tar")?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, stream));
    let entries = archive
        .entries()
        .map_err(|e| unpack_err(deb, format!("{name}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_err(deb, format!("{name}: {e}")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = clean(
            &entry
                .path()
                .map_err(|e| unpack_err(deb, format!("{name}: {e}")))?,
        );
        if each(&path, &mut entry)? {
            break;
        }
    }
    Ok(())
}

/// Streams the first regular file of `data.tar.*` whose path (without "./") satisfies `want`
/// into `out`. Returns that path and its size, or None when no entry matches.
pub fn extract_first<W: Write>(
    deb: &Path,
    want: impl Fn(&Path) -> bool,
    out: &mut W,
) -> Result<Option<(PathBuf, u64)>> {
    let mut found = None;
    walk_files(deb, |path, data| {
        if !want(path) {
            return Ok(false);
        }
        let n = std::io::copy(data, out)
            .map_err(|e| unpack_err(deb, format!("{}: {e}", path.display())))?;
        found = Some((path.to_path_buf(), n));
        Ok(true)
    })?;
    Ok(found)
}

/// Writes every regular file of the package's data for which `dest` names a path; returns
/// how many were written.
pub fn extract_each(deb: &Path, dest: impl Fn(&Path) -> Option<PathBuf>) -> Result<usize> {
    let mut written = 0;
    walk_files(deb, |path, data| {
        let Some(out) = dest(path) else {
            return Ok(false);
        };
        std::fs::File::create(&out)
            .and_then(|mut f| std::io::copy(data, &mut f))
            .map_err(|e| {
                unpack_err(deb, format!("{} to {}: {e}", path.display(), out.display()))
            })?;
        written += 1;
        Ok(false)
    })?;
    Ok(written)
}

/// True for a package's kernel image path: `boot/vmlinuz-<release>`.
pub fn is_boot_vmlinuz(path: &Path) -> bool {
    path.parent() == Some(Path::new("boot"))
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("vmlinuz-") && n.len() > "vmlinuz-".len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_fields_and_depends() {
        let c = "Package: linux-image-cloud-amd64\nVersion: 6.1.1\nDepends: linux-image-6.1.0-9-cloud-amd64 (= 6.1.1),\n  foo | bar (>= 2), baz:any\nDescription: x\n";
        assert_eq!(
            control_field(c, "package").as_deref(),
            Some("linux-image-cloud-amd64")
        );
        let d = parse_depends(&control_field(c, "Depends").unwrap());
        assert_eq!(
            d,
            vec![
                Dependency {
                    name: "linux-image-6.1.0-9-cloud-amd64".into(),
                    exact_version: Some("6.1.1".into())
                },
                Dependency {
                    name: "foo".into(),
                    exact_version: None
                },
                Dependency {
                    name: "baz".into(),
                    exact_version: None
                },
            ]
        );
        assert_eq!(control_field(c, "Missing"), None);
    }

    #[test]
    fn boot_vmlinuz_paths() {
        assert!(is_boot_vmlinuz(Path::new(
            "boot/vmlinuz-6.1.0-9-cloud-amd64"
        )));
        assert!(!is_boot_vmlinuz(Path::new("boot/vmlinuz-")));
        assert!(!is_boot_vmlinuz(Path::new("boot/System.map-6.1")));
        assert!(!is_boot_vmlinuz(Path::new("usr/boot/vmlinuz-1")));
    }
}
