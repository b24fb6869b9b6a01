//! linux.sysctl, linux.readonlyPaths and linux.maskedPaths, in the final root of a container (after
//! pivot_root) or of a microVM's guest (after it switched to the shared root): each path is
//! resolved with openat2 from `/` and mounted on through its fd; and remounting a bind with
//! the flags the kernel locked kept.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::rootpath::{fd_path, is_dir, Root};
use crate::{Error, Result};

/// procfs's f_type (linux/magic.h).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

fn mnt(dest: &Path, reason: String) -> Error {
    Error::Mount {
        destination: dest.to_path_buf(),
        reason,
    }
}

/// Flags of the mount at `path` that an unprivileged remount must keep (the kernel locks them
/// in a user namespace), as mount(2) flags.
pub fn locked_flags(path: &Path, keep_atime: bool) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (s, m) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    if keep_atime {
        for (s, m) in [
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(s) {
                out |= m;
            }
        }
    }
    out
}

const ATIME: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MsFlags::MS_NODIRATIME);

/// Remount a bind mount with `flags`, keeping what the kernel locked.
pub fn remount_bind(target: &Path, flags: MsFlags) -> nix::Result<()> {
    let keep_atime = !flags.intersects(ATIME);
    let all = flags | locked_flags(target, keep_atime) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    nix::mount::mount(None::<&str>, target, None::<&str>, all, None::<&str>)
}

/// After pivot_root `/proc` is the container's: check it is a procfs before `/proc/self/fd/N`
/// is used as a mount target, so the path names the fd and no look-alike in the rootfs.
pub fn check_proc(root: &Root, field: &str) -> Result<()> {
    let not_proc = |why: String| {
        Error::Setup(format!(
            "{field}: /proc/self/fd is needed to mount on a path resolved inside the root, and {why}"
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

/// Resolve the `i`th entry of the list `field` (readonlyPaths or maskedPaths) inside the new
/// root: None when it does not exist. A /proc magic link on the way (which could lead to
/// another root, the host's) or a symlink loop is an error.
fn resolve_listed(
    root: &Root,
    field: &str,
    i: usize,
    path: &Path,
    proc_checked: &mut bool,
) -> Result<Option<OwnedFd>> {
    let field = format!("{field}[{i}]");
    let fd = match root.resolve(path) {
        Ok(fd) => fd,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(Error::Setup(format!("{field}: {e}"))),
    };
    if !*proc_checked {
        check_proc(root, &field)?;
        *proc_checked = true;
    }
    Ok(Some(fd))
}

/// linux.readonlyPaths: bind each existing path onto itself and remount it read-only. Run
/// in the final root; each path is resolved with openat2 and mounted on through its fd.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let root = Root::open(Path::new("/")).map_err(|e| Error::io("opening /", e))?;
    let mut proc_checked = false;
    for (i, p) in paths.iter().enumerate() {
        let path = Path::new(p);
        let Some(fd) = resolve_listed(&root, "linux.readonlyPaths", i, path, &mut proc_checked)?
        else {
            continue;
        };
        let err =
            |what: &str, e: Errno| mnt(path, format!("linux.readonlyPaths[{i}]: {what}: {e}"));
        let fd_target = fd_path(&fd);
        let target = fd_target.as_path();
        nix::mount::mount(
            Some(target),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| err("bind", e))?;
        // The fd names what is under the new bind: resolve again to reach the bind itself.
        let bound = root
            .resolve(path)
            .map_err(|e| Error::Setup(format!("linux.readonlyPaths[{i}]: {e}")))?;
        remount_bind(&fd_path(&bound), MsFlags::MS_RDONLY | MsFlags::MS_REC)
            .map_err(|e| err("remount read-only", e))?;
    }
    Ok(())
}

/// linux.maskedPaths: /dev/null over files, an empty read-only tmpfs over directories. Run
/// in the final root; each path is resolved with openat2 and mounted on through its fd.
pub fn masked_paths(paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let root = Root::open(Path::new("/")).map_err(|e| Error::io("opening /", e))?;
    let mut proc_checked = false;
    for (i, p) in paths.iter().enumerate() {
        let path = Path::new(p);
        let Some(fd) = resolve_listed(&root, "linux.maskedPaths", i, path, &mut proc_checked)?
        else {
            continue;
        };
        let fd_target = fd_path(&fd);
        let target = fd_target.as_path();
        let res = if is_dir(&fd) {
            nix::mount::mount(
                Some("tmpfs"),
                target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            nix::mount::mount(
                Some("/dev/null"),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        res.map_err(|e| mnt(path, format!("linux.maskedPaths[{i}]: {e}")))?;
    }
    Ok(())
}

/// Write linux.sysctl under /proc/sys.
pub fn sysctl(values: &HashMap<String, String>) -> Result<()> {
    let mut keys: Vec<_> = values.keys().collect();
    keys.sort();
    for key in keys {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs::write(&path, values[key].as_bytes()).map_err(|e| {
            Error::Setup(format!(
                "linux.sysctl.{key}: writing {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_is_checked() {
        assert!(check_proc(&Root::open(Path::new("/")).unwrap(), "f").is_ok());
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("proc/self/fd")).unwrap();
        let e = check_proc(&Root::open(tmp.path()).unwrap(), "linux.maskedPaths[0]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.maskedPaths[0]") && e.contains("no procfs"),
            "{e}"
        );
    }
}
