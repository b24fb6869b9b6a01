//! The bundle's files shared live with the guest by virtio-fs: its rootfs and each bind mount
//! of `mounts` are a share, served by a virtiofsd of their own (one per host directory) on a
//! vhost-user socket the hypervisor connects to. The guest agent mounts them by tag (see
//! [`MountRequest`]).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use isobox_common::mount_opts;
use isobox_common::protocol::{FsMount, MountRequest, VolumeMount};
use isobox_common::Bundle;
use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use crate::error::{MicrovmError, Result};
use crate::image;

/// Environment variable naming the virtiofsd binary.
pub const VIRTIOFSD_ENV: &str = "ISOBOX_VIRTIOFSD";
/// Where distributions put it: the Rust virtiofsd, Debian 12's qemu-system-common.
const VIRTIOFSD_PATHS: [&str; 3] = [
    "/usr/libexec/virtiofsd",
    "/usr/lib/qemu/virtiofsd",
    "/usr/lib/virtiofsd",
];
/// The root's tag; volumes are `isobox1`, `isobox2`, ….
pub const ROOT_TAG: &str = "isobox0";
/// Most shares a VM takes: qemu's microvm machine has this many virtio-mmio transports.
pub const MAX_SHARES: usize = 8;

/// One host directory served to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub tag: String,
    pub dir: PathBuf,
    /// Served from a read-only bind of `dir`, so the host refuses writes whatever the guest
    /// kernel does.
    pub readonly: bool,
}

/// The shares of a bundle and the guest's mounts of them; errors are (field, reason).
pub fn plan(bundle: &Bundle) -> std::result::Result<(Vec<Share>, MountRequest), (String, String)> {
    let mut shares = vec![Share {
        tag: ROOT_TAG.into(),
        dir: bundle.rootfs.clone(),
        readonly: false,
    }];
    let mut volumes = Vec::new();
    let mut filesystems = Vec::new();
    for m in mount_opts::plan(bundle)? {
        if !m.opts.is_bind() {
            filesystems.push(kernel_mount(&m)?);
            continue;
        }
        let field = format!("mounts[{}].source", m.index);
        let source = m.source.clone().unwrap_or_default();
        let meta = std::fs::metadata(&source)
            .map_err(|e| (field.clone(), format!("{}: {e}", source.display())))?;
        let (dir, name) = if meta.is_dir() {
            (source.clone(), String::new())
        } else if meta.is_file() {
            let name = source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                source.parent().unwrap_or(Path::new("/")).to_path_buf(),
                name,
            )
        } else {
            return Err((
                field,
                format!(
                    "{} is neither a directory nor a regular file: a microVM shares only those",
                    source.display()
                ),
            ));
        };
        let readonly = m.opts.flags.contains(MsFlags::MS_RDONLY);
        let tag = match shares
            .iter()
            .skip(1)
            .find(|s| s.dir == dir && s.readonly == readonly)
        {
            Some(s) => s.tag.clone(),
            None => {
                if shares.len() == MAX_SHARES {
                    return Err((
                        field,
                        format!(
                            "a microVM shares at most {MAX_SHARES} host directories (the \
                             rootfs and {} for bind mounts)",
                            MAX_SHARES - 1
                        ),
                    ));
                }
                let tag = format!("isobox{}", shares.len());
                shares.push(Share {
                    tag: tag.clone(),
                    dir,
                    readonly,
                });
                tag
            }
        };
        volumes.push(VolumeMount {
            tag,
            name,
            destination: m.destination.to_string_lossy().into_owned(),
            flags: m.opts.remount_flags().bits(),
        });
    }
    let root_readonly = bundle
        .spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let linux = bundle.spec.linux().as_ref();
    let request = MountRequest {
        root_tag: ROOT_TAG.into(),
        root_readonly,
        volumes,
        masked_paths: linux
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default(),
        readonly_paths: linux
            .and_then(|l| l.readonly_paths().clone())
            .unwrap_or_default(),
        sysctl: linux.and_then(|l| l.sysctl().clone()).unwrap_or_default(),
        filesystems,
        devices: isobox_common::devnodes::from_spec(
            linux
                .and_then(|l| l.devices().as_deref())
                .unwrap_or_default(),
        )?,
    };
    Ok((shares, request))
}

/// File systems the guest kernel mounts for a bundle (`cgroup` as `cgroup2`: the guest's
/// hierarchy is unified, as runc mounts it on a cgroup-v2 host).
const GUEST_FILESYSTEMS: [&str; 7] = [
    "tmpfs", "mqueue", "proc", "sysfs", "devpts", "cgroup", "cgroup2",
];

