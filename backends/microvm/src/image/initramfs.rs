//! Packing a bundle's rootfs and the guest agent into an uncompressed initramfs.
//!
//! The guest kernel unpacks the archive into its rootfs and runs /init, which is the agent;
//! the bundle's own files sit around it as the guest's root file system.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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
    packer.walk(rootfs, &mut Vec::new())?;

    for (name, mode) in MOUNT_POINTS {
        if std::fs::symlink_metadata(rootfs.join(name)).is_err() {
            packer
                .w
                .dir(name.as_bytes(), Meta::new(mode))
                .map_err(|e| err(e.to_string()))?;
        }
    }
    // The kernel opens /dev/console for PID 1 before it runs /init.
    let dev_is_dir = std::fs::symlink_metadata(rootfs.join("dev"))
        .map(|m| m.is_dir())
        .unwrap_or(true);
    if dev_is_dir && std::fs::symlink_metadata(rootfs.join("dev/console")).is_err() {
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

    /// Packs the directory `dir`, whose path inside the archive is `rel` (empty for the root).
    fn walk(&mut self, dir: &Path, rel: &mut Vec<u8>) -> Result<()> {
        let mut names: Vec<OsString> = std::fs::read_dir(dir)
            .map_err(|e| self.fail(dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| self.fail(dir, e))?;
        names.sort();
        for name in names {
            // The agent is /init; whatever the rootfs has there is replaced.
            if rel.is_empty() && name == "init" {
                continue;
            }
            let path = dir.join(&name);
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            self.entry(&path, rel)?;
            rel.truncate(len);
            self.check_limit()?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &mut Vec<u8>) -> Result<()> {
        let m = std::fs::symlink_metadata(path).map_err(|e| self.fail(path, e))?;
        let meta = Meta {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime().clamp(0, u32::MAX as i64) as u32,
            rdev_major: dev_major(m.rdev()),
            rdev_minor: dev_minor(m.rdev()),
        };
        let ft = m.file_type();
        if ft.is_dir() {
            self.w.dir(rel, meta).map_err(|e| self.fail(path, e))?;
            self.walk(path, rel)
        } else if ft.is_file() {
            let f = File::open(path).map_err(|e| self.fail(path, e))?;
            let fm = f.metadata().map_err(|e| self.fail(path, e))?;
            if !fm.is_file() {
                return Err(self.fail(path, "changed type while the rootfs was packed"));
            }
            if let Some((mem, max)) = self.limit {
                if self.w.bytes_written() + fm.len() > max {
                    return Err(too_big(
                        self.rootfs,
                        self.w.bytes_written() + fm.len(),
                        mem,
                        true,
                    ));
                }
            }
            self.w
                .file(rel, meta, fm.len(), &mut &f)
                .map_err(|e| self.fail(path, e))
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| self.fail(path, e))?;
            self.w
                .symlink(rel, target.as_os_str().as_bytes(), meta)
                .map_err(|e| self.fail(path, e))
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                S_IFCHR
            } else if ft.is_block_device() {
                S_IFBLK
            } else {
                S_IFIFO
            };
            self.w
                .node(
                    rel,
                    Meta {
                        mode: kind | (meta.mode & 0o7777),
                        ..meta
                    },
                )
                .map_err(|e| self.fail(path, e))
        } else {
            // Sockets mean nothing in a fresh guest: skip them.
            Ok(())
        }
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
