//! The OCI features document (`isobox features`). Each backend describes what it applies in a
//! [`Support`] taken from the tables and checks it validates bundles with; the parts both
//! share (hooks, seccomp, versions) come from the shared modules here.

use oci_spec::runtime::LinuxNamespaceType;
use serde_json::{json, Value};

use crate::{caps, seccomp, BackendKind};

/// The hooks both backends run (runtime-spec lifecycle names).
pub const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// What one backend applies of a bundle.
#[derive(Debug, Clone)]
pub struct Support {
    pub kind: BackendKind,
    /// Mount options its mounts honour.
    pub mount_options: Vec<String>,
    /// Namespace types it makes a new one of.
    pub namespaces: Vec<LinuxNamespaceType>,
    /// Whether it applies `process.capabilities` (then every name [`caps::ALL`] knows).
    pub capabilities: bool,
    pub cgroup_v1: bool,
    pub cgroup_v2: bool,
    pub rdma: bool,
    /// Annotations of its own (`io.isobox.*`) beside the backend's name.
    pub annotations: Vec<(&'static str, String)>,
}

/// The features document of `support`.
pub fn document(support: &Support) -> Value {
    let mut annotations = json!({
        "io.isobox.backend": support.kind.as_str(),
        "io.isobox.backends": "container,microvm",
    });
    for (key, value) in &support.annotations {
        annotations[*key] = json!(value);
    }
    let capabilities: Vec<String> = if support.capabilities {
        caps::ALL.iter().map(|c| caps::name(*c)).collect()
    } else {
        Vec::new()
    };
    let mut sec = serde_json::to_value(seccomp::support()).expect("seccomp support serializes");
    sec["enabled"] = json!(true);
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": support.mount_options,
        "linux": {
            // Serde's names are config.json's ("network"); Display's are /proc's ("net").
            "namespaces": support.namespaces,
            "capabilities": capabilities,
            "cgroup": {
                "v1": support.cgroup_v1, "v2": support.cgroup_v2, "systemd": false,
                "systemdUser": false, "rdma": support.rdma
            },
            "seccomp": sec,
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": annotations
    })
}
