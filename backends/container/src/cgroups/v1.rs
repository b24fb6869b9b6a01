//! What only cgroup v1 needs: cpuset inheritance and the freezer controller.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::files;
use crate::error::Result;

/// A new v1 cpuset cgroup starts with empty cpuset.cpus and cpuset.mems (unless the hierarchy
/// has clone_children), and no process may join it until both are set: copy the parent's.
pub(crate) fn cpuset_copy_down(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for name in ["cpuset.cpus", "cpuset.mems"] {
        let file = dir.join(name);
        if !files::read_cg(&file)?.is_empty() {
            continue;
        }
        let value = files::read_cg(&parent.join(name))?;
        if value.is_empty() {
            return Err(files::cg_err(
                &parent.join(name),
                "empty, so there is nothing to give the new cgroup",
            ));
        }
        files::write_cg(&file, &value)?;
    }
    Ok(())
}

/// The v1 freezer directory among `paths`, if any.
pub(crate) fn freezer_dir(paths: &[std::path::PathBuf]) -> Option<&Path> {
    paths
        .iter()
        .map(|p| p.as_path())
        .find(|p| p.join("freezer.state").exists())
}

pub(crate) fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(files::read_cg(&dir.join("freezer.state"))? == "FROZEN")
}

/// Freeze and wait (bounded) until the kernel reports FROZEN. A task stuck in an
/// uninterruptible sleep can hold the cgroup in FREEZING; then thaw and try again, as the
/// kernel documentation advises.
pub(crate) fn freeze(dir: &Path, timeout: Duration) -> Result<()> {
    let file = dir.join("freezer.state");
    let deadline = Instant::now() + timeout;
    loop {
        files::write_cg(&file, "FROZEN")?;
        for _ in 0..20 {
            if files::read_cg(&file)? == "FROZEN" {
                return Ok(());
            }
            sleep(Duration::from_millis(1));
        }
        if Instant::now() > deadline {
            let _ = files::write_cg(&file, "THAWED");
            return Err(files::cg_err(
                &file,
                format!("still FREEZING after {timeout:?}"),
            ));
        }
        files::write_cg(&file, "THAWED")?;
        sleep(Duration::from_millis(5));
    }
}

pub(crate) fn thaw(dir: &Path) -> Result<()> {
    files::write_cg(&dir.join("freezer.state"), "THAWED")
}
