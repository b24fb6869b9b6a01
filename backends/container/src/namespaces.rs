//! linux.namespaces: which to create with clone(2), which to join with setns(2), and the
//! uid/gid maps of a new user namespace.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{ContainerError, Result};

/// The clone flag of a namespace type.
pub fn flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// A namespace to join by path.
#[derive(Debug)]
pub struct Join {
    pub flag: CloneFlags,
    pub fd: OwnedFd,
    pub field: String,
}

/// Where each namespace comes from.
#[derive(Debug)]
pub struct NsPlan {
    /// New namespaces made by clone itself (user and pid must be, the rest may).
    pub clone_flags: CloneFlags,
    /// New cgroup namespace, unshared by the child once it sits in its cgroup.
    pub new_cgroup: bool,
    /// The pid namespace to join: the parent enters it before clone.
    pub pid_join: Option<Join>,
    /// Joined by the child right after clone, user namespace first.
    pub joins: Vec<Join>,
    /// New namespaces the child unshares after joining a user namespace by path, so that
    /// they are owned by that user namespace rather than the host's.
    pub unshare_flags: CloneFlags,
}

impl NsPlan {
    pub fn new_user(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
    }
    pub fn new_pid(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWPID)
    }
    pub fn in_user_ns(&self) -> bool {
        self.new_user()
            || self
                .joins
                .iter()
                .any(|j| j.flag == CloneFlags::CLONE_NEWUSER)
    }
    /// Whether isobox makes a new namespace of `f` (cloned or unshared), not one joined.
    pub fn creates(&self, f: CloneFlags) -> bool {
        self.clone_flags.contains(f)
            || self.unshare_flags.contains(f)
            || (f == CloneFlags::CLONE_NEWCGROUP && self.new_cgroup)
    }
    pub fn has(&self, f: CloneFlags) -> bool {
        self.clone_flags.contains(f)
            || self.unshare_flags.contains(f)
            || (f == CloneFlags::CLONE_NEWCGROUP && self.new_cgroup)
            || self.joins.iter().any(|j| j.flag == f)
            || (f == CloneFlags::CLONE_NEWPID && self.pid_join.is_some())
    }
}

/// The order joined namespaces are entered: user first (it grants the rights for the rest),
/// mount last.
fn join_rank(f: CloneFlags) -> u8 {
    if f == CloneFlags::CLONE_NEWUSER {
        0
    } else if f == CloneFlags::CLONE_NEWNS {
        2
    } else {
        1
    }
}

/// Plan the namespaces of linux.namespaces, opening the paths to join. Errors are
/// `(field, reason)`.
pub fn plan(linux: Option<&Linux>) -> std::result::Result<NsPlan, (String, String)> {
    let mut plan = NsPlan {
        clone_flags: CloneFlags::empty(),
        new_cgroup: false,
        pid_join: None,
        joins: Vec::new(),
        unshare_flags: CloneFlags::empty(),
    };
    for (i, ns) in linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = flag(ns.typ());
        match ns.path() {
            Some(path) => {
                let fd = File::open(path).map_err(|e| {
                    (
                        format!("linux.namespaces[{i}].path"),
                        format!("opening {}: {e}", path.display()),
                    )
                })?;
                let join = Join {
                    flag: f,
                    fd: fd.into(),
                    field: format!("linux.namespaces[{i}] ({})", path.display()),
                };
                if f == CloneFlags::CLONE_NEWPID {
                    plan.pid_join = Some(join);
                } else {
                    plan.joins.push(join);
                }
            }
            None if ns.typ() == LinuxNamespaceType::Time => {
                return Err((
                    format!("linux.namespaces[{i}]"),
                    "a new time namespace is not supported (join one by path instead)".into(),
                ))
            }
            None if f == CloneFlags::CLONE_NEWCGROUP => plan.new_cgroup = true,
            None => plan.clone_flags |= f,
        }
    }
    plan.joins.sort_by_key(|j| join_rank(j.flag));
    if plan
        .joins
        .iter()
        .any(|j| j.flag == CloneFlags::CLONE_NEWUSER)
    {
        if plan.new_pid() {
            return Err((
                "linux.namespaces".into(),
                "a new pid namespace inside a joined user namespace is not supported: join the pid namespace of that container too".into(),
            ));
        }
        plan.unshare_flags = plan.clone_flags;
        plan.clone_flags = CloneFlags::empty();
    }
    // Without a mount namespace the rootfs is entered with chroot, and create refuses what
    // would mount (rootfs::check_without_mount_ns).
    Ok(plan)
}

/// The namespace types a new one of which `plan` accepts (for `features`), in the order the
/// runtime-spec lists them.
pub fn creatable() -> Vec<LinuxNamespaceType> {
    use LinuxNamespaceType::*;
    [Pid, Network, Mount, Ipc, Uts, User, Cgroup, Time]
        .into_iter()
        .filter(|&typ| {
            let ns = oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .expect("a namespace of a type builds");
            let linux = oci_spec::runtime::LinuxBuilder::default()
                .namespaces(vec![ns])
                .build()
                .expect("linux with one namespace builds");
            plan(Some(&linux)).is_ok()
        })
        .collect()
}

