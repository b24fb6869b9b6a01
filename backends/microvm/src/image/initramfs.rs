//! Packing a bundle's rootfs and the guest agent into an uncompressed initramfs.
//!
//! The guest kernel unpacks the archive into its rootfs and runs /init, which is the agent;
//! the bundle's own files sit around it as the guest's root file system.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};

use super::cpio::{CpioWriter, Meta, S_IFBLK, S_IFCHR, S_IFIFO};
use crate::error::{MicrovmError, Result};

/// What [`build_initramfs`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitramfsInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Entries in the archive: files, directories, links and nodes, /init included.
    pub files: u64,
}

/// Memory the guest kernel needs beside the initramfs (its image, page tables, slabs).
pub const GUEST_KERNEL_RESERVE_MIB: u64 = 64;

/// Mount points the agent needs; created when the rootfs lacks them.
const MOUNT_POINTS: [(&str, u32); 5] = [
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("run", 0o755),
];

/// The largest initramfs a guest with `mem_mib` of RAM can boot: the archive and its unpacked
/// copy are both in memory until the kernel frees the archive.
pub fn max_initramfs_bytes(mem_mib: u64) -> u64 {
    mem_mib.saturating_sub(GUEST_KERNEL_RESERVE_MIB) * 1024 * 1024 / 2
}

/// Checks that an initramfs of `initramfs_bytes` built from `rootfs` can boot in `mem_mib`.
pub fn fits_in_ram(rootfs: &Path, initramfs_bytes: u64, mem_mib: u64) -> Result<()> {
    if initramfs_bytes <= max_initramfs_bytes(mem_mib) {
        return Ok(());
    }
    Err(too_big(rootfs, initramfs_bytes, mem_mib, false))
}

/// `partial`: the archive was abandoned at `bytes`, so the real size (and need) is larger.
fn too_big(rootfs: &Path, bytes: u64, mem_mib: u64, partial: bool) -> MicrovmError {
    let need_mib = bytes.div_ceil(1024 * 1024) * 2 + GUEST_KERNEL_RESERVE_MIB;
    let more = if partial { " or more" } else { "" };
    MicrovmError::Initramfs {
        path: rootfs.to_path_buf(),
        reason: format!(
            "the rootfs packs to {:.1} MiB{more}, which needs about {need_mib} MiB{more} of guest RAM \
             (twice the archive plus {GUEST_KERNEL_RESERVE_MIB} MiB for the kernel); the VM has \
             {mem_mib} MiB: raise linux.resources.memory.limit or use a smaller rootfs",
            bytes as f64 / 1048576.0,
        ),
    }
}

/// Writes an initramfs at `out` holding the rootfs and the agent as /init.
pub fn build_initramfs(rootfs: &Path, agent: &Path, out: &Path) -> Result<InitramfsInfo> {
    build(rootfs, agent, out, None)
}

/// Like [`build_initramfs`], but stops with a clear error as soon as the archive outgrows what
/// a guest with `mem_mib` of RAM can boot (see [`fits_in_ram`]).
pub fn build_initramfs_for_ram(
    rootfs: &Path,
    agent: &Path,
    out: &Path,
    mem_mib: u64,
) -> Result<InitramfsInfo> {
    build(rootfs, agent, out, Some(mem_mib))
}

