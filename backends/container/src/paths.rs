//! Paths inside the rootfs: every one is resolved with openat2 from an fd of the rootfs (see
//! [`isobox_common::rootpath`]), so a symlink in the rootfs never leads to the host, and the
//! container's setup acts on the fd it got (`/proc/self/fd/N`), not on a path string.

use std::path::Path;

pub use isobox_common::rootpath::{fd_path, Root, RootError};

use crate::error::{ContainerError, Result};

/// The rootfs (a trusted host path) as a [`Root`]. Open it again after a mount on it, or the
/// fd still names the directory underneath.
pub fn open_root(dir: &Path) -> Result<Root> {
    Root::open(dir)
        .map_err(|e| ContainerError::io(format!("opening the rootfs {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::AsFd;
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
}
