//! Reading and writing cgroup control files, making and removing cgroup directories.
//!
//! Control files always exist once the kernel made a cgroup directory, so writes never create
//! files: a missing file means the host lacks the controller or feature.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{ContainerError, Result};

/// Write `value` to the control file `file` in one write(2).
pub(crate) fn write(file: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).truncate(true).open(file)?;
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::new(
            ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", value.len()),
        ));
    }
    Ok(())
}

/// Write a control file; failure is a `Cgroup` error naming the file.
pub(crate) fn write_cg(file: &Path, value: &str) -> Result<()> {
    write(file, value).map_err(|e| cg_err(file, format!("write {value:?}: {}", why(&e))))
}

/// Read a control file, trimmed.
pub(crate) fn read(file: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(file)?.trim().to_string())
}

pub(crate) fn read_cg(file: &Path) -> Result<String> {
    read(file).map_err(|e| cg_err(file, format!("read: {}", why(&e))))
}

/// The pids listed in `dir`/cgroup.procs; a directory already gone has none.
pub(crate) fn procs(dir: &Path) -> Result<Vec<i32>> {
    let file = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(cg_err(&file, format!("read: {}", why(&e)))),
    };
    text.split_whitespace()
        .map(|s| {
            s.parse::<i32>()
                .map_err(|_| cg_err(&file, format!("not a pid: {s:?}")))
        })
        .collect()
}

/// `dir` and every cgroup below it (ones the container made itself, e.g. with its own
/// cgroup namespace), deepest first, so they can be removed in this order.
pub(crate) fn tree_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if let Ok(entries) = fs::read_dir(&all[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    all.push(e.path());
                }
            }
        }
        i += 1;
    }
    all.reverse();
    all
}

/// Make one cgroup directory. Ok(true) if made here, Ok(false) if it already existed.
pub(crate) fn mkdir(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => {
            #[cfg(test)]
            fake::populate(dir);
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Remove one cgroup directory. Ok(false) if it was already gone.
pub(crate) fn rmdir(dir: &Path) -> io::Result<bool> {
    #[cfg(test)]
    fake::depopulate(dir);
    match fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A short reason for an I/O error, spelling out what the errno means for a cgroup file.
pub(crate) fn why(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => {
            "not present on this host (controller or kernel feature missing)".into()
        }
        Some(libc::EINVAL) => "the kernel rejected the value (invalid argument)".into(),
        Some(libc::EBUSY) => "the kernel refused it now (device or resource busy)".into(),
        Some(libc::EACCES) | Some(libc::EPERM) => format!("not permitted ({e})"),
        _ => e.to_string(),
    }
}

pub(crate) fn cg_err(path: &Path, reason: impl Into<String>) -> ContainerError {
    ContainerError::Cgroup {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Unit tests run on a temp-dir tree laid out like /sys/fs/cgroup. There, mkdir must do what
/// the kernel does (make the control files) and rmdir must drop them again. Both only act on
/// directories that are not on a cgroup file system.
#[cfg(test)]
pub(crate) mod fake {
    use std::fs;
    use std::path::Path;

    fn on_cgroupfs(dir: &Path) -> bool {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
        match statfs(dir) {
            Ok(s) => {
                let t = s.filesystem_type();
                t == CGROUP_SUPER_MAGIC || t == CGROUP2_SUPER_MAGIC
            }
            Err(_) => true,
        }
    }

    /// Give a new directory copies of its parent's control files.
    pub fn populate(dir: &Path) {
        let Some(parent) = dir.parent() else { return };
        if on_cgroupfs(parent) {
            return;
        }
        for entry in fs::read_dir(parent).unwrap().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !entry.file_type().unwrap().is_file() {
                continue;
            }
            let value = match &*name {
                // The kernel starts a child's cpuset empty (clone_children=0).
                "cgroup.procs" | "cgroup.subtree_control" | "cpuset.cpus" | "cpuset.mems" => {
                    String::new()
                }
                // A child may use only what its parent enabled for it.
                "cgroup.controllers" => {
                    fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default()
                }
                _ => fs::read_to_string(entry.path()).unwrap_or_default(),
            };
            fs::write(dir.join(&*name), value).unwrap();
        }
    }

    pub fn depopulate(dir: &Path) {
        if on_cgroupfs(dir) || !dir.is_dir() {
            return;
        }
        // Like the kernel: a cgroup with processes or children cannot go.
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if !procs.trim().is_empty() {
            return;
        }
        for entry in fs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_file() {
                fs::remove_file(entry.path()).unwrap();
            }
        }
    }
}
