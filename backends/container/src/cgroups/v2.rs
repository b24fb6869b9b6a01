//! What only cgroup v2 needs: delegating controllers down the tree, cgroup.freeze and
//! cgroup.kill.

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::files;
use crate::error::{ContainerError, Result};

/// A controller to enable below the root: `field` is the OCI field that needs it, or None
/// when it is only wanted for accounting (then failing to enable it is not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub controller: String,
    pub field: Option<String>,
}

/// Enable `wanted` in cgroup.subtree_control of `root` and of each directory between it and
/// `leaf`, so `leaf` gets the controllers' files. Only controllers missing from a directory
/// are written; if the kernel refuses, one at a time so the error names the controller.
pub(crate) fn enable_controllers(root: &Path, leaf: &Path, wanted: &[Wanted]) -> Result<()> {
    let Ok(rel) = leaf.strip_prefix(root) else {
        return Err(files::cg_err(leaf, format!("not below {}", root.display())));
    };
    let mut dirs = vec![root.to_path_buf()];
    let mut dir = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        dir.push(c);
        dirs.push(dir.clone());
    }
    for dir in dirs {
        let file = dir.join("cgroup.subtree_control");
        let enabled = files::read_cg(&file)?;
        let missing: Vec<&Wanted> = wanted
            .iter()
            .filter(|w| !enabled.split_whitespace().any(|c| c == w.controller))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let all: Vec<String> = missing
            .iter()
            .map(|w| format!("+{}", w.controller))
            .collect();
        if files::write(&file, &all.join(" ")).is_ok() {
            continue;
        }
        // One at a time, to name the refused controller and to skip optional ones.
        for w in missing {
            let Err(e) = files::write(&file, &format!("+{}", w.controller)) else {
                continue;
            };
            let Some(field) = &w.field else { continue };
            let mut why = files::why(&e);
            if e.raw_os_error() == Some(libc::EBUSY) {
                why += "; the cgroup has processes of its own, and cgroup v2 lets only \
                        cgroups without processes hand controllers down";
            }
            return Err(ContainerError::Resource {
                field: field.clone(),
                reason: format!("{}: +{}: {why}", file.display(), w.controller),
            });
        }
    }
    Ok(())
}

/// The v2 directory among `paths` (it alone has cgroup.controllers).
pub(crate) fn unified_dir(paths: &[PathBuf]) -> Option<&Path> {
    paths
        .iter()
        .map(|p| p.as_path())
        .find(|p| p.join("cgroup.controllers").exists())
}

pub(crate) fn can_freeze(dir: &Path) -> bool {
    dir.join("cgroup.freeze").exists()
}

pub(crate) fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(files::read_cg(&dir.join("cgroup.freeze"))? == "1")
}

/// Freeze and wait (bounded) for cgroup.events to report `frozen 1`.
pub(crate) fn freeze(dir: &Path, timeout: Duration) -> Result<()> {
    files::write_cg(&dir.join("cgroup.freeze"), "1")?;
    let events = dir.join("cgroup.events");
    let deadline = Instant::now() + timeout;
    loop {
        let text = files::read_cg(&events)?;
        if text.lines().any(|l| l.trim() == "frozen 1") {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = thaw(dir);
            return Err(files::cg_err(
                &events,
                format!("not frozen after {timeout:?}"),
            ));
        }
        sleep(Duration::from_millis(1));
    }
}

pub(crate) fn thaw(dir: &Path) -> Result<()> {
    files::write_cg(&dir.join("cgroup.freeze"), "0")
}

/// SIGKILL everything in the cgroup in one step (Linux 5.14+). Ok(false) when the kernel
/// has no cgroup.kill.
pub(crate) fn kill(dir: &Path) -> Result<bool> {
    let file = dir.join("cgroup.kill");
    if !file.exists() {
        return Ok(false);
    }
    files::write_cg(&file, "1")?;
    Ok(true)
}
