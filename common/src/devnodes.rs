//! Device nodes of a /dev made for the workload: the default set, `linux.devices`, and the
//! usual links; for a container's /dev and for the microVM's guest alike.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use serde::{Deserialize, Serialize};

use crate::rootpath::{fd_path, Root, RootError};
use crate::{Error, Result};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    #[serde(with = "kind_bits")]
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Field to name in errors.
    pub field: String,
}

/// An SFlag as its bits on the wire.
mod kind_bits {
    use nix::sys::stat::SFlag;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &SFlag, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(k.bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SFlag, D::Error> {
        Ok(SFlag::from_bits_truncate(u32::deserialize(d)?))
    }
}

/// The devices every container gets when it mounts its own /dev (runc's list).
pub fn defaults() -> Vec<Node> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, major, minor)| Node {
        path: PathBuf::from(p),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
        field: format!("default device {p}"),
    })
    .collect()
}

/// Convert `linux.devices` entries; errors are `(field, reason)`.
pub fn from_spec(devices: &[LinuxDevice]) -> std::result::Result<Vec<Node>, (String, String)> {
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err((
                    format!("{field}.type"),
                    "\"a\" is only valid in cgroup device rules".into(),
                ))
            }
        };
        let dotdot = d
            .path()
            .components()
            .any(|c| c == std::path::Component::ParentDir);
        if dotdot {
            // In a user namespace the path is also the host node bound in: /dev/../etc/x
            // would be a host file.
            return Err((
                format!("{field}.path"),
                format!("{} must not contain \"..\"", d.path().display()),
            ));
        }
        if !d.path().is_absolute() || !d.path().starts_with("/dev") {
            return Err((
                format!("{field}.path"),
                format!("{} must be an absolute path under /dev", d.path().display()),
            ));
        }
        if d.major() < 0 || d.minor() < 0 {
            return Err((field, "major and minor must not be negative".into()));
        }
        out.push(Node {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
            field,
        });
    }
    Ok(out)
}

fn dev_err(node: &Node, step: &str, e: impl std::fmt::Display) -> Error {
    Error::Setup(format!(
        "{} ({}): {step}: {e}",
        node.field,
        node.path.display()
    ))
}

/// A failure to resolve or change `node.path` inside the rootfs, naming the path field.
fn path_err(node: &Node, e: RootError) -> Error {
    if node.field.starts_with("linux.devices[") {
        Error::Setup(format!("{}.path: {e}", node.field))
    } else {
        Error::Setup(format!("{}: {e}", node.field))
    }
}

/// Create `nodes` under `root`, resolved inside it: whatever the rootfs ships at a node's
/// path (a symlink too) is replaced, not followed, and links on the way never lead out. In a
/// user namespace mknod is not allowed, so the host's node of the same path is bound instead
/// (as runc does).
pub fn create(root: &Root, nodes: &[Node], in_user_ns: bool) -> Result<()> {
    for node in nodes {
        if in_user_ns {
            bind_host(root, node)?;
            continue;
        }
        let dev = makedev(node.major, node.minor);
        root.mknod(&node.path, node.kind, node.mode, dev, node.uid, node.gid)
            .map_err(|e| path_err(node, e))?;
    }
    Ok(())
}

fn bind_host(root: &Root, node: &Node) -> Result<()> {
    let dest = root
        .replace_with_file(&node.path)
        .map_err(|e| path_err(node, e))?;
    nix::mount::mount(
        Some(&node.path),
        fd_path(&dest).as_path(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| dev_err(node, &format!("binding host {}", node.path.display()), e))
}

/// The standard links of /dev: fd, stdin, stdout, stderr, ptmx (to the container's devpts
/// instance) and core when the host has /proc/kcore.
pub fn links(root: &Root) -> Result<()> {
    let link_err = |name: &str, target: &str, e: RootError| {
        Error::Setup(format!("linking /dev/{name} to {target}: {e}"))
    };
    let mut list = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        list.push(("/proc/kcore", "core"));
    }
    let dev = Path::new("/dev");
    for (target, name) in list {
        let link = dev.join(name);
        if root.exists(&link) {
            continue;
        }
        root.symlink(Path::new(target), &link)
            .map_err(|e| link_err(name, target, e))?;
    }
    let pts = root.open_path(
        Path::new("/dev/pts"),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
    );
    if pts.is_ok() {
        let ptmx = dev.join("ptmx");
        root.unlink(&ptmx)
            .and_then(|()| root.symlink(Path::new("pts/ptmx"), &ptmx))
            .map_err(|e| link_err("ptmx", "pts/ptmx", e))?;
    }
    Ok(())
}
