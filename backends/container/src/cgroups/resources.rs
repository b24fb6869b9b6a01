//! OCI linux.resources → the control files to write, for v1 and for v2.
//!
//! Each setting names the OCI field it comes from, so a value the host refuses is reported
//! against the config, not against a file name the user never wrote.

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemory, LinuxResources,
};

use super::emulator::{self, Emulator, Rule};
use crate::error::{ContainerError, Result};

/// Which cgroup version holds a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    V1,
    V2,
}

/// One write to one control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub controller: &'static str,
    /// Candidate files, each with the value it takes: the first that exists is written
    /// (e.g. blkio.bfq.weight or blkio.weight, depending on the I/O scheduler; v2's
    /// io.bfq.weight takes blkio's range, io.weight its own).
    pub choices: Vec<(String, String)>,
    /// The OCI field, e.g. `linux.resources.memory.swap`.
    pub field: String,
}

fn set(controller: &'static str, file: &str, value: impl ToString, field: &str) -> Setting {
    Setting {
        controller,
        choices: vec![(file.to_string(), value.to_string())],
        field: format!("linux.resources.{field}"),
    }
}

fn refuse(field: &str, reason: impl Into<String>) -> ContainerError {
    ContainerError::Resource {
        field: format!("linux.resources.{field}"),
        reason: reason.into(),
    }
}

/// cgroup v1 cpu.shares → v2 cpu.weight, mapping [2, 262144] onto [1, 10000] as runc does.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v1 blkio.weight [10, 1000] → v2 io.weight [1, 10000].
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// OCI memory.swap (memory + swap) → v2 memory.swap.max (swap alone). None: leave it.
pub fn swap_to_v2(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    match swap {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some("max".into())),
        Some(s) if s < -1 => Err(refuse("memory.swap", format!("{s} is negative"))),
        Some(s) => match limit {
            None | Some(0) | Some(-1) => Err(refuse(
                "memory.swap",
                "a memory+swap limit needs a memory limit (linux.resources.memory.limit)",
            )),
            Some(l) if s < l => Err(refuse(
                "memory.swap",
                format!("{s} is memory+swap and must not be below the memory limit {l}"),
            )),
            Some(l) => Ok(Some((s - l).to_string())),
        },
    }
}

/// Every setting for `res`. `flavor(controller)` says which version holds a controller, or
/// why the host has none.
pub(crate) fn settings(
    res: &LinuxResources,
    flavor: &dyn Fn(&str) -> std::result::Result<Flavor, String>,
) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    let need = |controller: &str, field: &str| flavor(controller).map_err(|why| refuse(field, why));
    if let Some(m) = res.memory() {
        if touches_memory(m) {
            let f = need("memory", "memory")?;
            out.extend(memory(m, f)?);
        }
    }
    if let Some(c) = res.cpu() {
        cpu(c, &need, &mut out)?;
    }
    // 0 means "unset" as in runc 1.1 (a 0 limit would stop any fork), below 0 unlimited.
    if let Some(p) = res.pids().as_ref().filter(|p| p.limit() != 0) {
        need("pids", "pids.limit")?;
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        out.push(set("pids", "pids.max", v, "pids.limit"));
    }
    // No rules still means the default deny-all state; only None leaves the devices alone.
    if let Some(rules) = res.devices().as_deref() {
        // On v2 the allowlist is a BPF program the caller attaches, not files.
        if need("devices", "devices")? == Flavor::V1 {
            out.extend(devices_v1(rules)?);
        }
    }
    if let Some(b) = res.block_io().as_ref().filter(|b| block_io_is_set(b)) {
        let f = need("blkio", "blockIO").or_else(|_| need("io", "blockIO"))?;
        out.extend(block_io(b, f)?);
    }
    for h in res.hugepage_limits().iter().flatten() {
        let field = "hugepageLimits";
        let size = h.page_size();
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(refuse(
                field,
                format!("page size {size:?} is not like \"2MB\""),
            ));
        }
        let file = match need("hugetlb", field)? {
            Flavor::V1 => format!("hugetlb.{size}.limit_in_bytes"),
            Flavor::V2 => format!("hugetlb.{size}.max"),
        };
        out.push(set("hugetlb", &file, h.limit(), field));
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            need("net_cls", "network.classID")?;
            out.push(set("net_cls", "net_cls.classid", id, "network.classID"));
        }
        for p in n.priorities().iter().flatten() {
            need("net_prio", "network.priorities")?;
            let v = format!("{} {}", p.name(), p.priority());
            out.push(set(
                "net_prio",
                "net_prio.ifpriomap",
                v,
                "network.priorities",
            ));
        }
    }
    for (dev, limits) in res.rdma().iter().flatten() {
        need("rdma", "rdma")?;
        let mut v = dev.clone();
        if let Some(h) = limits.hca_handles() {
            v += &format!(" hca_handle={h}");
        }
        if let Some(o) = limits.hca_objects() {
            v += &format!(" hca_object={o}");
        }
        out.push(set("rdma", "rdma.max", v, "rdma"));
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<_> = u.keys().collect();
        keys.sort();
        for key in keys {
            let field = format!("unified.{key}");
            let controller = key.split('.').next().unwrap_or_default();
            if key.contains('/') || !key.contains('.') || key.starts_with('.') {
                return Err(refuse(&field, "not a cgroup v2 file name"));
            }
            let controller: &'static str = V2_CONTROLLERS
                .iter()
                .find(|k| **k == controller)
                .copied()
                .ok_or_else(|| {
                    refuse(
                        &field,
                        format!("unknown cgroup v2 controller {controller:?}"),
                    )
                })?;
            // `cgroup` stands for the core files every v2 cgroup has.
            let f = flavor(controller).map_err(|why| refuse(&field, why))?;
            if f == Flavor::V1 {
                return Err(refuse(
                    &field,
                    format!("{controller} is a cgroup v1 controller on this host"),
                ));
            }
            out.push(set(controller, key, &u[key], &field));
        }
    }
    Ok(out)
}

