//! Paths inside a directory that is not trusted, such as a container's rootfs before
//! pivot_root.
//!
//! Every lookup is one `openat2(2)` from the root's directory fd with `RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS`: the kernel resolves symlinks as if the root were `/` (absolute
//! targets restart at the root, `..` stops there) and refuses /proc magic links, so no path can
//! lead out of the root, however many links it has. Changes (mkdir, create, mknod, symlink,
//! unlink) are made relative to the fd of the resolved parent directory, and callers act on the
//! fd they get back (`/proc/self/fd/N` as a mount target), never on a path string joined onto
//! the host path of the root, which the rootfs could change between the check and the use
//! (runc's CVE-2021-30465).
//!
//! Built on nix's `openat2` (kernel 5.6 or later) rather than the `pathrs` crate: the handful
//! of operations isobox needs fit in this file, with no C library or extra dependency in the
//! static binaries.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, mknodat, FileStat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// The kernel's own limit (MAXSYMLINKS), applied as well to the dangling links this module
/// follows by hand while it creates what they point to.
pub const MAX_SYMLINKS: usize = 40;

/// A failed operation on `path` (as seen inside the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootError {
    pub path: PathBuf,
    /// The step that failed when it was not the lookup itself (e.g. "mknod").
    pub op: Option<&'static str>,
    pub errno: Errno,
}

impl RootError {
    fn new(path: &Path, errno: Errno) -> RootError {
        RootError {
            path: path.to_path_buf(),
            op: None,
            errno,
        }
    }

    fn op(path: &Path, op: &'static str, errno: Errno) -> RootError {
        RootError {
            path: path.to_path_buf(),
            op: Some(op),
            errno,
        }
    }

    /// Whether the path (or one of its directories) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.op.is_none() && matches!(self.errno, Errno::ENOENT | Errno::ENOTDIR)
    }
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        if let Some(op) = self.op {
            write!(f, "{op}: ")?;
        }
        match self.errno {
            Errno::ELOOP if self.op.is_none() => {
                f.write_str("too many levels of symbolic links inside the rootfs")
            }
            Errno::EXDEV if self.op.is_none() => {
                f.write_str("goes through a /proc magic link, which may lead out of the rootfs")
            }
            e => f.write_str(e.desc()),
        }
    }
}

impl std::error::Error for RootError {}

pub type Result<T> = std::result::Result<T, RootError>;

/// `/proc/self/fd/N` for `fd`: a path the kernel resolves to exactly what `fd` refers to
/// (not to a mount made on top of it since: reopen through [`Root`] after mounting).
/// It borrows `fd`, so the fd cannot be closed while its path is in use.
pub fn fd_path<F: AsRawFd>(fd: &F) -> FdPath<'_, F> {
    FdPath {
        path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        _fd: fd,
    }
}

/// The path of an open fd, see [`fd_path`].
pub struct FdPath<'a, F> {
    path: PathBuf,
    _fd: &'a F,
}

impl<F> FdPath<'_, F> {
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

impl<F> std::ops::Deref for FdPath<'_, F> {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// A root directory, held open.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

/// What [`Root::walk`] creates when the last component is missing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Dir,
    File,
}