fn build(rootfs: &Path, agent: &Path, out: &Path, mem_mib: Option<u64>) -> Result<InitramfsInfo> {
    let err = |reason: String| MicrovmError::Initramfs {
        path: out.to_path_buf(),
        reason,
    };
    let root_meta =
        std::fs::metadata(rootfs).map_err(|e| err(format!("rootfs {}: {e}", rootfs.display())))?;
    if !root_meta.is_dir() {
        return Err(err(format!(
            "rootfs {} is not a directory",
            rootfs.display()
        )));
    }
    let agent_file =
        File::open(agent).map_err(|e| err(format!("agent {}: {e}", agent.display())))?;
    let agent_meta = agent_file
        .metadata()
        .map_err(|e| err(format!("agent {}: {e}", agent.display())))?;
    if !agent_meta.is_file() {
        return Err(err(format!(
            "agent {} is not a regular file",
            agent.display()
        )));
    }

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The temporary file is removed on every early return; only a complete archive is renamed.
    let tmp = tempfile::Builder::new()
        .prefix(".initramfs-")
        .tempfile_in(dir)
        .map_err(|e| err(format!("create a temporary file in {}: {e}", dir.display())))?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| err(format!("{}: {e}", tmp.path().display())))?;
    let mut packer = Packer {
        w: CpioWriter::new(BufWriter::with_capacity(1 << 20, file)),
        rootfs,
        limit: mem_mib.map(|m| (m, max_initramfs_bytes(m))),
    };
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(format!("rootfs {}: {e}", rootfs.display())))?;
    packer.walk(&root, rootfs, &mut Vec::new())?;

    let lstat = |name: &str| fstatat(&root, name, AtFlags::AT_SYMLINK_NOFOLLOW);
    for (name, mode) in MOUNT_POINTS {
        if lstat(name).is_err() {
            packer
                .w
                .dir(name.as_bytes(), Meta::new(mode))
                .map_err(|e| err(e.to_string()))?;
        }
    }
    // The kernel opens /dev/console for PID 1 before it runs /init.
    let dev_is_dir = lstat("dev")
        .map(|st| kind(&st) == libc::S_IFDIR)
        .unwrap_or(true);
    if dev_is_dir && lstat("dev/console").is_err() {
        let console = Meta {
            mode: S_IFCHR | 0o600,
            rdev_major: 5,
            rdev_minor: 1,
            ..Meta::default()
        };
        packer
            .w
            .node(b"dev/console", console)
            .map_err(|e| err(e.to_string()))?;
    }
    let init = Meta {
        mode: 0o755,
        mtime: agent_meta.mtime().clamp(0, u32::MAX as i64) as u32,
        ..Meta::default()
    };
    packer
        .w
        .file(b"init", init, agent_meta.len(), &mut &agent_file)
        .map_err(|e| err(format!("agent {}: {e}", agent.display())))?;
    packer.check_limit()?;

    let files = packer.w.entries();
    let mut bw = packer.w.finish().map_err(|e| err(e.to_string()))?;
    bw.flush()
        .map_err(|e| err(format!("write {}: {e}", tmp.path().display())))?;
    drop(bw);
    let size_bytes = tmp
        .as_file()
        .metadata()
        .map_err(|e| err(format!("stat {}: {e}", tmp.path().display())))?
        .len();
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| err(format!("chmod {}: {e}", tmp.path().display())))?;
    }
    tmp.persist(out)
        .map_err(|e| err(format!("rename into place: {}", e.error)))?;
    Ok(InitramfsInfo {
        path: out.to_path_buf(),
        size_bytes,
        files,
    })
}

struct Packer<'a, W: Write> {
    w: CpioWriter<W>,
    rootfs: &'a Path,
    /// The guest RAM and the archive size it allows.
    limit: Option<(u64, u64)>,
}