const V2_CONTROLLERS: &[&str] = &[
    "cgroup", "cpu", "cpuset", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

/// Whether `m` asks for anything: as in runc, a 0 limit, an unset (-1) swappiness and
/// `disableOOMKiller: false` ask for nothing.
#[allow(deprecated)] // kernel: obsolete and ignored, but it still says a memory field is set
fn touches_memory(m: &LinuxMemory) -> bool {
    let nonzero = |v: Option<i64>| v.is_some_and(|v| v != 0);
    nonzero(m.limit())
        || nonzero(m.reservation())
        || nonzero(m.swap())
        || nonzero(m.kernel_tcp())
        || swappiness(m).is_some()
        || m.disable_oom_killer() == Some(true)
        || m.use_hierarchy().is_some()
}

/// memory.swappiness; runc reads -1 (u64::MAX in the OCI type) as unset.
fn swappiness(m: &LinuxMemory) -> Option<u64> {
    m.swappiness().filter(|s| *s != u64::MAX)
}

/// 0 means "not set", as in runc: a 0-byte limit would kill the container at once.
fn limit_value(v: Option<i64>, field: &str, max: &str) -> Result<Option<String>> {
    match v {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(max.into())),
        Some(n) if n < 0 => Err(refuse(field, format!("{n} is negative"))),
        Some(n) => Ok(Some(n.to_string())),
    }
}

