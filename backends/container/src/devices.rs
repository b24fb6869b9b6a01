//! Device nodes in the container's /dev: the default set, `linux.devices`, and the usual links.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, SFlag};
use std::borrow::Cow;

use oci_spec::runtime::{
    Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxResources,
};

use crate::cgroups;
use crate::error::{ContainerError, Result};
use crate::paths::{self, fd_path, Root, RootError};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Field to name in errors.
    pub field: String,
}

/// The rules of the container's device cgroup, in the order runc builds them: the bundle's
/// linux.resources.devices, then runc's default allowlist (which the bundle cannot deny),
/// then an allow rule for each linux.devices entry, so a device the bundle asks for is
/// usable (runc leaves that to the caller's own rules). Applied to a cgroup that denies
/// every device. Returns the rules and how many came from each of the first two sources.
fn cgroup_rules(linux: Option<&Linux>) -> (Vec<LinuxDeviceCgroup>, usize, usize) {
    let mut rules: Vec<LinuxDeviceCgroup> = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let own = rules.len();
    let defaults = cgroups::default_device_rules();
    let n_defaults = defaults.len();
    rules.extend(defaults);
    let listed = linux
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    rules.extend(listed.iter().filter_map(|d| {
        let typ = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            LinuxDeviceType::C | LinuxDeviceType::U => LinuxDeviceType::C,
            // A FIFO is no device to the cgroup; `a` is refused by from_spec.
            LinuxDeviceType::P | LinuxDeviceType::A => return None,
        };
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .major(d.major())
            .minor(d.minor())
            .access("rwm")
            .build()
            .ok()
    }));
    (rules, own, n_defaults)
}

/// The bundle's cgroup resources with the complete device rule list of [`cgroup_rules`]:
/// always set, so the default deny holds even when config.json has no linux.resources.
pub fn cgroup_resources_of(linux: Option<&Linux>) -> LinuxResources {
    let mut res = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    res.set_devices(Some(cgroup_rules(linux).0));
    res
}

/// [`cgroup_resources_of`] for a bundle with a linux section.
pub fn cgroup_resources(linux: &Linux) -> Option<Cow<'_, LinuxResources>> {
    Some(Cow::Owned(cgroup_resources_of(Some(linux))))
}

