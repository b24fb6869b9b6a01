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
        memory_low: positive(res.memory().as_ref().and_then(|m| m.reservation())),
        cpu_weight: cpu
            .and_then(|c| c.shares())
            .filter(|s| *s > 0)
            .map(shares_to_weight),
    };
    (l != GuestLimits::default()).then_some(l)
}

/// cgroup v1 `cpu.shares` (2..262144) as cgroup2 `cpu.weight` (1..10000), as runc converts.
fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
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
        // Checked by `validate_process` before any request is made.
        ioprio: p
            .io_priority()
            .as_ref()
            .and_then(|io| isobox_common::ioprio::value(io).ok()),
        oom_score_adj: p.oom_score_adj(),
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
    if let Some(p) = bundle.process() {
        validate_process(p, "process.")?;
    }
    if let Some(linux) = bundle.spec.linux() {
        validate_linux(linux)?;
    }
    Ok(())
}

fn refuse(field: &str, reason: &str) -> Result<(), (String, String)> {
    Err((field.into(), reason.into()))
}

/// What of a process spec the agent cannot apply (`prefix` is "process." in config.json and
/// empty in an exec's process file); errors are (field, reason).
pub fn validate_process(p: &Process, prefix: &str) -> Result<(), (String, String)> {
    let field = |f: &str| format!("{prefix}{f}");
    for (value, name) in [
        (p.apparmor_profile(), "apparmorProfile"),
        (p.selinux_label(), "selinuxLabel"),
    ] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            return refuse(
                &field(name),
                "a microVM's guest kernel has no host security module profiles",
            );
        }
    }
    if p.scheduler().is_some() {
        return refuse(&field("scheduler"), "not supported by the microVM backend");
    }
    if p.exec_cpu_affinity().is_some() {
        return refuse(
            &field("execCPUAffinity"),
            "not supported by the microVM backend (the guest's CPUs are its vCPUs)",
        );
    }
    if let Some(io) = p.io_priority() {
        isobox_common::ioprio::value(io)
            .map_err(|(f, r)| (field(f.trim_start_matches("process.")), r))?;
    }
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        if r.soft() > r.hard() {
            return Err((
                field(&format!("rlimits[{i}]")),
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

/// What of `linux` a VM cannot honour. Zero values mean unset, as in runc (engines write
/// `blockIO.weight: 0` and `cpu.shares: 0`). `memory.swap` and `swappiness` hold as they
/// are: the guest has no swap. `resources.devices` is not here: the workload's /dev holds only the nodes
/// the bundle lists.
fn validate_linux(linux: &oci_spec::runtime::Linux) -> Result<(), (String, String)> {
    let unsupported = "not supported by the microVM backend";
    if linux.intel_rdt().is_some() {
        return refuse("linux.intelRdt", unsupported);
    }
    if linux.memory_policy().is_some() {
        return refuse("linux.memoryPolicy", unsupported);
    }
    if linux.personality().is_some() {
        return refuse("linux.personality", unsupported);
    }
    if linux
        .mount_label()
        .as_deref()
        .is_some_and(|l| !l.is_empty())
    {
        return refuse(
            "linux.mountLabel",
            "a microVM's guest kernel has no SELinux",
        );
    }
    for (maps, name) in [
        (
            linux.uid_mappings().as_ref().map(Vec::len),
            "linux.uidMappings",
        ),
        (
            linux.gid_mappings().as_ref().map(Vec::len),
            "linux.gidMappings",
        ),
    ] {
        if maps.unwrap_or(0) > 0 {
            return refuse(
                name,
                "a microVM does not map ids: what the guest's root writes to a share is \
                 owned by the host's root",
            );
        }
    }
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        // The network namespace is the VM's (its host process lives there); the others
        // would be the guest kernel's, which has none of the host's.
        if ns.path().is_some() && ns.typ() != oci_spec::runtime::LinuxNamespaceType::Network {
            return refuse(
                &format!("linux.namespaces[{i}].path"),
                "a microVM's workload runs on the guest's kernel: it cannot join a host \
                 namespace (only a network namespace, whose interfaces the VM takes over)",
            );
        }
    }
    if !namespaces
        .iter()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
    {
        return refuse(
            "linux.namespaces",
            "no network namespace: a microVM cannot share the host's network (its guest \
             kernel has a network stack of its own); add {\"type\": \"network\"}",
        );
    }
    let Some(res) = linux.resources() else {
        return Ok(());
    };
    let set = |v: Option<i64>| v.is_some_and(|n| n != 0);
    let nonempty = |n: Option<usize>| n.unwrap_or(0) > 0;
    let mut fields: Vec<(bool, &str)> = vec![
        (
            nonempty(res.hugepage_limits().as_ref().map(Vec::len)),
            "linux.resources.hugepageLimits",
        ),
        (
            nonempty(res.rdma().as_ref().map(|m| m.len())),
            "linux.resources.rdma",
        ),
        (
            nonempty(res.unified().as_ref().map(|m| m.len())),
            "linux.resources.unified",
        ),
        (
            res.network().as_ref().is_some_and(|n| {
                n.class_id().is_some() || nonempty(n.priorities().as_ref().map(Vec::len))
            }),
            "linux.resources.network",
        ),
    ];
    if let Some(b) = res.block_io() {
        fields.push((
            b.weight().is_some_and(|w| w != 0)
                || b.leaf_weight().is_some_and(|w| w != 0)
                || nonempty(b.weight_device().as_ref().map(Vec::len))
                || nonempty(b.throttle_read_bps_device().as_ref().map(Vec::len))
                || nonempty(b.throttle_write_bps_device().as_ref().map(Vec::len))
                || nonempty(b.throttle_read_iops_device().as_ref().map(Vec::len))
                || nonempty(b.throttle_write_iops_device().as_ref().map(Vec::len)),
            "linux.resources.blockIO",
        ));
    }
    if let Some(m) = res.memory() {
        fields.extend([
            (set(m.kernel()), "linux.resources.memory.kernel"),
            (set(m.kernel_tcp()), "linux.resources.memory.kernelTCP"),
            (
                m.disable_oom_killer() == Some(true),
                "linux.resources.memory.disableOOMKiller",
            ),
        ]);
    }
    if let Some(c) = res.cpu() {
        fields.extend([
            (
                set(c.realtime_runtime()),
                "linux.resources.cpu.realtimeRuntime",
            ),
            (
                c.realtime_period().is_some_and(|p| p != 0),
                "linux.resources.cpu.realtimePeriod",
            ),
            (
                c.mems()
                    .as_deref()
                    .is_some_and(|m| !m.is_empty() && m != "0"),
                "linux.resources.cpu.mems",
            ),
            (c.idle().is_some_and(|i| i != 0), "linux.resources.cpu.idle"),
            (
                c.burst().is_some_and(|b| b != 0),
                "linux.resources.cpu.burst",
            ),
        ]);
    }
    match fields.into_iter().find(|(present, _)| *present) {
        Some((_, field)) => refuse(field, "not applied by the microVM's guest cgroup"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle with these `linux` fields, and a network namespace unless they name others.
    fn bundle(mut linux: serde_json::Value) -> (tempfile::TempDir, Bundle) {
        if linux.get("namespaces").is_none() {
            linux["namespaces"] = serde_json::json!([{"type": "network"}]);
        }
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
    fn what_the_guest_cannot_apply_is_refused_by_field() {
        for (linux, field) in [
            (
                serde_json::json!({"personality": {"domain": "LINUX32"}}),
                "linux.personality",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "network"}, {"type": "ipc", "path": "/proc/self/ns/ipc"}]}),
                "linux.namespaces[1].path",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "pid"}]}),
                "linux.namespaces",
            ),
            (
                serde_json::json!({
                    "namespaces": [{"type": "user"}],
                    "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                    "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
                }),
                "linux.uidMappings",
            ),
            (
                serde_json::json!({"resources": {"blockIO": {"weight": 300}}}),
                "linux.resources.blockIO",
            ),
            (
                serde_json::json!({"resources": {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}}),
                "linux.resources.hugepageLimits",
            ),
            (
                serde_json::json!({"resources": {"cpu": {"mems": "0-1"}}}),
                "linux.resources.cpu.mems",
            ),
            (
                serde_json::json!({"resources": {"memory": {"disableOOMKiller": true}}}),
                "linux.resources.memory.disableOOMKiller",
            ),
        ] {
            let (_d, b) = bundle(linux.clone());
            assert_eq!(validate(&b).unwrap_err().0, field, "{linux}");
        }
        // A network namespace to join is the VM's.
        let (_d, b) = bundle(
            serde_json::json!({"namespaces": [{"type": "network", "path": "/proc/self/ns/net"}]}),
        );
        validate(&b).unwrap();
        // Zeros are unset (engines write them), and so is a single-node cpuset.mems.
        let (_d, b) = bundle(serde_json::json!({"resources": {
            "blockIO": {"weight": 0}, "cpu": {"shares": 0, "mems": "0"}, "memory": {"swap": 1 << 30}
        }}));
        validate(&b).unwrap();
        let mut p = b.process().unwrap().clone();
        p.set_scheduler(Some(
            serde_json::from_value(serde_json::json!({"policy": "SCHED_FIFO"})).unwrap(),
        ));
        assert_eq!(validate_process(&p, "").unwrap_err().0, "scheduler");
    }

    #[test]
    fn reservation_shares_oom_score_and_io_priority_reach_the_agent() {
        let (d, b) = bundle(serde_json::json!({"resources": {
            "memory": {"reservation": 8 << 20}, "cpu": {"shares": 1024}
        }}));
        let l = guest_limits(&b).unwrap();
        // runc's conversion: 1024 shares are weight 39.
        assert_eq!((l.memory_low, l.cpu_weight), (Some(8 << 20), Some(39)));
        let mut p = b.process().unwrap().clone();
        p.set_oom_score_adj(Some(-7));
        p.set_io_priority(Some(
            serde_json::from_value(
                serde_json::json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
            )
            .unwrap(),
        ));
        let r = process_request(&p);
        assert_eq!((r.oom_score_adj, r.ioprio), (Some(-7), Some(3 << 13)));
        p.set_io_priority(Some(
            serde_json::from_value(serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 9}))
                .unwrap(),
        ));
        assert_eq!(
            validate_process(&p, "process.").unwrap_err().0,
            "process.ioPriority.priority"
        );
        drop(d);
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