fn memory(m: &LinuxMemory, f: Flavor) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    let limit = limit_value(m.limit(), "memory.limit", "-1")?;
    let reservation = limit_value(m.reservation(), "memory.reservation", "-1")?;
    // Validates swap against limit for both versions.
    let swap_v2 = swap_to_v2(m.limit(), m.swap())?;
    match f {
        Flavor::V1 => {
            if let Some(v) = limit {
                out.push(set("memory", "memory.limit_in_bytes", v, "memory.limit"));
            }
            // memory.memsw.limit_in_bytes is memory+swap, like the OCI field.
            if let Some(s) = limit_value(m.swap(), "memory.swap", "-1")? {
                out.push(set(
                    "memory",
                    "memory.memsw.limit_in_bytes",
                    s,
                    "memory.swap",
                ));
            }
            if let Some(v) = reservation {
                out.push(set(
                    "memory",
                    "memory.soft_limit_in_bytes",
                    v,
                    "memory.reservation",
                ));
            }
            if let Some(v) = limit_value(m.kernel_tcp(), "memory.kernelTCP", "-1")? {
                out.push(set(
                    "memory",
                    "memory.kmem.tcp.limit_in_bytes",
                    v,
                    "memory.kernelTCP",
                ));
            }
            if let Some(s) = swappiness(m) {
                if s > 100 {
                    return Err(refuse("memory.swappiness", format!("{s} is above 100")));
                }
                out.push(set("memory", "memory.swappiness", s, "memory.swappiness"));
            }
            if m.disable_oom_killer() == Some(true) {
                let field = "memory.disableOOMKiller";
                out.push(set("memory", "memory.oom_control", 1, field));
            }
            if let Some(h) = m.use_hierarchy() {
                out.push(set(
                    "memory",
                    "memory.use_hierarchy",
                    u8::from(h),
                    "memory.useHierarchy",
                ));
            }
        }
        Flavor::V2 => {
            if let Some(v) = limit_value(m.limit(), "memory.limit", "max")? {
                out.push(set("memory", "memory.max", v, "memory.limit"));
            }
            if let Some(v) = swap_v2 {
                out.push(set("memory", "memory.swap.max", v, "memory.swap"));
            }
            if let Some(v) = limit_value(m.reservation(), "memory.reservation", "max")? {
                out.push(set("memory", "memory.low", v, "memory.reservation"));
            }
            let no_v2 = "cgroup v2 has no such setting";
            if m.kernel_tcp().is_some_and(|v| v != 0) {
                return Err(refuse("memory.kernelTCP", no_v2));
            }
            if swappiness(m).is_some() {
                return Err(refuse("memory.swappiness", no_v2));
            }
            if m.disable_oom_killer() == Some(true) {
                return Err(refuse("memory.disableOOMKiller", no_v2));
            }
            if m.use_hierarchy() == Some(false) {
                return Err(refuse(
                    "memory.useHierarchy",
                    "cgroup v2 is always hierarchical",
                ));
            }
        }
    }
    Ok(out)
}

type Need<'a> = dyn Fn(&str, &str) -> Result<Flavor> + 'a;

fn cpu(c: &LinuxCpu, need: &Need<'_>, out: &mut Vec<Setting>) -> Result<()> {
    let quota = match c.quota() {
        None | Some(0) => None,
        Some(q) if q < -1 => return Err(refuse("cpu.quota", format!("{q} is negative"))),
        Some(q) => Some(q),
    };
    // As in runc, 0 is "unset" for shares, quota, period and the realtime pair.
    let period = c.period().filter(|p| *p != 0);
    let shares = c.shares().filter(|s| *s != 0);
    let rt_period = c.realtime_period().filter(|p| *p != 0);
    let rt_runtime = c.realtime_runtime().filter(|r| *r != 0);
    let has_cpu = shares.is_some()
        || quota.is_some()
        || period.is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || rt_runtime.is_some()
        || rt_period.is_some();
    if has_cpu {
        let field = if quota.is_some() {
            "cpu.quota"
        } else {
            "cpu.shares"
        };
        match need("cpu", field)? {
            Flavor::V1 => {
                if let Some(s) = shares {
                    out.push(set("cpu", "cpu.shares", s, "cpu.shares"));
                }
                // The period first: a quota is checked against the current period.
                if let Some(p) = period {
                    out.push(set("cpu", "cpu.cfs_period_us", p, "cpu.period"));
                }
                if let Some(q) = quota {
                    out.push(set("cpu", "cpu.cfs_quota_us", q, "cpu.quota"));
                }
                if let Some(b) = c.burst() {
                    out.push(set("cpu", "cpu.cfs_burst_us", b, "cpu.burst"));
                }
                if let Some(p) = rt_period {
                    out.push(set("cpu", "cpu.rt_period_us", p, "cpu.realtimePeriod"));
                }
                if let Some(r) = rt_runtime {
                    out.push(set("cpu", "cpu.rt_runtime_us", r, "cpu.realtimeRuntime"));
                }
            }
            Flavor::V2 => {
                if let Some(s) = shares {
                    out.push(set("cpu", "cpu.weight", shares_to_weight(s), "cpu.shares"));
                }
                if quota.is_some() || period.is_some() {
                    let q = match quota {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".into(),
                    };
                    let v = match period {
                        Some(p) => format!("{q} {p}"),
                        None => q,
                    };
                    let field = if quota.is_some() {
                        "cpu.quota"
                    } else {
                        "cpu.period"
                    };
                    out.push(set("cpu", "cpu.max", v, field));
                }
                if let Some(b) = c.burst() {
                    out.push(set("cpu", "cpu.max.burst", b, "cpu.burst"));
                }
                if rt_runtime.is_some() {
                    return Err(refuse(
                        "cpu.realtimeRuntime",
                        "cgroup v2 has no realtime budget",
                    ));
                }
                if rt_period.is_some() {
                    return Err(refuse(
                        "cpu.realtimePeriod",
                        "cgroup v2 has no realtime budget",
                    ));
                }
            }
        }
        if let Some(i) = c.idle() {
            out.push(set("cpu", "cpu.idle", i, "cpu.idle"));
        }
    }
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        need("cpuset", "cpu.cpus")?;
        out.push(set("cpuset", "cpuset.cpus", cpus, "cpu.cpus"));
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        need("cpuset", "cpu.mems")?;
        out.push(set("cpuset", "cpuset.mems", mems, "cpu.mems"));
    }
    Ok(())
}

