//! linux.cgroupsPath → the path of the container's cgroup below each hierarchy's root.

use std::path::{Component, Path, PathBuf};

use crate::error::{ContainerError, Result};

const FIELD: &str = "linux.cgroupsPath";

/// The parent isobox puts containers under when the bundle names no cgroupsPath.
pub const DEFAULT_PARENT: &str = "isobox";

/// The container's cgroup path relative to a hierarchy root, and the first directory of it
/// that belongs to isobox (so destroy may remove it once empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub relative: PathBuf,
    /// `isobox` for the default path: every isobox container shares it.
    pub owned_parent: Option<PathBuf>,
}

/// Resolve `cgroups_path` (None: `/isobox/<id>`). Absolute and relative paths are both taken
/// below each hierarchy's root. systemd's `slice:prefix:name` form is refused: isobox writes
/// cgroupfs itself and does not ask systemd for a scope.
pub(crate) fn resolve(cgroups_path: Option<&Path>, id: &str) -> Result<Resolved> {
    let Some(p) = cgroups_path else {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(bad(id, "the container id cannot name a cgroup directory"));
        }
        return Ok(Resolved {
            relative: Path::new(DEFAULT_PARENT).join(id),
            owned_parent: Some(PathBuf::from(DEFAULT_PARENT)),
        });
    };
    let text = p.to_string_lossy();
    if !p.is_absolute() && text.split(':').count() == 3 {
        return Err(bad(
            &text,
            "systemd \"slice:prefix:name\" paths need the systemd cgroup driver, which isobox \
             does not have; give a cgroupfs path such as \"/isobox/<id>\"",
        ));
    }
    let mut relative = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => relative.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(bad(&text, "\"..\" would leave the cgroup root")),
            Component::Prefix(_) => return Err(bad(&text, "not a Linux path")),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(bad(
            &text,
            "names the root cgroup; a container needs its own cgroup",
        ));
    }
    Ok(Resolved {
        relative,
        owned_parent: None,
    })
}

fn bad(path: &str, reason: &str) -> ContainerError {
    ContainerError::Resource {
        field: FIELD.into(),
        reason: format!("{path:?}: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: Option<&str>, id: &str) -> Result<PathBuf> {
        resolve(p.map(Path::new), id).map(|r| r.relative)
    }

    #[test]
    fn default_is_under_isobox() {
        let r = resolve(None, "web1").unwrap();
        assert_eq!(r.relative, Path::new("isobox/web1"));
        assert_eq!(r.owned_parent.as_deref(), Some(Path::new("isobox")));
    }

    #[test]
    fn absolute_and_relative_are_under_the_root() {
        assert_eq!(rel(Some("/a/b/c"), "x").unwrap(), Path::new("a/b/c"));
        assert_eq!(rel(Some("a/b"), "x").unwrap(), Path::new("a/b"));
        assert_eq!(rel(Some("/a/./b/"), "x").unwrap(), Path::new("a/b"));
        assert!(resolve(Some(Path::new("/a")), "x")
            .unwrap()
            .owned_parent
            .is_none());
    }

    #[test]
    fn refused_paths_name_the_field() {
        for (p, needle) in [
            ("system.slice:isobox:x", "systemd"),
            ("/a/../../etc", ".."),
            ("/", "root cgroup"),
        ] {
            let e = rel(Some(p), "x").unwrap_err().to_string();
            assert!(e.starts_with("linux.cgroupsPath: "), "{e}");
            assert!(e.contains(needle), "{e}");
        }
        assert!(rel(None, "../x").is_err());
        assert!(rel(None, "").is_err());
    }
}
