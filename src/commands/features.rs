//! `isobox features`: the OCI runtime features document of one backend (the flag's, else
//! the default `create` would use without an annotation), listing what that backend
//! applies, not what the schema allows.

use anyhow::Result;
use isobox_common::BackendKind;
use serde_json::{json, Value};

pub fn print(flag: Option<BackendKind>) -> Result<()> {
    let kind = match flag {
        Some(kind) => kind,
        None => {
            let env = std::env::var(isobox_common::backend::BACKEND_ENV).ok();
            BackendKind::host_default(crate::program_name().as_deref(), env.as_deref())?
        }
    };
    println!("{}", serde_json::to_string_pretty(&document(kind))?);
    Ok(())
}

/// What `kind` does with a bundle. The microVM runs the process (user, rlimits, seccomp,
/// terminal) in its own kernel, shares the rootfs and bind mounts with it (qemu), runs the
/// hooks on the host, and sizes the VM from the resources; the options of other mounts,
/// namespaces, capabilities and cgroups are the container backend's alone.
fn document(kind: BackendKind) -> Value {
    let container = kind == BackendKind::Container;
    let when = |v: Value| if container { v } else { json!([]) };
    let mut annotations = json!({
        "io.isobox.backend": kind.as_str(),
        "io.isobox.backends": "container,microvm",
    });
    if !container {
        annotations["io.isobox.hypervisors"] = json!("builtin,qemu");
    }
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": isobox_common::OCI_VERSION,
        "hooks": [
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
            "poststop"
        ],
        "mountOptions": when(json!(isobox_common::mount_opts::applied())),
        "linux": {
            // A new time namespace is refused; one can be joined by path.
            "namespaces": when(json!(["cgroup", "ipc", "mount", "network", "pid", "user", "uts"])),
            "capabilities": when(json!(all_capabilities())),
            "cgroup": {
                "v1": container, "v2": container, "systemd": false, "systemdUser": false,
                "rdma": container
            },
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "knownFlags": [
                    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
                ],
                "supportedFlags": [
                    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                    "SECCOMP_FILTER_FLAG_TSYNC"
                ]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": annotations
    })
}

fn all_capabilities() -> Vec<&'static str> {
    vec![
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_lists_what_it_applies() {
        let doc = document(BackendKind::Container);
        assert_eq!(doc["annotations"]["io.isobox.backend"], "container");
        let opts: Vec<&str> = doc["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for opt in &opts {
            isobox_common::mount_opts::parse(&[opt]).unwrap();
        }
        assert!(
            opts.contains(&"rbind") && !opts.contains(&"idmap"),
            "{opts:?}"
        );
        assert_eq!(doc["hooks"].as_array().unwrap().len(), 6);
        assert_eq!(doc["linux"]["cgroup"]["v1"], true);
        assert_eq!(doc["linux"]["capabilities"].as_array().unwrap().len(), 41);
    }

    #[test]
    fn the_microvm_claims_hooks_but_no_mount_options_namespaces_or_cgroups() {
        let doc = document(BackendKind::Microvm);
        assert_eq!(doc["annotations"]["io.isobox.backend"], "microvm");
        assert_eq!(doc["hooks"].as_array().unwrap().len(), 6);
        for field in ["/mountOptions", "/linux/namespaces", "/linux/capabilities"] {
            assert_eq!(doc.pointer(field).unwrap(), &json!([]), "{field}");
        }
        assert_eq!(doc["linux"]["cgroup"]["v1"], false);
        assert_eq!(doc["linux"]["cgroup"]["v2"], false);
        assert_eq!(doc["linux"]["seccomp"]["enabled"], true);
    }
}