/// runc's AllowedDevices (libcontainer/specconv), appended to the bundle's own rules: mknod
/// of any character or block device, null, random, full, tty, zero, urandom, the pts
/// devices, ptmx and net/tun.
const DEFAULT_ALLOWED: &[(LinuxDeviceType, Option<i64>, Option<i64>, &str)] = &[
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
    (LinuxDeviceType::C, Some(10), Some(200), "rwm"),
];

/// The default allow rules every container gets after its own (runc's AllowedDevices).
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    DEFAULT_ALLOWED
        .iter()
        .map(|&(typ, major, minor, access)| {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(typ)
                .access(access);
            if let Some(m) = major {
                b = b.major(m);
            }
            if let Some(m) = minor {
                b = b.minor(m);
            }
            b.build().expect("static rule")
        })
        .collect()
}

/// One OCI rule as the emulator takes it. A missing type means every device, a missing (or
/// -1) major or minor any number, a missing access "rwm".
pub(crate) fn device_rule(r: &LinuxDeviceCgroup) -> std::result::Result<Rule, String> {
    let typ = match r.typ().unwrap_or_default() {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C => 'c',
        t @ (LinuxDeviceType::U | LinuxDeviceType::P) => {
            return Err(format!(
                "type {:?} is not a device cgroup type (a, b or c)",
                t.as_str()
            ))
        }
    };
    let num = |n: Option<i64>, what: &str| match n {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n).map(Some).map_err(|_| {
            format!("{what} {n} is not a device number (0 to 4294967295, or -1 for any)")
        }),
    };
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    let mut bits = 0;
    for c in access.chars() {
        bits |= match c {
            'r' => emulator::READ,
            'w' => emulator::WRITE,
            'm' => emulator::MKNOD,
            _ => 0xff,
        };
    }
    if access.is_empty() || bits == 0xff || bits & !emulator::RWM != 0 {
        return Err(format!("access {access:?} is not made of r, w, m"));
    }
    Ok(Rule {
        allow: r.allow(),
        typ,
        major: num(r.major(), "major")?,
        minor: num(r.minor(), "minor")?,
        access: bits,
    })
}

/// Apply `rules` in order to a cgroup that denies every device, as runc does, and return
/// the resulting state as `(allow, rule)` in devices.allow syntax: `a` for the default
/// first, then the exceptions. Errors name the index of the rule at fault.
pub fn device_state(
    rules: &[LinuxDeviceCgroup],
) -> std::result::Result<Vec<(bool, String)>, (usize, String)> {
    let mut emu = Emulator::deny_all();
    for (i, r) in rules.iter().enumerate() {
        let rule = device_rule(r).map_err(|why| (i, why))?;
        emu.apply(&rule).map_err(|why| (i, why))?;
    }
    Ok(emu.rules())
}

/// [`device_state`] with errors naming linux.resources.devices.
pub(crate) fn device_rules(rules: &[LinuxDeviceCgroup]) -> Result<Vec<(bool, String)>> {
    device_state(rules).map_err(|(i, why)| refuse(&format!("devices[{i}]"), why))
}

