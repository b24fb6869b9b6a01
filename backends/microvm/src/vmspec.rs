//! What a bundle asks of a VM: the workload for the agent, and the vCPUs and memory.

use isobox_common::protocol::{ExecRequest, GuestLimits, Rlimit, SeccompProgram, WindowSize};
use isobox_common::Bundle;
use oci_spec::runtime::Process;

/// Memory when config.json sets no limit.
pub const DEFAULT_MEM_MIB: u64 = 256;
/// Smallest guest RAM: Debian's cloud kernel with the agent's initramfs boots in 80 MiB, not
/// in 64 (it runs out of memory setting up tracefs). A smaller memory limit still holds: the
/// guest's cgroup applies it (see [`guest_limits`]).
pub const MIN_MEM_MIB: u64 = 96;

/// The agent's Exec request for the bundle's process and hostname; None without a process.
pub fn exec_request(bundle: &Bundle) -> Option<ExecRequest> {
    let mut r = process_request(bundle.process()?);
    r.hostname = bundle.spec.hostname().clone();
    r.limits = guest_limits(bundle).map(Box::new);
    Some(r)
}

/// The limits of `linux.resources` the guest's cgroup applies (zero means unset, as in
/// runc); None when there are none.
pub fn guest_limits(bundle: &Bundle) -> Option<GuestLimits> {
    let res = bundle.spec.linux().as_ref()?.resources().as_ref()?;
    let positive = |v: Option<i64>| v.filter(|n| *n > 0);
    let cpu = res.cpu().as_ref();
    let l = GuestLimits {
        pids_max: res.pids().as_ref().and_then(|p| positive(Some(p.limit()))),
        memory_max: positive(res.memory().as_ref().and_then(|m| m.limit())),
        cpu_quota: positive(cpu.and_then(|c| c.quota())),
        cpu_period: cpu.and_then(|c| c.period()).filter(|p| *p > 0),
    };
    (l != GuestLimits::default()).then_some(l)
}

/// The agent's request for one OCI process, the workload's or an exec's (the same fields
/// are applied to both, by the same code in the guest). A terminal starts at
/// `process.consoleSize` when it is given.
pub fn process_request(p: &Process) -> ExecRequest {
    let user = p.user();
    let clamp = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
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
        hostname: None,
        seccomp: None,
        terminal: (p.terminal() == Some(true)).then(|| {
            p.console_size()
                .as_ref()
                .map(|b| WindowSize {
                    rows: clamp(b.height()),
                    cols: clamp(b.width()),
                })
                .unwrap_or_default()
        }),
        // Every number the OCI names reach; the agent keeps those its kernel knows.
        capabilities: p.capabilities().as_ref().map(|c| {
            Box::new(isobox_common::caps::CapMasks::from_spec(
                c,
                isobox_common::caps::MAX_CAP,
            ))
        }),
        no_new_privileges: p.no_new_privileges() == Some(true),
        limits: None,
    }
}

/// The bundle's `linux.seccomp` compiled for the agent; errors are (field, reason).
pub fn seccomp(bundle: &Bundle) -> Result<Option<SeccompProgram>, isobox_common::seccomp::Invalid> {
    let profile = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref());
    let Some(profile) = profile else {
        return Ok(None);
    };
    let prog = isobox_common::seccomp::compile(profile)?;
    Ok(Some(SeccompProgram::from(&prog)))
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
        // Saturated, not truncated: a quota of 2^32 + 2 periods is not 2 vCPUs.
        (Some(q), Some(p)) if q > 0 && p > 0 => {
            u32::try_from((q as u64).div_ceil(p).max(1)).unwrap_or(u32::MAX)
        }
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

/// Most vCPUs a VM gets (the built-in VMM's limit; qemu's microvm machine takes no more).
pub const MAX_VCPUS: u32 = 255;