/// Check the device rules before anything is made, naming the field of the rule at fault.
pub fn check_cgroup_rules(linux: Option<&Linux>) -> std::result::Result<(), (String, String)> {
    let (rules, own, n_defaults) = cgroup_rules(linux);
    cgroups::device_state(&rules)
        .map(|_| ())
        .map_err(|(i, why)| {
            if i < own {
                (format!("linux.resources.devices[{i}]"), why)
            } else if i < own + n_defaults {
                (
                    "linux.resources.devices".into(),
                    format!("the default device allowlist cannot follow these rules: {why}"),
                )
            } else {
                (format!("linux.devices[{}]", i - own - n_defaults), why)
            }
        })
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

fn dev_err(node: &Node, step: &str, e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Init(format!(
        "{} ({}): {step}: {e}",
        node.field,
        node.path.display()
    ))
}

/// A failure to resolve or change `node.path` inside the rootfs, naming the path field.
fn path_err(node: &Node, e: RootError) -> ContainerError {
    if node.field.starts_with("linux.devices[") {
        ContainerError::Init(format!("{}.path: {e}", node.field))
    } else {
        ContainerError::Init(format!("{}: {e}", node.field))
    }
}

/// Create `nodes` under `rootfs`, resolved inside it: whatever the rootfs ships at a node's
/// path (a symlink too) is replaced, not followed, and links on the way never lead out. In a
/// user namespace mknod is not allowed, so the host's node of the same path is bound instead
/// (as runc does).
pub fn create(rootfs: &Path, nodes: &[Node], in_user_ns: bool) -> Result<()> {
    let root = paths::open_root(rootfs)?;
    for node in nodes {
        if in_user_ns {
            bind_host(&root, node)?;
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
pub fn links(rootfs: &Path) -> Result<()> {
    let root = paths::open_root(rootfs)?;
    let link_err = |name: &str, target: &str, e: RootError| {
        ContainerError::Init(format!("linking /dev/{name} to {target}: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_is_runcs() {
        let d = defaults();
        let names: Vec<_> = d.iter().map(|n| n.path.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
        assert!(d
            .iter()
            .all(|n| n.mode == 0o666 && n.kind == SFlag::S_IFCHR));
        assert_eq!((d[5].major, d[5].minor), (5, 0));
    }

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    fn state(l: Option<&Linux>) -> Vec<String> {
        let res = cgroup_resources_of(l);
        cgroups::device_state(res.devices().as_deref().unwrap())
            .unwrap()
            .into_iter()
            .map(|(a, r)| format!("{} {r}", if a { "allow" } else { "deny" }))
            .collect()
    }

    #[test]
    fn without_resources_the_cgroup_denies_all_but_the_defaults() {
        for l in [None, Some(linux("{}"))] {
            let s = state(l.as_ref());
            assert_eq!(s[0], "deny a");
            assert!(s.contains(&"allow c 1:3 rwm".to_string()), "{s:?}");
            assert!(!s.iter().any(|r| r.contains("10:232")), "{s:?}");
        }
    }

    #[test]
    fn the_bundle_rules_come_first_then_defaults_then_listed_devices() {
        // allow-all first, a deny for kvm: the defaults and /dev/fuse follow and cannot
        // bring kvm back; a bundle's deny of /dev/null is overridden by the defaults (runc).
        let l = linux(
            r#"{"resources":{"devices":[{"allow":true,"access":"rwm"},
                 {"allow":false,"type":"c","major":10,"minor":232,"access":"rwm"},
                 {"allow":false,"type":"c","major":1,"minor":3,"access":"rwm"}]},
                "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229},
                           {"path":"/dev/fifo","type":"p","major":0,"minor":0}]}"#,
        );
        assert_eq!(state(Some(&l)), ["allow a", "deny c 10:232 rwm"]);
        let l = linux(
            r#"{"resources":{"devices":[{"allow":false,"access":"rwm"}]},
                "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}]}"#,
        );
        let s = state(Some(&l));
        assert_eq!(s.last().unwrap(), "allow c 136:* rwm");
        assert!(s.contains(&"allow c 10:229 rwm".to_string()), "{s:?}");
    }

    #[test]
    fn bad_rules_are_named_by_field() {
        let l = linux(
            r#"{"resources":{"devices":[{"allow":false,"access":"rwm"},
                 {"allow":true,"type":"c","access":"m"},
                 {"allow":false,"type":"c","major":10,"minor":232,"access":"m"}]}}"#,
        );
        let (field, reason) = check_cgroup_rules(Some(&l)).unwrap_err();
        assert_eq!(field, "linux.resources.devices[2]");
        assert!(reason.contains("c *:* m"), "{reason}");
        let l = linux(r#"{"resources":{"devices":[{"allow":true,"type":"p","access":"rwm"}]}}"#);
        assert_eq!(
            check_cgroup_rules(Some(&l)).unwrap_err().0,
            "linux.resources.devices[0]"
        );
        // A partial deny of the default wildcard makes the defaults themselves fail.
        let l = linux(
            r#"{"resources":{"devices":[{"allow":true,"access":"rwm"},
                 {"allow":false,"type":"c","major":1,"access":"rwm"}]}}"#,
        );
        assert_eq!(
            check_cgroup_rules(Some(&l)).unwrap_err().0,
            "linux.resources.devices"
        );
        assert!(check_cgroup_rules(None).is_ok());
    }

    #[test]
    fn spec_devices_convert_and_validate() {
        let devs: Vec<LinuxDevice> = serde_json::from_str(
            r#"[{"path":"/dev/fuse","type":"c","major":10,"minor":229,"fileMode":438,"uid":0,"gid":0},
                {"path":"/dev/loop0","type":"b","major":7,"minor":0}]"#,
        )
        .unwrap();
        let n = from_spec(&devs).unwrap();
        assert_eq!(n[0].kind, SFlag::S_IFCHR);
        assert_eq!((n[0].major, n[0].minor, n[0].mode), (10, 229, 0o666));
        assert_eq!(n[1].kind, SFlag::S_IFBLK);
        let bad: Vec<LinuxDevice> =
            serde_json::from_str(r#"[{"path":"/etc/x","type":"c","major":1,"minor":3}]"#).unwrap();
        assert_eq!(from_spec(&bad).unwrap_err().0, "linux.devices[0].path");
        let up: Vec<LinuxDevice> = serde_json::from_str(
            r#"[{"path":"/dev/../etc/shadow","type":"c","major":1,"minor":1}]"#,
        )
        .unwrap();
        let (field, reason) = from_spec(&up).unwrap_err();
        assert_eq!(field, "linux.devices[0].path");
        assert!(reason.contains("must not contain \"..\""), "{reason}");
    }
}