impl<W: Write> Packer<'_, W> {
    fn fail(&self, file: &Path, why: impl std::fmt::Display) -> MicrovmError {
        MicrovmError::Initramfs {
            path: self.rootfs.to_path_buf(),
            reason: format!("{}: {why}", file.display()),
        }
    }

    fn check_limit(&self) -> Result<()> {
        match self.limit {
            Some((mem, max)) if self.w.bytes_written() > max => {
                Err(too_big(self.rootfs, self.w.bytes_written(), mem, true))
            }
            _ => Ok(()),
        }
    }

    /// Packs the directory open as `dir` (at `path` on the host, for messages), whose path
    /// inside the archive is `rel` (empty for the root). Entries are opened relative to `dir`
    /// with O_NOFOLLOW and checked against what lstat saw, so a symlink is stored as a link
    /// and never followed, even one swapped in while the rootfs is packed.
    fn walk(&mut self, dir: &OwnedFd, path: &Path, rel: &mut Vec<u8>) -> Result<()> {
        let mut names: Vec<OsString> = Dir::openat(
            dir,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.fail(path, e))?
        .iter()
        .map(|e| e.map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string()))
        .filter(|n| !matches!(n, Ok(n) if n == "." || n == ".."))
        .collect::<nix::Result<_>>()
        .map_err(|e| self.fail(path, e))?;
        names.sort();
        for name in names {
            // The agent is /init; whatever the rootfs has there is replaced.
            if rel.is_empty() && name == "init" {
                continue;
            }
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            self.entry(dir, &name, &path.join(&name), rel)?;
            rel.truncate(len);
            self.check_limit()?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: &OwnedFd, name: &OsStr, path: &Path, rel: &mut Vec<u8>) -> Result<()> {
        let st =
            fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| self.fail(path, e))?;
        // Opens `name` without following a symlink and checks it is what lstat saw.
        let open = |extra: OFlag| -> Result<(OwnedFd, FileStat)> {
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra,
                Mode::empty(),
            )
            .map_err(|e| self.fail(path, e))?;
            let now = fstat(&fd).map_err(|e| self.fail(path, e))?;
            if (now.st_dev, now.st_ino, kind(&now)) != (st.st_dev, st.st_ino, kind(&st)) {
                return Err(self.fail(path, "changed while the rootfs was packed"));
            }
            Ok((fd, now))
        };
        match kind(&st) {
            libc::S_IFDIR => {
                let (fd, now) = open(OFlag::O_DIRECTORY)?;
                self.w
                    .dir(rel, meta(&now))
                    .map_err(|e| self.fail(path, e))?;
                self.walk(&fd, path, rel)
            }
            libc::S_IFREG => {
                // O_NONBLOCK: a fifo swapped in would fail the check above, not block.
                let (fd, now) = open(OFlag::O_NONBLOCK | OFlag::O_NOCTTY)?;
                let len = now.st_size as u64;
                if let Some((mem, max)) = self.limit {
                    if self.w.bytes_written() + len > max {
                        return Err(too_big(
                            self.rootfs,
                            self.w.bytes_written() + len,
                            mem,
                            true,
                        ));
                    }
                }
                let f = File::from(fd);
                self.w
                    .file(rel, meta(&now), len, &mut &f)
                    .map_err(|e| self.fail(path, e))
            }
            libc::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(|e| self.fail(path, e))?;
                self.w
                    .symlink(rel, target.as_bytes(), meta(&st))
                    .map_err(|e| self.fail(path, e))
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let k = match kind(&st) {
                    libc::S_IFCHR => S_IFCHR,
                    libc::S_IFBLK => S_IFBLK,
                    _ => S_IFIFO,
                };
                let m = meta(&st);
                self.w
                    .node(
                        rel,
                        Meta {
                            mode: k | (m.mode & 0o7777),
                            ..m
                        },
                    )
                    .map_err(|e| self.fail(path, e))
            }
            // Sockets mean nothing in a fresh guest: skip them.
            _ => Ok(()),
        }
    }
}

fn kind(st: &FileStat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

fn meta(st: &FileStat) -> Meta {
    Meta {
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime.clamp(0, u32::MAX as i64) as u32,
        rdev_major: dev_major(st.st_rdev),
        rdev_minor: dev_minor(st.st_rdev),
    }
}

/// glibc's encoding of dev_t.
fn dev_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32
}

fn dev_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_budget() {
        assert_eq!(max_initramfs_bytes(64), 0);
        assert_eq!(max_initramfs_bytes(128), 32 << 20);
        assert!(fits_in_ram(Path::new("/r"), 32 << 20, 128).is_ok());
        let e = fits_in_ram(Path::new("/r"), 100 << 20, 128)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/r")
                && e.contains("100.0 MiB")
                && e.contains("264 MiB")
                && e.contains("128 MiB"),
            "{e}"
        );
    }

    #[test]
    fn links_out_of_the_rootfs_are_stored_as_links() {
        let d = tempfile::tempdir().unwrap();
        let host = d.path().join("host");
        std::fs::create_dir(&host).unwrap();
        let secret = b"host-only-content-3f9a1c";
        std::fs::write(host.join("secret"), secret).unwrap();
        let root = d.path().join("rootfs");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(host.join("secret"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../host/secret", root.join("rel")).unwrap();
        std::os::unix::fs::symlink(&host, root.join("dir")).unwrap();
        let agent = d.path().join("agent");
        std::fs::write(&agent, b"agent").unwrap();
        let out = d.path().join("initramfs");
        build_initramfs(&root, &agent, &out).unwrap();
        let archive = std::fs::read(&out).unwrap();
        let has = |needle: &[u8]| archive.windows(needle.len()).any(|w| w == needle);
        assert!(!has(secret), "a host file was packed");
        assert!(has(b"../host/secret") && has(host.join("secret").as_os_str().as_bytes()));
        assert!(!has(b"dir/secret"), "a host directory was walked");
    }

    #[test]
    fn dev_numbers() {
        assert_eq!(
            (
                dev_major(libc::makedev(5, 1)),
                dev_minor(libc::makedev(5, 1))
            ),
            (5, 1)
        );
        let d = libc::makedev(259, 65536);
        assert_eq!((dev_major(d), dev_minor(d)), (259, 65536));
    }
}
