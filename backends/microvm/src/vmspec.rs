//! What a bundle asks of a VM: the workload for the agent, and the vCPUs and memory.

use isobox_common::protocol::{ExecRequest, Rlimit};
use isobox_common::Bundle;

/// Memory when config.json sets no limit.
pub const DEFAULT_MEM_MIB: u64 = 256;
/// Smallest guest that boots the kernel and a small initramfs.
pub const MIN_MEM_MIB: u64 = 64;

/// The agent's Exec request for the bundle's process and hostname.
pub fn exec_request(bundle: &Bundle) -> ExecRequest {
    let p = bundle.process();
    let user = p.user();
    ExecRequest {
        args: p.args().clone().unwrap_or_default(),
        env: p.env().clone().unwrap_or_default(),
        cwd: p.cwd().to_string_lossy().into_owned(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        rlimits: p
            .rlimits()
            .as_ref()
            .map(|v| {
                v.iter()
                    .map(|r| Rlimit {
                        kind: r.typ().to_string(),
                        soft: r.soft(),
                        hard: r.hard(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        hostname: bundle.spec.hostname().clone(),
    }
}

/// vCPUs: the cpuset's size, else ceil(quota/period), else 1.
pub fn vcpus(bundle: &Bundle) -> u32 {
    let cpu = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.cpu().as_ref());
    let Some(cpu) = cpu else { return 1 };
    if let Some(list) = cpu.cpus() {
        if let Ok(ids) = isobox_common::bundle::parse_cpu_list(list) {
            if !ids.is_empty() {
                return ids.len() as u32;
            }
        }
    }
    match (cpu.quota(), cpu.period()) {
        (Some(q), Some(p)) if q > 0 && p > 0 => (q as u64).div_ceil(p).max(1) as u32,
        _ => 1,
    }
}

/// Guest RAM in MiB: the memory limit rounded up, at least [`MIN_MEM_MIB`], else the default.
pub fn mem_mib(bundle: &Bundle) -> u64 {
    bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| (l as u64).div_ceil(1 << 20).max(MIN_MEM_MIB))
        .unwrap_or(DEFAULT_MEM_MIB)
}
