//! linux.sysctl: only sysctls that the container's own namespaces scope, as runc allows
//! (libcontainer/configs/validate). /proc/sys is not namespaced as a whole: any other key
//! would change the host's value (kernel.core_pattern means code execution on the host).

use isobox_common::text;
use nix::sched::CloneFlags;
use nix::sys::stat::{fstat, stat};
use std::collections::HashMap;

use crate::namespaces::NsPlan;

/// The sysctls of the ipc namespace (beside the `fs.mqueue.` tree).
const IPC: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Which of the container's namespaces a key needs, or why no namespace scopes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Ipc,
    Net,
    Uts,
    /// kernel.hostname: in the uts namespace, but the hostname field sets it.
    Hostname,
    User,
}

/// sysctl(8) accepts `/` as the separator too; with `/` first, `.` stands for a literal dot
/// (an interface name like eno2.100). Normalize to the dotted form, as runc does.
fn dotted(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

fn scope(key: &str) -> Result<Scope, String> {
    // The init writes /proc/sys/<key with both separators as />: an empty component (a
    // leading or doubled separator) could leave the subtree the key is checked for.
    if key.split(['.', '/']).any(str::is_empty) {
        return Err("not a sysctl name (empty component)".into());
    }
    let key = dotted(key);
    if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
        return Ok(Scope::Ipc);
    }
    if key.starts_with("net.") {
        return Ok(Scope::Net);
    }
    if key == "kernel.domainname" {
        return Ok(Scope::Uts);
    }
    if key == "kernel.hostname" {
        return Ok(Scope::Hostname);
    }
    if key.starts_with("user.") {
        return Ok(Scope::User);
    }
    Err("not in a namespace of the container: writing it would change the host's value".into())
}

/// Whether the container's network namespace is its own: a new one, or one joined by path
/// that is not the runtime's (runc's isHostNetNS: "host" means the current one).
fn own_net(ns: &NsPlan) -> Result<bool, String> {
    if ns.clone_flags.contains(CloneFlags::CLONE_NEWNET)
        || ns.unshare_flags.contains(CloneFlags::CLONE_NEWNET)
    {
        return Ok(true);
    }
    let Some(join) = ns.joins.iter().find(|j| j.flag == CloneFlags::CLONE_NEWNET) else {
        return Ok(false);
    };
    let joined = fstat(&join.fd).map_err(|e| format!("{}: fstat: {e}", join.field))?;
    let own = stat("/proc/self/ns/net").map_err(|e| format!("stat /proc/self/ns/net: {e}"))?;
    Ok((joined.st_dev, joined.st_ino) != (own.st_dev, own.st_ino))
}

