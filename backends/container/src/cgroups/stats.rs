//! A cgroup's usage read as runc 1.1 reads it (libcontainer/cgroups fs and fs2): from the v1
//! controller directories where the host has them, else from the v2 directory. A file the
//! host lacks leaves its figures zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isobox_common::stats::{BlkioEntry, CpuSet, Hugetlb, MemoryEntry, Stats};

use super::{files, v2};
use crate::error::Result;

/// The first of `paths` that has `file`.
fn dir_with<'a>(paths: &'a [PathBuf], file: &str) -> Option<&'a Path> {
    paths
        .iter()
        .map(|p| p.as_path())
        .find(|p| p.join(file).exists())
}

/// A number file; "max" is u64::MAX (runc's reading), a missing or odd file 0.
fn num(file: &Path) -> u64 {
    match files::read(file) {
        Ok(v) if v == "max" => u64::MAX,
        Ok(v) => v.parse().unwrap_or(0),
        Err(_) => 0,
    }
}

/// `KEY VALUE` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events, …).
fn keyed(file: &Path) -> BTreeMap<String, u64> {
    let text = files::read(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

pub(crate) fn stats(paths: &[PathBuf]) -> Result<Stats> {
    if !paths.iter().any(|p| p.exists()) {
        return Err(files::cg_err(
            paths.first().map(|p| p.as_path()).unwrap_or(Path::new("")),
            "gone: the container has no cgroup to report on",
        ));
    }
    let unified = v2::unified_dir(paths);
    let mut s = Stats::default();
    cpu(paths, unified, &mut s);
    s.cpuset = cpuset(paths, unified);
    memory(paths, unified, &mut s);
    if let Some(d) = dir_with(paths, "pids.current") {
        s.pids.current = num(&d.join("pids.current"));
        s.pids.limit = match num(&d.join("pids.max")) {
            u64::MAX => 0,
            n => n,
        };
    }
    blkio(paths, unified, &mut s);
    s.hugetlb = hugetlb(paths);
    Ok(s)
}

fn numbers(file: &Path) -> Vec<u64> {
    files::read(file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn cpu(paths: &[PathBuf], unified: Option<&Path>, s: &mut Stats) {
    let usage = &mut s.cpu.usage;
    let throttling = &mut s.cpu.throttling;
    if let Some(d) = dir_with(paths, "cpuacct.usage") {
        usage.total = num(&d.join("cpuacct.usage"));
        usage.percpu = numbers(&d.join("cpuacct.usage_percpu"));
        // "cpu user system" and a row per CPU.
        let all = files::read(&d.join("cpuacct.usage_all")).unwrap_or_default();
        for row in all.lines().skip(1) {
            let v: Vec<u64> = row
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if let [_, user, system] = v[..] {
                usage.percpu_user.push(user);
                usage.percpu_kernel.push(system);
            }
        }
        let st = keyed(&d.join("cpuacct.stat"));
        let ns = isobox_common::proc::ticks_to_ns;
        usage.user = ns(st.get("user").copied().unwrap_or(0));
        usage.kernel = ns(st.get("system").copied().unwrap_or(0));
        if let Some(c) = dir_with(paths, "cpu.cfs_period_us") {
            let st = keyed(&c.join("cpu.stat"));
            throttling.periods = st.get("nr_periods").copied().unwrap_or(0);
            throttling.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
            throttling.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
        }
    } else if let Some(d) = unified {
        let st = keyed(&d.join("cpu.stat"));
        let get = |k: &str| st.get(k).copied().unwrap_or(0);
        usage.total = get("usage_usec").saturating_mul(1000);
        usage.user = get("user_usec").saturating_mul(1000);
        usage.kernel = get("system_usec").saturating_mul(1000);
        throttling.periods = get("nr_periods");
        throttling.throttled_periods = get("nr_throttled");
        throttling.throttled_time = get("throttled_usec").saturating_mul(1000);
    }
}

fn cpu_list(file: &Path) -> Vec<u16> {
    let text = files::read(file).unwrap_or_default();
    if text.is_empty() {
        return Vec::new();
    }
    isobox_common::bundle::parse_cpu_list(&text)
        .map(|ids| {
            ids.into_iter()
                .filter_map(|i| u16::try_from(i).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cpuset(paths: &[PathBuf], unified: Option<&Path>) -> CpuSet {
    if let Some(d) = dir_with(paths, "cpuset.cpu_exclusive") {
        let n = |f: &str| num(&d.join(format!("cpuset.{f}")));
        return CpuSet {
            cpus: cpu_list(&d.join("cpuset.cpus")),
            cpu_exclusive: n("cpu_exclusive"),
            mems: cpu_list(&d.join("cpuset.mems")),
            mem_hardwall: n("mem_hardwall"),
            mem_exclusive: n("mem_exclusive"),
            memory_migrate: n("memory_migrate"),
            memory_spread_page: n("memory_spread_page"),
            memory_spread_slab: n("memory_spread_slab"),
            memory_pressure: n("memory_pressure"),
            sched_load_balance: n("sched_load_balance"),
            sched_relax_domain_level: files::read(&d.join("cpuset.sched_relax_domain_level"))
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        };
    }
    // v2 has none of v1's flags: only the CPUs and nodes in effect.
    match unified {
        Some(d) => CpuSet {
            cpus: cpu_list(&d.join("cpuset.cpus.effective")),
            mems: cpu_list(&d.join("cpuset.mems.effective")),
            ..CpuSet::default()
        },
        None => CpuSet::default(),
    }
}

/// v1's four files of one memory counter: `prefix` is memory, memory.memsw, memory.kmem or
/// memory.kmem.tcp.
fn v1_entry(d: &Path, prefix: &str) -> MemoryEntry {
    let n = |f: &str| num(&d.join(format!("{prefix}.{f}")));
    MemoryEntry {
        limit: n("limit_in_bytes"),
        usage: n("usage_in_bytes"),
        max: n("max_usage_in_bytes"),
        failcnt: n("failcnt"),
    }
}

fn memory(paths: &[PathBuf], unified: Option<&Path>, s: &mut Stats) {
    let m = &mut s.memory;
    if let Some(d) = dir_with(paths, "memory.usage_in_bytes") {
        m.raw = keyed(&d.join("memory.stat"));
        m.cache = m.raw.get("cache").copied().unwrap_or(0);
        m.usage = v1_entry(d, "memory");
        m.swap = v1_entry(d, "memory.memsw");
        m.kernel = v1_entry(d, "memory.kmem");
        m.kernel_tcp = v1_entry(d, "memory.kmem.tcp");
        m.oom_kills = keyed(&d.join("memory.oom_control"))
            .get("oom_kill")
            .copied();
    } else if let Some(d) = unified.filter(|d| d.join("memory.current").exists()) {
        m.raw = keyed(&d.join("memory.stat"));
        m.cache = m.raw.get("file").copied().unwrap_or(0);
        let events = keyed(&d.join("memory.events"));
        m.usage = MemoryEntry {
            limit: num(&d.join("memory.max")),
            usage: num(&d.join("memory.current")),
            max: num(&d.join("memory.peak")),
            failcnt: events.get("max").copied().unwrap_or(0),
        };
        // Memory plus swap, as v1 reports it (runc's convention).
        let swap_limit = num(&d.join("memory.swap.max"));
        m.swap = MemoryEntry {
            limit: match (swap_limit, m.usage.limit) {
                (u64::MAX, _) | (_, u64::MAX) => u64::MAX,
                (s, l) => s.saturating_add(l),
            },
            usage: num(&d.join("memory.swap.current")).saturating_add(m.usage.usage),
            max: 0,
            failcnt: keyed(&d.join("memory.swap.events"))
                .get("max")
                .copied()
                .unwrap_or(0),
        };
        m.oom_kills = events.get("oom_kill").copied();
    }
}

/// `MAJOR:MINOR [OP] VALUE` lines; the `Total` line is left out.
fn blkio_entries(file: &Path) -> Vec<BlkioEntry> {
    let text = files::read(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, op, value) = match f[..] {
                [dev, op, value] => (dev, op, value),
                [dev, value] => (dev, "", value),
                _ => return None,
            };
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

fn blkio(paths: &[PathBuf], unified: Option<&Path>, s: &mut Stats) {
    let b = &mut s.blkio;
    if let Some(d) = dir_with(paths, "blkio.throttle.io_serviced_recursive") {
        // The I/O scheduler's own counters (BFQ, else CFQ) when it keeps any, else the
        // throttling layer's, which count every request (runc's order).
        let scheduler = ["blkio.bfq.", "blkio."]
            .into_iter()
            .find(|p| !blkio_entries(&d.join(format!("{p}io_serviced_recursive"))).is_empty());
        let read = |name: &str| blkio_entries(&d.join(name));
        match scheduler {
            Some(p) => {
                b.io_service_bytes_recursive = read(&format!("{p}io_service_bytes_recursive"));
                b.io_serviced_recursive = read(&format!("{p}io_serviced_recursive"));
                b.io_queued_recursive = read(&format!("{p}io_queued_recursive"));
                b.io_service_time_recursive = read(&format!("{p}io_service_time_recursive"));
                b.io_wait_time_recursive = read(&format!("{p}io_wait_time_recursive"));
                b.io_merged_recursive = read(&format!("{p}io_merged_recursive"));
                b.io_time_recursive = read(&format!("{p}time_recursive"));
                b.sectors_recursive = read(&format!("{p}sectors_recursive"));
            }
            None => {
                b.io_service_bytes_recursive = read("blkio.throttle.io_service_bytes_recursive");
                b.io_serviced_recursive = read("blkio.throttle.io_serviced_recursive");
            }
        }
    } else if let Some(d) = unified {
        // "MAJOR:MINOR rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…"
        let text = files::read(&d.join("io.stat")).unwrap_or_default();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let Some((major, minor)) = f.next().and_then(|dev| dev.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
                continue;
            };
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse() else { continue };
                let (list, op) = match k {
                    "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut b.io_serviced_recursive, "Read"),
                    "wios" => (&mut b.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.into(),
                    value,
                });
            }
        }
    }
}

/// Per page size: v1's hugetlb.SIZE.usage_in_bytes and friends, else v2's hugetlb.SIZE.current.
fn hugetlb(paths: &[PathBuf]) -> BTreeMap<String, Hugetlb> {
    let mut out = BTreeMap::new();
    for (suffix, v1) in [(".usage_in_bytes", true), (".current", false)] {
        for dir in paths {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(size) = name
                    .strip_prefix("hugetlb.")
                    .and_then(|n| n.strip_suffix(suffix))
                    .filter(|s| !s.contains('.'))
                else {
                    continue;
                };
                let f = |n: &str| dir.join(format!("hugetlb.{size}.{n}"));
                let h = if v1 {
                    Hugetlb {
                        usage: num(&f("usage_in_bytes")),
                        max: num(&f("max_usage_in_bytes")),
                        failcnt: num(&f("failcnt")),
                    }
                } else {
                    Hugetlb {
                        usage: num(&f("current")),
                        max: 0,
                        failcnt: keyed(&f("events")).get("max").copied().unwrap_or(0),
                    }
                };
                out.entry(size.to_string()).or_insert(h);
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}
