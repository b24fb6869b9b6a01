//! What a microVM's state keeps after `create`, for the verbs that come later and for
//! `state`'s `isobox` object.

use std::path::PathBuf;

use isobox_common::state::ProcessRef;
use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};

use crate::hypervisor::{Accelerator, Hypervisor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmRecord {
    pub hypervisor: Hypervisor,
    pub accelerator: Accelerator,
    pub kernel: PathBuf,
    pub vcpus: u32,
    pub mem_mib: u64,
    pub console_log: PathBuf,
    pub initramfs_bytes: u64,
    /// qemu, a process of its own; None for the built-in VMM, which is the host process.
    pub hypervisor_process: Option<ProcessRef>,
    /// config.json has no process: the VM can be created but not started.
    pub no_process: bool,
    /// The bundle's hooks, run on the host at `start` and `delete` too.
    pub hooks: Option<Hooks>,
}