/// What the VM cannot honour, checked before anything is built; errors are (field, reason).
pub fn validate(bundle: &Bundle) -> Result<(), (String, String)> {
    let n = vcpus(bundle);
    if n > MAX_VCPUS {
        let cpus_set = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.cpu().as_ref())
            .is_some_and(|c| c.cpus().is_some());
        let field = if cpus_set {
            "linux.resources.cpu.cpus"
        } else {
            "linux.resources.cpu.quota"
        };
        return Err((
            field.into(),
            format!("asks for {n} vCPUs, a microVM has at most {MAX_VCPUS}"),
        ));
    }
    let rlimits = bundle.process().and_then(|p| p.rlimits().as_ref());
    for (i, r) in rlimits.into_iter().flatten().enumerate() {
        if r.soft() > r.hard() {
            return Err((
                format!("process.rlimits[{i}]"),
                format!(
                    "{}: soft limit {} is above hard limit {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(linux: serde_json::Value) -> (tempfile::TempDir, Bundle) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rootfs/bin")).unwrap();
        std::fs::copy("/bin/sh", dir.path().join("rootfs/bin/sh")).unwrap();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "user": {"uid": 5, "gid": 6, "additionalGids": [7], "umask": 18},
                "args": ["/bin/sh", "-c", "true"],
                "env": ["A=1"],
                "cwd": "/w",
                "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]
            },
            "root": {"path": "rootfs"},
            "linux": linux
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let b = Bundle::load(dir.path()).unwrap();
        (dir, b)
    }

    #[test]
    fn exec_request_carries_the_process() {
        let (_d, b) = bundle(serde_json::json!({}));
        let r = exec_request(&b).unwrap();
        assert_eq!(r.args, vec!["/bin/sh", "-c", "true"]);
        assert_eq!((r.uid, r.gid, r.additional_gids.clone()), (5, 6, vec![7]));
        assert_eq!((r.umask, r.cwd.as_str()), (Some(18), "/w"));
        assert_eq!(r.rlimits[0].kind, "RLIMIT_NOFILE");
        assert_eq!((r.rlimits[0].soft, r.rlimits[0].hard), (10, 20));
        assert_eq!((vcpus(&b), mem_mib(&b)), (1, DEFAULT_MEM_MIB));
    }

    #[test]
    fn a_terminal_starts_at_the_console_size() {
        let (_d, b) = bundle(serde_json::json!({}));
        let mut p = b.process().unwrap().clone();
        assert_eq!(process_request(&p).terminal, None);
        p.set_terminal(Some(true));
        assert_eq!(process_request(&p).terminal, Some(WindowSize::default()));
        p.set_console_size(Some(
            oci_spec::runtime::BoxBuilder::default()
                .height(30u64)
                .width(1u64 << 20)
                .build()
                .unwrap(),
        ));
        let size = process_request(&p).terminal.unwrap();
        assert_eq!((size.rows, size.cols), (30, u16::MAX));
        // Only the workload's request carries the hostname.
        assert_eq!(process_request(&p).hostname, None);
    }

    #[test]
    fn a_quota_of_more_vcpus_than_u32_holds_is_refused() {
        let cpu = |quota: i64| serde_json::json!({"resources": {"cpu": {"quota": quota, "period": 1000}}});
        let (_d, b) = bundle(cpu(4000));
        assert_eq!(vcpus(&b), 4);
        // (2^32 + 2) periods: `as u32` made this 2 vCPUs, and validate let it through.
        let (_d, b) = bundle(cpu(((1i64 << 32) + 2) * 1000));
        assert_eq!(vcpus(&b), u32::MAX);
        let (field, reason) = validate(&b).unwrap_err();
        assert_eq!(field, "linux.resources.cpu.quota");
        assert!(reason.contains("at most 255"), "{reason}");
    }

    #[test]
    fn no_process_means_no_exec_request() {
        let (d, _) = bundle(serde_json::json!({}));
        let path = d.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config.as_object_mut().unwrap().remove("process");
        std::fs::write(&path, config.to_string()).unwrap();
        let b = Bundle::load(d.path()).unwrap();
        assert_eq!(exec_request(&b), None);
    }

    #[test]
    fn seccomp_is_compiled_for_the_agent_or_names_the_field() {
        let (_d, b) = bundle(serde_json::json!({}));
        assert_eq!(seccomp(&b).unwrap(), None);
        let (_d, b) = bundle(serde_json::json!({"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        }}));
        let p = seccomp(&b).unwrap().unwrap();
        assert_eq!(p.flags, 2);
        // The last instruction returns the default action: RET_K with SECCOMP_RET_ALLOW.
        assert_eq!(p.filter.last(), Some(&(0x7fff_0000u64 << 32 | 0x06)));
        let (_d, b) = bundle(serde_json::json!({"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
        }}));
        assert_eq!(
            seccomp(&b).unwrap_err().0,
            "linux.seccomp.syscalls[0].action"
        );
    }

    #[test]
    fn vcpus_and_memory_follow_the_resources() {
        let (_d, b) = bundle(serde_json::json!({"resources": {
            "cpu": {"quota": 150000, "period": 100000},
            "memory": {"limit": 300 * 1024 * 1024 + 1}
        }}));
        assert_eq!((vcpus(&b), mem_mib(&b)), (2, 301));
        let (_d, b) = bundle(serde_json::json!({"resources": {
            "cpu": {"cpus": "0-2,5"},
            "memory": {"limit": 1024}
        }}));
        assert_eq!((vcpus(&b), mem_mib(&b)), (4, MIN_MEM_MIB));
    }
}