impl Root {
    /// Open `dir` (a trusted host path; symlinks in it are followed) as the root.
    pub fn open(dir: &Path) -> std::io::Result<Root> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Use an open directory as the root.
    pub fn from_fd(fd: OwnedFd) -> Root {
        Root { fd }
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open `path` inside the root with `flags` (O_CLOEXEC is added). A final symlink is
    /// followed (inside the root) unless `flags` has O_NOFOLLOW.
    pub fn open_path(&self, path: &Path, flags: OFlag) -> Result<OwnedFd> {
        self.raw(&relative(path), flags)
            .map_err(|e| RootError::new(path, e))
    }

    /// An O_PATH fd of `path`, following a final symlink inside the root.
    pub fn resolve(&self, path: &Path) -> Result<OwnedFd> {
        self.open_path(path, OFlag::O_PATH)
    }

    /// An O_PATH fd of `path` itself: a final symlink is not followed.
    pub fn resolve_nofollow(&self, path: &Path) -> Result<OwnedFd> {
        self.open_path(path, OFlag::O_PATH | OFlag::O_NOFOLLOW)
    }

    /// Whether `path` exists (a final symlink counts, even a dangling one).
    pub fn exists(&self, path: &Path) -> bool {
        self.resolve_nofollow(path).is_ok()
    }

    /// The directory `path`, created with its missing parents (mode 0755 before the umask).
    /// Dangling symlinks on the way are followed inside the root and what they point to is
    /// created, as the kernel would resolve the finished path.
    pub fn mkdir_all(&self, path: &Path) -> Result<OwnedFd> {
        self.walk(path, Last::Dir)
    }

    /// `path` as a mount point for a file: opened if it exists (whatever it is), else created
    /// as an empty regular file (O_CREAT|O_EXCL|O_NOFOLLOW) in its created parent directory.
    pub fn create_file(&self, path: &Path) -> Result<OwnedFd> {
        self.walk(path, Last::File)
    }

    /// The parent directory of `path` (created if missing) and the last component's name.
    /// `path` must end in a plain name (not `/`, `.` or `..`).
    pub fn parent_of(&self, path: &Path) -> Result<(OwnedFd, OsString)> {
        let comps = components(path);
        match comps.last() {
            Some(name) if name != ".." => {
                let parent = join(&comps[..comps.len() - 1]);
                let fd = self.walk(&parent, Last::Dir).map_err(|e| RootError {
                    path: path.into(),
                    ..e
                })?;
                Ok((fd, name.clone()))
            }
            _ => Err(RootError::op(path, "not a file name", Errno::EINVAL)),
        }
    }

    /// A regular empty file at `path` as a bind mount target, replacing a symlink found there
    /// (it is removed, not followed).
    pub fn replace_with_file(&self, path: &Path) -> Result<OwnedFd> {
        let (dir, name) = self.parent_of(path)?;
        if lstat_at(&dir, &name).is_ok_and(|st| is_kind(&st, SFlag::S_IFLNK)) {
            unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| RootError::op(path, "removing the symlink", e))?;
        }
        match openat(
            &dir,
            name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(RootError::op(path, "creating the file", e)),
        }
        openat(
            &dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RootError::op(path, "opening", e))
    }

