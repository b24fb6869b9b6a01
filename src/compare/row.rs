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