/// A non-bind entry of `mounts` as the guest mounts it; other types are refused by field
/// (their source is a host device or a network path, which a VM does not reach).
fn kernel_mount(m: &mount_opts::PlannedMount) -> std::result::Result<FsMount, (String, String)> {
    if !GUEST_FILESYSTEMS.contains(&m.typ.as_str()) {
        return Err((
            format!("mounts[{}].type", m.index),
            format!(
                "{:?}: a microVM mounts binds (shared from the host) and the guest kernel's {}",
                m.typ,
                GUEST_FILESYSTEMS.join(", ")
            ),
        ));
    }
    let fstype = if m.typ == "cgroup" {
        "cgroup2"
    } else {
        m.typ.as_str()
    };
    // cgroup v1 controller names mean nothing to cgroup2.
    let data = if fstype == "cgroup2" {
        None
    } else {
        m.opts.data_string()
    };
    Ok(FsMount {
        fstype: fstype.into(),
        destination: m.destination.to_string_lossy().into_owned(),
        flags: m.opts.flags.bits(),
        data,
    })
}

/// The virtiofsd binary: `$ISOBOX_VIRTIOFSD`, else a distribution's, else `virtiofsd` on
/// $PATH.
pub fn find_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(VIRTIOFSD_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    VIRTIOFSD_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path).map(|d| d.join("virtiofsd")))
        .find(|p| p.is_file())
        .ok_or_else(|| MicrovmError::Hypervisor {
            hypervisor: "virtiofsd".into(),
            reason: format!(
                "virtiofsd not found in {} or on $PATH (Debian: qemu-system-common; or set \
                 ${VIRTIOFSD_ENV})",
                VIRTIOFSD_PATHS.join(", ")
            ),
        })
}

/// A started virtiofsd and the hypervisor's end of its vhost-user connection.
pub struct Served {
    pub daemon: Child,
    pub frontend: OwnedFd,
}

/// Start a virtiofsd for `share`. Its listening socket is made here and connected at once,
/// so no path stays behind and nobody else can connect first; `log` takes its messages. It
/// dies with the calling thread (PR_SET_PDEATHSIG) and ends when its frontend hangs up.
pub fn serve(binary: &Path, share: &Share, state_dir: &Path, log: &File) -> Result<Served> {
    let io = |what: &str, e: std::io::Error| {
        MicrovmError::io(format!("virtiofsd for {}: {what}", share.dir.display()), e)
    };
    // Bound through the directory's descriptor: the path stays short however deep it is.
    let dir = File::open(state_dir).map_err(|e| io("opening the state directory", e))?;
    let name = format!("{}.sock", share.tag);
    let short = PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()));
    let _ = std::fs::remove_file(state_dir.join(&name));
    let listener = UnixListener::bind(&short).map_err(|e| io("binding its socket", e))?;
    let frontend = UnixStream::connect(&short);
    let _ = std::fs::remove_file(state_dir.join(&name));
    let frontend = frontend.map_err(|e| io("connecting to its socket", e))?;
    let listen_fd = listener.as_raw_fd();
    let source = share.dir.as_os_str().as_bytes();
    let c_dir = CString::new(source)
        .map_err(|_| io("its directory", std::io::ErrorKind::InvalidInput.into()))?;
    let readonly = share.readonly;
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--fd={listen_fd}"))
        .arg("-o")
        .arg({
            let mut o = std::ffi::OsString::from("source=");
            o.push(&share.dir);
            o
        })
        .args([
            "-o",
            "cache=auto",
            // Chrooted in namespaces made here: the namespace sandbox forks a child, which
            // outlives a killed VM for a moment; so it is one process, gone with the VM.
            "-o",
            "sandbox=chroot",
            "-o",
            "log_level=err",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| io("its log", e))?)
        .stderr(log.try_clone().map_err(|e| io("its log", e))?);
    // SAFETY: only async-signal-safe calls (prctl, fcntl, unshare, mount) between fork and
    // exec, on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::fcntl(listen_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            own_namespaces(&c_dir, readonly)
        });
    }
    let daemon = cmd
        .spawn()
        .map_err(|e| io(&format!("starting {}", binary.display()), e))?;
    drop(listener);
    Ok(Served {
        daemon,
        frontend: OwnedFd::from(frontend),
    })
}

/// In a child before exec: mount, network, IPC and UTS namespaces of its own, where `dir`
/// is a read-only bind when `readonly`.
fn own_namespaces(dir: &CString, readonly: bool) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let none = std::ptr::null();
    // SAFETY: plain syscalls on NUL-terminated strings that outlive them.
    unsafe {
        check(libc::unshare(
            libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
        ))?;
        if !readonly {
            return Ok(());
        }
        check(libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            dir.as_ptr(),
            dir.as_ptr(),
            none,
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            none,
            dir.as_ptr(),
            none,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        ))
    }
}