/// v1: reset the default with `a`, then the exceptions (runc's transition from a cgroup
/// whose rules it cannot know: a new v1 cgroup allows everything).
fn devices_v1(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Setting>> {
    Ok(device_rules(rules)?
        .into_iter()
        .map(|(allow, rule)| {
            let file = if allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            set("devices", file, rule, "devices")
        })
        .collect())
}

/// Whether `b` asks for anything. A zero weight means "unset", as in runc: dockerd sends
/// `blockIO.weight: 0` for every container, and the kernel refuses 0.
fn block_io_is_set(b: &LinuxBlockIo) -> bool {
    let nonzero = |w: Option<u16>| w.is_some_and(|w| w != 0);
    nonzero(b.weight())
        || nonzero(b.leaf_weight())
        || b.weight_device()
            .iter()
            .flatten()
            .any(|d| nonzero(d.weight()) || nonzero(d.leaf_weight()))
        || [
            b.throttle_read_bps_device(),
            b.throttle_write_bps_device(),
            b.throttle_read_iops_device(),
            b.throttle_write_iops_device(),
        ]
        .iter()
        .any(|t| t.as_ref().is_some_and(|t| !t.is_empty()))
}

fn block_io(b: &LinuxBlockIo, f: Flavor) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    let nonzero = |w: Option<u16>| w.filter(|w| *w != 0);
    let ctl = match f {
        Flavor::V1 => "blkio",
        Flavor::V2 => "io",
    };
    // A weight's candidate files as runc picks them, BFQ's first. On v1 both files take
    // [10, 1000]; on v2 io.bfq.weight takes blkio's range and io.weight [1, 10000].
    let weights = |device: &str, w: u16| -> Vec<(String, String)> {
        let (bfq, plain, plain_w) = match (f, device.is_empty()) {
            (Flavor::V1, true) => ("blkio.bfq.weight", "blkio.weight", w.into()),
            (Flavor::V1, false) => ("blkio.bfq.weight_device", "blkio.weight_device", w.into()),
            (Flavor::V2, _) => ("io.bfq.weight", "io.weight", blkio_weight_to_io(w)),
        };
        vec![
            (bfq.to_string(), format!("{device}{w}")),
            (plain.to_string(), format!("{device}{plain_w}")),
        ]
    };
    let mut push = |choices: Vec<(String, String)>, field: &str| {
        out.push(Setting {
            controller: ctl,
            choices,
            field: format!("linux.resources.{field}"),
        });
    };
    let no_leaf = |field: &str| refuse(field, "cgroup v2 has no leaf weight");
    if let Some(w) = nonzero(b.weight()) {
        push(weights("", w), "blockIO.weight");
    }
    if let Some(w) = nonzero(b.leaf_weight()) {
        if f == Flavor::V2 {
            return Err(no_leaf("blockIO.leafWeight"));
        }
        let file = "blkio.leaf_weight".to_string();
        push(vec![(file, w.to_string())], "blockIO.leafWeight");
    }
    for d in b.weight_device().iter().flatten() {
        let device = format!("{}:{} ", d.major(), d.minor());
        if let Some(w) = nonzero(d.weight()) {
            push(weights(&device, w), "blockIO.weightDevice");
        }
        if let Some(w) = nonzero(d.leaf_weight()) {
            if f == Flavor::V2 {
                return Err(no_leaf("blockIO.weightDevice.leafWeight"));
            }
            let file = "blkio.leaf_weight_device".to_string();
            push(vec![(file, format!("{device}{w}"))], "blockIO.weightDevice");
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "read_bps_device",
            "rbps",
            "blockIO.throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "write_bps_device",
            "wbps",
            "blockIO.throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "read_iops_device",
            "riops",
            "blockIO.throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "write_iops_device",
            "wiops",
            "blockIO.throttleWriteIOPSDevice",
        ),
    ];
    for (devs, v1_file, v2_key, field) in throttles {
        for d in devs.iter().flatten() {
            let (file, v) = match f {
                Flavor::V1 => (
                    format!("blkio.throttle.{v1_file}"),
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                ),
                Flavor::V2 => (
                    "io.max".to_string(),
                    format!("{}:{} {v2_key}={}", d.major(), d.minor(), d.rate()),
                ),
            };
            push(vec![(file, v)], field);
        }
    }
    Ok(out)
}
