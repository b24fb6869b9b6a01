//! One row of the comparison: what was measured for one runtime. The JSON output is this
//! structure serialized as it is.

use serde::Serialize;

use super::measure::Stats;

/// A figure that was taken, or the reason it could not be.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Measured<T> {
    Value(T),
    /// Serialized as the string "n/a: <reason>".
    NotAvailable(String),
}

impl<T> Measured<T> {
    pub fn na(reason: impl Into<String>) -> Self {
        Measured::NotAvailable(format!("n/a: {}", reason.into()))
    }
}

impl<T> Default for Measured<T> {
    fn default() -> Self {
        Measured::na("not measured")
    }
}

/// One part of what a runtime needs on disk beyond the bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskPart {
    pub what: String,
    pub path: String,
    pub bytes: u64,
}

/// What the isolation probe (inside) and strace (outside) showed for one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Isolation {
    /// The workload saw the host's boot id: it runs on the host kernel.
    pub shared_kernel: Option<bool>,
    /// The workload could see host processes (pid 1 is the host's init, or many pids).
    pub host_pids_visible: Option<bool>,
    /// Effective capabilities of the workload: how many.
    pub capabilities: Option<u32>,
    /// Their names, when the probe gave them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capability_names: Vec<String>,
    /// Seccomp mode of the workload: "disabled", "strict" or "filter".
    pub seccomp: Option<String>,
    /// How many syscalls the probe could reach (not refused with ENOSYS/EPERM by a filter).
    pub syscalls_reachable: Option<u64>,
    /// Distinct syscalls the runtime and its workload made on the host kernel during one run.
    pub host_syscalls: Measured<u64>,
    /// Why the probe gave nothing, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_error: Option<String>,
}

/// One host process of a microVM (VM host, VMM, file server) and what a guest that escapes
/// into it would hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostProcess {
    pub name: String,
    /// "disabled", "strict" or "filter".
    pub seccomp: String,
    pub no_new_privs: bool,
    /// How many capabilities are effective, and how many the bounding set still allows.
    pub capabilities: u32,
    pub bounding_capabilities: u32,
    /// Namespace kinds it does not share with the host ("ipc", "mnt", "net", …).
    pub own_namespaces: Vec<String>,
}

impl From<&isobox_common::proc::Confinement> for HostProcess {
    fn from(c: &isobox_common::proc::Confinement) -> HostProcess {
        HostProcess {
            name: c.name.clone(),
            seccomp: c
                .seccomp
                .map_or("unknown", |m| super::isolation::seccomp_name(m.into()))
                .to_string(),
            no_new_privs: c.no_new_privs,
            capabilities: c.effective.count_ones(),
            bounding_capabilities: c.bounding.count_ones(),
            own_namespaces: c.own_namespaces.clone(),
        }
    }
}

impl HostProcess {
    /// "qemu-system-x86: seccomp filter, no_new_privs, 0 capabilities (0 bounding), own ipc mnt"
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("seccomp {}", self.seccomp)];
        if self.no_new_privs {
            parts.push("no_new_privs".into());
        }
        parts.push(format!(
            "{} capabilities ({} bounding)",
            self.capabilities, self.bounding_capabilities
        ));
        parts.push(if self.own_namespaces.is_empty() {
            "the host's namespaces".into()
        } else {
            format!("own {}", self.own_namespaces.join(" "))
        });
        format!("{}: {}", self.name, parts.join(", "))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// "isobox", "runc", "crun", "host".
    pub runtime: String,
    /// "container", "microvm", or "none" for the bare host process.
    pub backend: String,
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The runtime's binary on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Wall time of a run whose workload exits at once (/bin/true).
    pub startup_ms: Option<Stats>,
    /// Time to the first byte the workload (`echo ready`) printed.
    pub first_output_ms: Option<Stats>,
    /// Median startup over runc's median startup.
    pub ratio_to_runc: Option<f64>,
    /// Largest peak RSS seen over the startup runs (see `Row` docs in the report).
    pub peak_rss_bytes: Option<u64>,
    /// microVM: the most its host processes held beyond the guest's RAM (the VMM's own cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmm_overhead_rss_bytes: Option<u64>,
    /// microVM: each host process of the VM and how it is confined.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_processes: Vec<HostProcess>,
    /// Bytes needed beyond the bundle: the sum of `disk`.
    pub disk_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disk: Vec<DiskPart>,
    pub isolation: Isolation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    /// What the difference to the others buys or costs, in one line.
    pub explanation: String,
    /// Runs made (warm-up, startup and first output) and how many of them failed.
    pub runs: usize,
    pub failed_runs: usize,
    /// The error of the first failed run, as the runtime printed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

impl Row {
    /// "2/21" failed of made runs, for the table and the report.
    pub fn failed_cell(&self) -> String {
        format!("{}/{}", self.failed_runs, self.runs)
    }
}

impl Row {
    /// "isobox/container", "runc", "host".
    pub fn label(&self) -> String {
        if self.runtime == "isobox" {
            format!("{}/{}", self.runtime, self.backend)
        } else {
            self.runtime.clone()
        }
    }

    /// The label with the hypervisor and accelerator that ran it, which tell two microVM rows
    /// apart (the built-in VMM and qemu on the same host).
    pub fn full_label(&self) -> String {
        match (&self.hypervisor, &self.accelerator) {
            (Some(h), Some(a)) => format!("{} ({h}, {a})", self.label()),
            (None, Some(a)) | (Some(a), None) => format!("{} ({a})", self.label()),
            _ => self.label(),
        }
    }
}