/// The agent's initramfs for a shared root: the agent and the kernel's virtio-fs modules.
pub fn agent_initramfs(kernel: &image::KernelInfo, agent: &Path) -> Result<PathBuf> {
    let data = image::data_dir();
    let release = kernel
        .release
        .as_deref()
        .ok_or_else(|| MicrovmError::Kernel {
            path: kernel.path.clone(),
            reason: "its release is unknown, so its virtio-fs modules cannot be found".into(),
        })?;
    let modules = image::modules::ensure(&data, release, true)?;
    image::modules::agent_initramfs(&data, agent, &modules)
}

/// The index of the bundle's first bind mount.
pub fn first_bind(bundle: &isobox_common::Bundle) -> Option<usize> {
    isobox_common::mount_opts::plan(bundle)
        .ok()?
        .into_iter()
        .find(|m| m.opts.is_bind())
        .map(|m| m.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(mounts: serde_json::Value, readonly_root: bool) -> (tempfile::TempDir, Bundle) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rootfs")).unwrap();
        std::fs::create_dir_all(dir.path().join("vol")).unwrap();
        std::fs::write(dir.path().join("vol/file"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("rootfs/bin")).unwrap();
        std::fs::copy("/bin/true", dir.path().join("rootfs/bin/true")).unwrap();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": readonly_root},
            "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": mounts,
        });
        let b = Bundle::from_config_text(dir.path().to_path_buf(), &config.to_string()).unwrap();
        (dir, b)
    }

    #[test]
    fn binds_become_shares_deduplicated_by_directory_and_mode() {
        let (dir, b) = bundle(
            serde_json::json!([
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "vol", "options": ["rbind"]},
                {"destination": "/etc/f", "type": "bind", "source": "vol/file", "options": ["bind", "ro", "nosuid"]},
                {"destination": "/ro", "type": "none", "source": "vol", "options": ["rbind", "ro"]},
            ]),
            true,
        );
        let (shares, req) = plan(&b).unwrap();
        let vol = dir.path().canonicalize().unwrap().join("vol");
        assert_eq!(shares.len(), 3, "{shares:?}");
        assert_eq!(
            (shares[0].tag.as_str(), shares[0].readonly),
            (ROOT_TAG, false)
        );
        assert_eq!((&shares[1].dir, shares[1].readonly), (&vol, false));
        assert_eq!((&shares[2].dir, shares[2].readonly), (&vol, true));
        assert!(req.root_readonly);
        let v: Vec<_> = req
            .volumes
            .iter()
            .map(|v| (v.tag.as_str(), v.name.as_str(), v.destination.as_str()))
            .collect();
        assert_eq!(
            v,
            [
                ("isobox1", "", "/data"),
                ("isobox2", "file", "/etc/f"),
                ("isobox2", "", "/ro")
            ]
        );
        let f = MsFlags::from_bits_truncate(req.volumes[1].flags);
        assert!(
            f.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID) && !f.contains(MsFlags::MS_BIND)
        );
    }

    #[test]
    fn sources_that_are_not_files_or_directories_are_refused_by_field() {
        let (_dir, b) = bundle(
            serde_json::json!([
                {"destination": "/null", "type": "bind", "source": "/dev/null", "options": ["bind"]},
            ]),
            false,
        );
        let (field, reason) = plan(&b).unwrap_err();
        assert_eq!(field, "mounts[0].source");
        assert!(reason.contains("/dev/null is neither"), "{reason}");
    }

    #[test]
    fn kernel_file_systems_go_to_the_guest_and_others_are_refused_by_field() {
        let (_dir, b) = bundle(
            serde_json::json!([
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "cpu"]},
            ]),
            false,
        );
        let (_, req) = plan(&b).unwrap();
        let fs: Vec<_> = req
            .filesystems
            .iter()
            .map(|m| (m.fstype.as_str(), m.destination.as_str(), m.data.as_deref()))
            .collect();
        // cgroup is the guest's unified hierarchy: v1 controller options do not apply.
        assert_eq!(
            fs,
            [
                ("mqueue", "/dev/mqueue", None),
                ("cgroup2", "/sys/fs/cgroup", None)
            ]
        );
        assert!(MsFlags::from_bits_truncate(req.filesystems[1].flags).contains(MsFlags::MS_RDONLY));
        let (_dir, b) = bundle(
            serde_json::json!([
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/mnt", "type": "ext4", "source": "/dev/sda1"},
            ]),
            false,
        );
        let (field, reason) = plan(&b).unwrap_err();
        assert_eq!(field, "mounts[1].type");
        assert!(reason.contains("\"ext4\""), "{reason}");
    }
}