    /// Create the device node or fifo `path` with exactly `perm` and owner `uid:gid`,
    /// replacing whatever non-directory is there (a symlink is removed, not followed).
    pub fn mknod(
        &self,
        path: &Path,
        kind: SFlag,
        perm: u32,
        dev: libc::dev_t,
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        let (dir, name) = self.parent_of(path)?;
        let name = name.as_os_str();
        match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(RootError::op(path, "removing what is there", e)),
        }
        mknodat(&dir, name, kind, Mode::from_bits_truncate(perm), dev)
            .map_err(|e| RootError::op(path, "mknod", e))?;
        // mknod applies the umask: set the exact mode on the node just made, through an fd
        // so a name swapped meanwhile is not followed.
        let fd = openat(
            &dir,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RootError::op(path, "opening the node", e))?;
        let st = fstat(&fd).map_err(|e| RootError::op(path, "stat", e))?;
        if !is_kind(&st, kind) || (kind != SFlag::S_IFIFO && st.st_rdev != dev) {
            return Err(RootError::op(path, "the node changed", Errno::EAGAIN));
        }
        fchownat(
            &fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| RootError::op(path, "chown", e))?;
        // fchmod does not take an O_PATH fd; its /proc/self/fd path reaches the same inode.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            fd_path(&fd).as_path(),
            Mode::from_bits_truncate(perm),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| RootError::op(path, "chmod", e))
    }

    /// Create the symlink `path` -> `target` (the target is stored as is; it is resolved
    /// inside the root whenever this module follows it).
    pub fn symlink(&self, target: &Path, path: &Path) -> Result<()> {
        let (dir, name) = self.parent_of(path)?;
        symlinkat(target, &dir, name.as_os_str()).map_err(|e| RootError::op(path, "symlink", e))
    }

    /// Remove the non-directory `path` (a symlink itself, not its target); missing is fine.
    pub fn unlink(&self, path: &Path) -> Result<()> {
        let comps = components(path);
        let Some(name) = comps.last().filter(|n| *n != "..") else {
            return Err(RootError::op(path, "not a file name", Errno::EINVAL));
        };
        let parent = join(&comps[..comps.len() - 1]);
        let dir = match self.open_path(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => {
                return Err(RootError {
                    path: path.into(),
                    ..e
                })
            }
        };
        match unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(RootError::op(path, "unlink", e)),
        }
    }

    /// openat2 of a path relative to the root; `EAGAIN` (a rename raced with `..`) is retried.
    fn raw(&self, rel: &Path, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
        let how = |resolve| {
            OpenHow::new()
                .flags(flags | OFlag::O_CLOEXEC)
                .resolve(resolve)
        };
        let safe = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        let mut tries = 0;
        loop {
            match openat2(&self.fd, rel, how(safe)) {
                Err(Errno::EAGAIN) if tries < 64 => tries += 1,
                Err(Errno::ELOOP) => {
                    // Too many links, or a magic link? RESOLVE_IN_ROOT alone refuses magic
                    // links with EXDEV (it never follows them either).
                    return match openat2(&self.fd, rel, how(ResolveFlag::RESOLVE_IN_ROOT)) {
                        Err(Errno::EXDEV) => Err(Errno::EXDEV),
                        _ => Err(Errno::ELOOP),
                    };
                }
                other => return other,
            }
        }
    }

    /// Resolve `path`, creating what is missing: directories on the way, and `last` at the
    /// end. A missing component is created with mkdirat (or openat O_CREAT|O_EXCL) in the fd
    /// of its resolved parent, then the path is resolved again from the root; a dangling
    /// symlink is replaced by its target (counted against [`MAX_SYMLINKS`]).
    fn walk(&self, path: &Path, last: Last) -> Result<OwnedFd> {
        let fail = |e| RootError::new(path, e);
        let mut comps = components(path);
        let mut links = 0;
        let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let last_flags = match last {
            Last::Dir => dir_flags,
            Last::File => OFlag::O_PATH,
        };
        // Each round creates one component or follows one link; a bound on rounds ends a
        // rootfs changing under us.
        for _ in 0..4096 {
            match self.raw(&join(&comps), last_flags) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(fail(e)),
            }
            // Find the first component that does not resolve.
            let mut parent = self.raw(Path::new("."), dir_flags).map_err(fail)?;
            let mut missing = None;
            for i in 0..comps.len() {
                let prefix = join(&comps[..=i]);
                let flags = if i + 1 == comps.len() {
                    last_flags
                } else {
                    dir_flags
                };
                match self.raw(&prefix, flags) {
                    Ok(fd) => parent = fd,
                    Err(Errno::ENOENT) => {
                        missing = Some(i);
                        break;
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
            // Everything resolves now: created meanwhile.
            let Some(i) = missing else { continue };
            let name = comps[i].as_os_str();
            if name == ".." {
                return Err(fail(Errno::ENOENT));
            }
            let is_last = i + 1 == comps.len();
            match lstat_at(&parent, name) {
                Err(Errno::ENOENT) => {
                    let made = if is_last && last == Last::File {
                        openat(
                            &parent,
                            name,
                            OFlag::O_CREAT
                                | OFlag::O_EXCL
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_WRONLY
                                | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o644),
                        )
                        .map(drop)
                    } else {
                        mkdirat(&parent, name, Mode::from_bits_truncate(0o755))
                    };
                    match made {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(RootError::op(path, "creating", e)),
                    }
                }
                Ok(st) if is_kind(&st, SFlag::S_IFLNK) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(fail(Errno::ELOOP));
                    }
                    let target = nix::fcntl::readlinkat(&parent, name).map_err(fail)?;
                    let target = Path::new(&target);
                    let mut next = if target.is_absolute() {
                        Vec::new()
                    } else {
                        comps[..i].to_vec()
                    };
                    next.extend(components(target));
                    next.extend_from_slice(&comps[i + 1..]);
                    comps = next;
                }
                // Appeared meanwhile, or a name the kernel cannot reach (a mount in the way).
                Ok(_) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Err(fail(Errno::EAGAIN))
    }
}

fn lstat_at(dir: &impl AsFd, name: &OsStr) -> nix::Result<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// The components of `path` relative to the root: names and `..` (kept: after a symlink it
/// means the link target's parent), without `/` and `.`.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn relative(path: &Path) -> PathBuf {
    join(&components(path))
}

/// The components joined into a relative path; `.` (the root) for none.
fn join(comps: &[OsString]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    comps.iter().collect()
}

/// Whether an O_PATH fd refers to a directory.
pub fn is_dir(fd: &impl AsFd) -> bool {
    fstat(fd).is_ok_and(|st| is_kind(&st, SFlag::S_IFDIR))
}

#[cfg(test)]
mod tests;