/// Enter one namespace.
pub fn enter(join: &Join) -> Result<()> {
    // SAFETY: setns on a descriptor we own.
    if unsafe { libc::setns(join.fd.as_raw_fd(), join.flag.bits()) } != 0 {
        return Err(ContainerError::io(
            format!("joining {}", join.field),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Bring up `lo` in the new network namespace, as runc does.
pub fn loopback_up() -> Result<()> {
    isobox_common::net::loopback_up()
        .map_err(|e| ContainerError::io("bringing up lo in the new network namespace", e))
}

/// The text of a uid_map/gid_map file.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write the id maps of a child in a new user namespace (from the parent).
pub fn write_id_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    // The error names the config field and shows the map on one line.
    let write = |field: &str, file: &str, text: &str| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| {
            let shown = text.trim().replace('\n', ", ");
            ContainerError::io(format!("{field}: writing {path} ({shown})"), e)
        })
    };
    if !gid.is_empty() {
        // Without CAP_SETGID in the parent namespace the kernel only accepts a gid map once
        // setgroups is denied.
        if !nix::unistd::geteuid().is_root() {
            write("linux.gidMappings", "setgroups", "deny")?;
        }
        write("linux.gidMappings", "gid_map", &map_text(gid))?;
    }
    if !uid.is_empty() {
        write("linux.uidMappings", "uid_map", &map_text(uid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_map_write_names_the_field_on_one_line() {
        let maps: Vec<LinuxIdMapping> = serde_json::from_str(
            r#"[{"containerID": 0, "hostID": 1, "size": 1},
                                    {"containerID": 5, "hostID": 6, "size": 1}]"#,
        )
        .unwrap();
        // No such process: the write fails.
        let err = write_id_maps(i32::MAX, &maps, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("linux.uidMappings: writing /proc/2147483647/uid_map (0 1 1, 5 6 1)"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn new_namespaces_become_clone_flags_and_cgroup_is_deferred() {
        let l = linux(
            r#"{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"user"},{"type":"cgroup"},{"type":"network"}]}"#,
        );
        let p = plan(Some(&l)).unwrap();
        assert_eq!(
            p.clone_flags,
            CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWUSER
                | CloneFlags::CLONE_NEWNET
        );
        assert!(p.new_cgroup && p.new_user() && p.new_pid() && p.in_user_ns());
        assert!(p.joins.is_empty() && p.pid_join.is_none());
    }

    #[test]
    fn joined_namespaces_are_ordered_user_first_mount_last() {
        let l = linux(
            r#"{"namespaces":[{"type":"mount"},{"type":"network","path":"/proc/self/ns/net"},
               {"type":"user","path":"/proc/self/ns/user"},{"type":"pid","path":"/proc/self/ns/pid"}]}"#,
        );
        let p = plan(Some(&l)).unwrap();
        assert!(p.clone_flags.is_empty());
        assert_eq!(p.unshare_flags, CloneFlags::CLONE_NEWNS);
        let order: Vec<_> = p.joins.iter().map(|j| j.flag).collect();
        assert_eq!(order, [CloneFlags::CLONE_NEWUSER, CloneFlags::CLONE_NEWNET]);
        assert!(p.pid_join.is_some() && p.in_user_ns() && !p.new_user());
    }

    #[test]
    fn every_new_namespace_but_time_is_creatable() {
        use LinuxNamespaceType::*;
        assert_eq!(creatable(), [Pid, Network, Mount, Ipc, Uts, User, Cgroup]);
    }

    #[test]
    fn new_namespaces_in_a_joined_user_namespace_are_unshared_after_joining() {
        let l = linux(
            r#"{"namespaces":[{"type":"user","path":"/proc/self/ns/user"},{"type":"mount"},{"type":"uts"},
               {"type":"pid","path":"/proc/self/ns/pid"}]}"#,
        );
        let p = plan(Some(&l)).unwrap();
        assert!(p.clone_flags.is_empty());
        assert_eq!(
            p.unshare_flags,
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS
        );
        assert!(p.has(CloneFlags::CLONE_NEWNS));
        let l = linux(
            r#"{"namespaces":[{"type":"user","path":"/proc/self/ns/user"},{"type":"mount"},{"type":"pid"}]}"#,
        );
        assert_eq!(plan(Some(&l)).unwrap_err().0, "linux.namespaces");
    }

    #[test]
    fn no_mount_namespace_is_planned_and_bad_paths_are_named() {
        let l = linux(r#"{"namespaces":[{"type":"pid"}]}"#);
        let p = plan(Some(&l)).unwrap();
        assert!(!p.has(CloneFlags::CLONE_NEWNS));
        let l = linux(
            r#"{"namespaces":[{"type":"mount"},{"type":"network","path":"/nonexistent/ns"}]}"#,
        );
        assert_eq!(plan(Some(&l)).unwrap_err().0, "linux.namespaces[1].path");
    }

    #[test]
    fn map_text_is_one_line_per_range() {
        let maps: Vec<LinuxIdMapping> = serde_json::from_str(
            r#"[{"containerID":0,"hostID":100000,"size":65536},{"containerID":65536,"hostID":5,"size":1}]"#,
        )
        .unwrap();
        assert_eq!(map_text(&maps), "0 100000 65536\n65536 5 1\n");
    }
}
