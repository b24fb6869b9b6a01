//! A made cgroup's life: joining processes, listing, signalling, freezing, killing, removing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{files, v1, v2};
use crate::error::Result;

/// How long a freeze may take before giving up on it.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long destroy waits for killed processes to leave the cgroup.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn add(paths: &[PathBuf], pid: i32) -> Result<()> {
    for dir in paths {
        files::write_cg(&dir.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(())
}

/// Every pid in the cgroups and in any cgroup below them.
pub(crate) fn pids(paths: &[PathBuf]) -> Result<Vec<i32>> {
    let mut all = BTreeSet::new();
    for top in paths {
        for dir in files::tree_deepest_first(top) {
            all.extend(files::procs(&dir)?);
        }
    }
    Ok(all.into_iter().collect())
}

/// The freezer to use: v2's cgroup.freeze (also present in hybrid mode), else v1's.
enum Freezer<'a> {
    V2(&'a Path),
    V1(&'a Path),
}

fn freezer(paths: &[PathBuf]) -> Option<Freezer<'_>> {
    if let Some(d) = v2::unified_dir(paths).filter(|d| v2::can_freeze(d)) {
        return Some(Freezer::V2(d));
    }
    v1::freezer_dir(paths).map(Freezer::V1)
}

pub(crate) fn freeze(paths: &[PathBuf]) -> Result<bool> {
    match freezer(paths) {
        Some(Freezer::V2(d)) => v2::freeze(d, FREEZE_TIMEOUT).map(|_| true),
        Some(Freezer::V1(d)) => v1::freeze(d, FREEZE_TIMEOUT).map(|_| true),
        None => Ok(false),
    }
}

pub(crate) fn thaw(paths: &[PathBuf]) -> Result<()> {
    match freezer(paths) {
        Some(Freezer::V2(d)) => v2::thaw(d),
        Some(Freezer::V1(d)) => v1::thaw(d),
        None => Ok(()),
    }
}

pub(crate) fn is_frozen(paths: &[PathBuf]) -> Result<bool> {
    match freezer(paths) {
        Some(Freezer::V2(d)) => v2::is_frozen(d),
        Some(Freezer::V1(d)) => v1::is_frozen(d),
        None => Ok(false),
    }
}

fn send(pids: &[i32], signal: i32) {
    for &pid in pids {
        if pid <= 0 {
            continue;
        }
        // Raw kill(2): realtime signals have no nix::Signal. Gone already (ESRCH) is fine.
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Signal every process, frozen so none can fork past the list. A cgroup paused before
/// stays paused.
pub(crate) fn signal_all(paths: &[PathBuf], signal: i32) -> Result<()> {
    if !(0..=libc::SIGRTMAX()).contains(&signal) {
        return Err(files::cg_err(
            paths.first().map(|p| p.as_path()).unwrap_or(Path::new("")),
            format!("signal {signal}: not a signal number"),
        ));
    }
    let was_frozen = is_frozen(paths).unwrap_or(false);
    let froze = !was_frozen && freeze(paths).unwrap_or(false);
    let list = pids(paths);
    if let Ok(list) = &list {
        send(list, signal);
    }
    if froze {
        thaw(paths)?;
    }
    list.map(|_| ())
}

/// Kill everything (cgroup.kill, or freeze + SIGKILL + thaw), wait until empty, remove the
/// directories and then whichever `parents` are empty. Directories already gone are fine.
pub(crate) fn destroy(paths: &[PathBuf], parents: &[PathBuf]) -> Result<()> {
    let live: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
    if !live.is_empty() {
        kill_all(&live)?;
        let deadline = Instant::now() + EMPTY_TIMEOUT;
        for top in live.iter().rev() {
            for dir in files::tree_deepest_first(top) {
                remove(&dir, deadline)?;
            }
        }
    }
    let mut parents: Vec<&PathBuf> = parents.iter().collect();
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for dir in parents {
        // Still used by another container (EBUSY/ENOTEMPTY) or already gone: leave it.
        let _ = files::rmdir(dir);
    }
    Ok(())
}

fn kill_all(paths: &[PathBuf]) -> Result<()> {
    let deadline = Instant::now() + EMPTY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    let mut round = 0u32;
    loop {
        let left = pids(paths)?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(files::cg_err(
                &paths[0],
                format!("processes {left:?} still there {EMPTY_TIMEOUT:?} after SIGKILL"),
            ));
        }
        // Kill on the first round, and again now and then for any fork that slipped by.
        if round % 64 == 0 {
            let used_kill_file = match v2::unified_dir(paths) {
                Some(d) => v2::kill(d)?,
                None => false,
            };
            if used_kill_file {
                // A v1 freezer holds SIGKILL back until thawed.
                if let Some(d) = v1::freezer_dir(paths) {
                    if v1::is_frozen(d).unwrap_or(false) {
                        v1::thaw(d)?;
                    }
                }
            } else {
                let froze = freeze(paths).unwrap_or(false);
                send(&pids(paths)?, libc::SIGKILL);
                if froze || is_frozen(paths).unwrap_or(false) {
                    thaw(paths)?;
                }
            }
        }
        round += 1;
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// rmdir, retrying while the kernel still reports the cgroup busy (a task exiting).
fn remove(dir: &Path, deadline: Instant) -> Result<()> {
    loop {
        match files::rmdir(dir) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(files::cg_err(dir, format!("rmdir: {}", files::why(&e)))),
        }
    }
}
