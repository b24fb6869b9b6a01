//! Paths inside the rootfs: every one is resolved with openat2 from an fd of the rootfs (see
//! [`isobox_common::rootpath`]), so a symlink in the rootfs never leads to the host, and the
//! container's setup acts on the fd it got (`/proc/self/fd/N`), not on a path string.

use std::os::fd::AsFd;
use std::path::Path;

pub use isobox_common::rootpath::{fd_path, is_dir, Root, RootError};

use crate::error::{ContainerError, Result};

/// procfs's f_type (linux/magic.h).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// The rootfs (a trusted host path) as a [`Root`]. Open it again after a mount on it, or the
/// fd still names the directory underneath.
pub fn open_root(dir: &Path) -> Result<Root> {
    Root::open(dir)
        .map_err(|e| ContainerError::io(format!("opening the rootfs {}", dir.display()), e))
}

/// After pivot_root `/proc` is the container's: check it is a procfs before `/proc/self/fd/N`
/// is used as a mount target, so the path names the fd and no look-alike in the rootfs.
pub fn check_proc(root: &Root, field: &str) -> Result<()> {
    let not_proc = |why: String| {
        ContainerError::Init(format!(
            "{field}: /proc/self/fd is needed to mount on a path resolved inside the container, and {why}"
        ))
    };
    let fd = root
        .open_path(
            Path::new("/proc/self/fd"),
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
        )
        .map_err(|e| not_proc(e.to_string()))?;
    let fs = nix::sys::statfs::fstatfs(fd.as_fd()).map_err(|e| not_proc(format!("statfs: {e}")))?;
    if fs.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(not_proc("/proc is no procfs mount".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn ino(fd: &impl AsFd) -> u64 {
        nix::sys::stat::fstat(fd.as_fd()).unwrap().st_ino
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("../../../../etc", root.join("escape")).unwrap();
        let r = open_root(root).unwrap();
        let made = r.mkdir_all(Path::new("/lib/x")).unwrap();
        assert_eq!(
            ino(&made),
            fs::metadata(root.join("usr/lib/x")).unwrap().ino()
        );
        let f = r.create_file(Path::new("/escape/passwd")).unwrap();
        assert_eq!(
            ino(&f),
            fs::metadata(root.join("etc/passwd")).unwrap().ino()
        );
        r.mkdir_all(Path::new("/a/../../b")).unwrap();
        assert!(root.join("b").is_dir());
    }

    #[test]
    fn proc_is_checked() {
        assert!(check_proc(&open_root(Path::new("/")).unwrap(), "f").is_ok());
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("proc/self/fd")).unwrap();
        let e = check_proc(&open_root(tmp.path()).unwrap(), "linux.maskedPaths[0]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.maskedPaths[0]") && e.contains("no procfs"),
            "{e}"
        );
    }
}