/// Check every key against the planned namespaces. Errors are `(field, reason)`.
pub fn validate(
    sysctl: &HashMap<String, String>,
    ns: &NsPlan,
) -> std::result::Result<(), (String, String)> {
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    for key in keys {
        let field = format!("linux.sysctl.{}", text::plain(key));
        let refuse = |reason: &str| Err((field.clone(), reason.to_string()));
        match scope(key).map_err(|r| (field.clone(), r))? {
            Scope::Ipc if !ns.has(CloneFlags::CLONE_NEWIPC) => {
                return refuse(
                    "an ipc namespace sysctl, and the container shares the host's ipc namespace \
                     (add {\"type\": \"ipc\"} to linux.namespaces)",
                )
            }
            Scope::Net if !own_net(ns).map_err(|r| (field.clone(), r))? => {
                return refuse(
                    "a network namespace sysctl, and the container uses the host's network \
                     namespace (add {\"type\": \"network\"} to linux.namespaces)",
                )
            }
            Scope::Uts | Scope::Hostname if !ns.has(CloneFlags::CLONE_NEWUTS) => {
                return refuse(
                    "a uts namespace sysctl, and the container shares the host's uts namespace \
                     (add {\"type\": \"uts\"} to linux.namespaces)",
                )
            }
            // runc refuses it even in the container's own uts namespace.
            Scope::Hostname => {
                return refuse("conflicts with the hostname field: set hostname instead")
            }
            Scope::User if !ns.in_user_ns() => {
                return refuse(
                    "a user namespace sysctl, and the container runs in the host's user \
                     namespace (add {\"type\": \"user\"} to linux.namespaces)",
                )
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespaces;
    use oci_spec::runtime::Linux;

    fn plan(namespaces: &str) -> NsPlan {
        let l: Linux = serde_json::from_str(&format!(
            r#"{{"namespaces":[{{"type":"mount"}},{namespaces}]}}"#
        ))
        .unwrap();
        namespaces::plan(Some(&l)).unwrap()
    }

    fn check(key: &str, ns: &NsPlan) -> Result<(), (String, String)> {
        validate(&HashMap::from([(key.to_string(), "1".to_string())]), ns)
    }

    #[test]
    fn host_wide_sysctls_are_refused_whatever_the_namespaces() {
        let all = plan(r#"{"type":"ipc"},{"type":"uts"},{"type":"network"},{"type":"pid"}"#);
        for key in [
            "kernel.printk_ratelimit",
            "kernel.core_pattern",
            "vm.overcommit_memory",
            "kernel/core_pattern",
            "fs.file-max",
            "kernel.shm_next_id_x",
            "kernel.hostname",
            ".kernel.core_pattern",
            "net",
            "fs.mqueue.",
        ] {
            let (field, reason) = check(key, &all).unwrap_err();
            assert_eq!(field, format!("linux.sysctl.{key}"));
            assert!(!reason.contains('\n'), "{reason}");
        }
    }

    #[test]
    fn namespaced_sysctls_need_their_namespace() {
        let none = plan(r#"{"type":"pid"}"#);
        let ipc = plan(r#"{"type":"ipc"}"#);
        let net = plan(r#"{"type":"network"}"#);
        let uts = plan(r#"{"type":"uts"}"#);
        for key in [
            "kernel.shmmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "kernel/msgmax",
        ] {
            assert!(check(key, &ipc).is_ok(), "{key}");
            assert!(check(key, &none).unwrap_err().1.contains("ipc"), "{key}");
            assert!(check(key, &net).is_err(), "{key}");
        }
        for key in [
            "net.ipv4.ip_forward",
            "net/ipv4/conf/eno2.100/rp_filter",
            "net.core.somaxconn",
        ] {
            assert!(check(key, &net).is_ok(), "{key}");
            assert!(
                check(key, &none).unwrap_err().1.contains("network"),
                "{key}"
            );
        }
        assert!(check("kernel.domainname", &uts).is_ok());
        assert!(check("kernel.hostname", &uts)
            .unwrap_err()
            .1
            .contains("hostname field"));
        assert!(check("kernel.hostname", &none)
            .unwrap_err()
            .1
            .contains("uts namespace"));
        assert!(check("kernel.domainname", &none).is_err());
        assert!(check("user.max_user_namespaces", &none).is_err());
    }

    #[test]
    fn a_joined_network_namespace_counts_unless_it_is_the_runtimes() {
        let host = plan(r#"{"type":"network","path":"/proc/self/ns/net"}"#);
        let (field, reason) = check("net.ipv4.ip_forward", &host).unwrap_err();
        assert_eq!(field, "linux.sysctl.net.ipv4.ip_forward");
        assert!(reason.contains("host's network namespace"), "{reason}");
        // A joined ipc namespace counts as the container's, as in runc.
        let ipc = plan(r#"{"type":"ipc","path":"/proc/self/ns/ipc"}"#);
        assert!(check("kernel.shmmax", &ipc).is_ok());
    }

    #[test]
    fn slash_separated_keys_normalize_like_sysctl8() {
        assert_eq!(
            dotted("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(dotted("net.ipv4.ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(dotted("kernel/shmmax"), "kernel.shmmax");
    }
}
