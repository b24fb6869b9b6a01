//! `vm.json`: what `create` tells the per-VM host process, and the other files of the state
//! directory the two share.

use std::path::{Path, PathBuf};

use isobox_common::protocol::{ExecRequest, MountRequest};
use serde::{Deserialize, Serialize};

use crate::error::{MicrovmError, Result};
use crate::hypervisor::{Accelerator, Hypervisor};
use crate::network::NetNs;
use crate::virtiofs::Share;

/// File names inside the container's state directory.
pub const CONFIG_FILE: &str = "vm.json";
pub const START_FIFO: &str = "start.fifo";
pub const CONSOLE_LOG: &str = "console.log";
pub const INITRAMFS: &str = "initramfs.cpio";
pub const HYPERVISOR_LOG: &str = "hypervisor.log";
/// The hypervisor process (qemu), as `PID START_TIME`, written by the host process.
pub const HYPERVISOR_PID: &str = "hypervisor.pid";
/// The host process itself, as `PID START_TIME`, written by `create` right after spawning it.
pub const VM_HOST_PID: &str = "vm-host.pid";
/// What the built-in VMM's watchdog saw when the guest stalled (vCPU registers, console tail).
pub const WATCHDOG_LOG: &str = "watchdog.log";
/// The socket `exec` reaches the running VM's host process on (see [`super::control`]).
pub const EXEC_SOCKET: &str = "exec.sock";
/// What the virtiofsd daemons print.
pub const VIRTIOFSD_LOG: &str = "virtiofsd.log";

/// Every file the backend may leave in a state directory (removed on error and on delete).
pub const ALL_FILES: &[&str] = &[
    CONFIG_FILE,
    START_FIFO,
    CONSOLE_LOG,
    INITRAMFS,
    HYPERVISOR_LOG,
    HYPERVISOR_PID,
    VM_HOST_PID,
    WATCHDOG_LOG,
    EXEC_SOCKET,
    VIRTIOFSD_LOG,
];

/// Environment variable carrying the descriptor the host process reports readiness on.
pub const READY_FD_ENV: &str = "ISOBOX_VM_READY_FD";

/// The VM the host process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmHostConfig {
    pub hypervisor: Hypervisor,
    pub accelerator: Accelerator,
    /// The qemu binary (qemu only).
    #[serde(default)]
    pub qemu_binary: Option<PathBuf>,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    pub vcpus: u32,
    pub mem_mib: u64,
    pub console_log: PathBuf,
    /// Size of the initramfs (removed once the guest has it in memory).
    #[serde(default)]
    pub initramfs_bytes: u64,
    /// How long to wait for the agent's Hello.
    pub hello_timeout_secs: u64,
    /// The workload; None when config.json has no process (`start` is refused then).
    #[serde(default)]
    pub exec: Option<ExecRequest>,
    /// The host directories served by virtio-fs (the rootfs first); empty when the rootfs is
    /// packed into the initramfs instead.
    #[serde(default)]
    pub shares: Vec<Share>,
    /// The virtiofsd binary, with shares.
    #[serde(default)]
    pub virtiofsd: Option<PathBuf>,
    /// What the agent mounts of them, sent right after Hello.
    #[serde(default)]
    pub mounts: Option<MountRequest>,
    /// The network namespace the host process lives in (None: the bundle has none).
    #[serde(default)]
    pub network: Option<NetNs>,
}

impl VmHostConfig {
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let path = state_dir.join(CONFIG_FILE);
        let body = serde_json::to_vec_pretty(self).map_err(|e| MicrovmError::Io {
            context: format!("encoding {}", path.display()),
            source: e.into(),
        })?;
        std::fs::write(&path, body)
            .map_err(|e| MicrovmError::io(format!("writing {}", path.display()), e))
    }

    pub fn load(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join(CONFIG_FILE);
        let body = std::fs::read(&path)
            .map_err(|e| MicrovmError::io(format!("reading {}", path.display()), e))?;
        serde_json::from_slice(&body).map_err(|e| MicrovmError::Io {
            context: format!("parsing {}", path.display()),
            source: e.into(),
        })
    }
}

/// The last `max_lines` lines of the console log, for error messages.
pub fn console_tail(path: &Path, max_lines: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return format!("(no console log {}: {e})", path.display()),
    };
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return format!("(console log {} is empty)", path.display());
    }
    let start = lines.len().saturating_sub(max_lines);
    format!(
        "last console lines ({}):\n  {}",
        path.display(),
        lines[start..].join("\n  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_console_tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = VmHostConfig {
            hypervisor: Hypervisor::Qemu,
            accelerator: Accelerator::Tcg,
            qemu_binary: Some("/usr/bin/qemu-system-x86_64".into()),
            kernel: "/k".into(),
            initramfs: dir.path().join(INITRAMFS),
            cmdline: "console=ttyS0".into(),
            vcpus: 1,
            mem_mib: 256,
            console_log: dir.path().join(CONSOLE_LOG),
            initramfs_bytes: 1,
            hello_timeout_secs: 60,
            exec: Some(ExecRequest {
                args: vec!["true".into()],
                ..Default::default()
            }),
            shares: vec![Share {
                tag: "isobox0".into(),
                dir: "/b/rootfs".into(),
                readonly: false,
            }],
            virtiofsd: Some("/usr/lib/qemu/virtiofsd".into()),
            mounts: Some(MountRequest {
                root_tag: "isobox0".into(),
                root_readonly: true,
                volumes: vec![],
                masked_paths: vec!["/proc/kcore".into()],
                readonly_paths: vec![],
                sysctl: Default::default(),
                devices: vec![],
                filesystems: vec![],
            }),
            network: Some(NetNs::Join("/run/netns/n1".into())),
        };
        cfg.save(dir.path()).unwrap();
        assert_eq!(VmHostConfig::load(dir.path()).unwrap(), cfg);
        std::fs::write(&cfg.console_log, "a\r\n\nb\nc\nd\n").unwrap();
        let tail = console_tail(&cfg.console_log, 2);
        assert!(tail.ends_with("c\n  d"), "{tail}");
        assert!(console_tail(&dir.path().join("none"), 2).contains("no console log"));
    }
}
