//! Changing a live cgroup's limits (`update`), as runc does: the change is merged over the
//! limits in force (absent and zero fields keep theirs), the result is checked and turned
//! into control-file writes by the same code as `create`, and only the writes whose values
//! differ from those of the limits in force are made. Device rules cannot change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources};

use super::create::{apply, flavor, setting_dir, v2_wanted};
use super::detect::Hierarchy;
use super::resources::{self, Flavor, Setting};
use super::{files, v2, Cgroup};
use crate::error::{ContainerError, Result};

fn refuse(field: &str, reason: impl Into<String>) -> ContainerError {
    ContainerError::Resource {
        field: format!("linux.resources.{field}"),
        reason: reason.into(),
    }
}

/// Apply `change` to `cg`, whose limits in force are `current` (None: as the kernel made
/// the cgroup). Returns the limits now in force. Nothing is written when the merged limits
/// are refused; a write the kernel refuses puts back what this call wrote before it.
pub(crate) fn update(
    h: &Hierarchy,
    cg: &Cgroup,
    current: Option<&LinuxResources>,
    change: &LinuxResources,
) -> Result<LinuxResources> {
    let current = current.cloned().unwrap_or_default();
    let merged = merge(&current, change)?;
    let relative = relative(h, cg)?;
    let v2_available = h.v2_available()?;
    let flavor = |c: &str| flavor(h, &v2_available, c);
    // Device rules are not rewritten (they cannot change), so neither side has them.
    let without_devices = |r: &LinuxResources| {
        let mut r = r.clone();
        r.set_devices(None);
        r
    };
    let new = resources::settings(&without_devices(&merged), &flavor)?;
    // Limits in force that no longer validate (a host changed since) are all rewritten.
    let old = resources::settings(&without_devices(&current), &flavor).unwrap_or_default();
    let mut writes: Vec<Setting> = new.into_iter().filter(|s| !old.contains(s)).collect();
    let memory_dir = writes
        .iter()
        .find(|s| s.controller == "memory")
        .and_then(|s| setting_dir(h, &relative, s).ok());
    if let Some(dir) = memory_dir {
        check_before_update(change, &merged, &dir)?;
        if flavor("memory") == Ok(Flavor::V1) {
            order_v1_memory(&mut writes, &merged, &dir);
        }
    }
    if let Some(root) = &h.unified {
        let leaf = root.join(&relative);
        if cg.paths.contains(&leaf) {
            v2::enable_controllers(root, &leaf, &v2_wanted(h.mode, &v2_available, &writes))?;
        }
    }
    for (i, s) in writes.iter().enumerate() {
        if let Err(e) = setting_dir(h, &relative, s).and_then(|dir| apply(&dir, s)) {
            restore(h, &relative, &writes[..i], &old);
            return Err(e);
        }
    }
    Ok(merged)
}

/// Best effort: write again the old settings of the fields `done` changed.
fn restore(h: &Hierarchy, relative: &Path, done: &[Setting], old: &[Setting]) {
    for d in done.iter().rev() {
        for prev in old.iter().filter(|o| o.field == d.field) {
            let _ = setting_dir(h, relative, prev).and_then(|dir| apply(&dir, prev));
        }
    }
}

/// The cgroup's path below the hierarchies' mount points.
fn relative(h: &Hierarchy, cg: &Cgroup) -> Result<PathBuf> {
    let mounts =
        h.v1.iter()
            .map(|m| m.mount.as_path())
            .chain(h.unified.as_deref());
    for mount in mounts {
        for p in &cg.paths {
            match p.strip_prefix(mount) {
                Ok(rel) if !rel.as_os_str().is_empty() => return Ok(rel.to_path_buf()),
                _ => {}
            }
        }
    }
    Err(files::cg_err(
        cg.paths
            .first()
            .map(|p| p.as_path())
            .unwrap_or(Path::new("")),
        "not below any cgroup hierarchy mounted on this host",
    ))
}

/// memory.checkBeforeUpdate: refuse a limit below what the container uses now.
fn check_before_update(change: &LinuxResources, merged: &LinuxResources, dir: &Path) -> Result<()> {
    let wanted = change
        .memory()
        .as_ref()
        .is_some_and(|m| m.check_before_update() == Some(true));
    let limit = merged.memory().as_ref().and_then(|m| m.limit());
    let (true, Some(limit)) = (wanted, limit.filter(|l| *l > 0)) else {
        return Ok(());
    };
    let usage = ["memory.current", "memory.usage_in_bytes"]
        .iter()
        .find_map(|f| files::read(&dir.join(f)).ok()?.parse::<u64>().ok());
    match usage {
        Some(used) if used > limit as u64 => Err(refuse(
            "memory.limit",
            format!(
                "{limit} is below the {used} bytes the container uses now (memory.checkBeforeUpdate)"
            ),
        )),
        _ => Ok(()),
    }
}

/// v1 keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every write: when both
/// change and memory+swap grows past the current memory limit, memsw goes first (runc's order).
fn order_v1_memory(writes: &mut Vec<Setting>, merged: &LinuxResources, dir: &Path) {
    let at = |field: &str, w: &[Setting]| {
        w.iter()
            .position(|s| s.field == format!("linux.resources.memory.{field}"))
    };
    let (Some(limit_at), Some(swap_at)) = (at("limit", writes), at("swap", writes)) else {
        return;
    };
    let swap = merged.memory().as_ref().and_then(|m| m.swap()).unwrap_or(0);
    let current = files::read(&dir.join("memory.limit_in_bytes"))
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    let swap_first = swap == -1 || (swap > 0 && current < swap as u64);
    if swap_first && swap_at > limit_at {
        let s = writes.remove(swap_at);
        writes.insert(limit_at, s);
    }
}

/// `change` over `current`, field by field. As in runc: absent fields, and zero limits,
/// shares, quotas, periods and weights, keep the current value; an unlimited memory limit
/// without a swap value makes swap unlimited too; per-device, per-page-size, per-interface
/// and per-key entries replace the entries for the same device, size, interface or key and
/// leave the others. Device rules other than those in force are refused.
pub(crate) fn merge(current: &LinuxResources, change: &LinuxResources) -> Result<LinuxResources> {
    if let Some(rules) = change.devices() {
        if rules.as_slice() != current.devices().as_deref().unwrap_or_default() {
            return Err(refuse(
                "devices",
                "device rules cannot be changed on a live container; they stay as created",
            ));
        }
    }
    let mut out = current.clone();
    if let Some(m) = change.memory() {
        out.set_memory(Some(merge_memory(&current.memory().unwrap_or_default(), m)));
    }
    if let Some(c) = change.cpu() {
        out.set_cpu(Some(merge_cpu(
            &current.cpu().clone().unwrap_or_default(),
            c,
        )));
    }
    if let Some(p) = change.pids().as_ref().filter(|p| p.limit() != 0) {
        out.set_pids(Some(*p));
    }
    if let Some(b) = change.block_io() {
        out.set_block_io(Some(merge_block_io(
            &current.block_io().clone().unwrap_or_default(),
            b,
        )));
    }
    out.set_hugepage_limits(merge_by(
        current.hugepage_limits(),
        change.hugepage_limits(),
        |h| h.page_size().clone(),
    ));
    if let Some(n) = change.network() {
        out.set_network(Some(merge_network(
            &current.network().clone().unwrap_or_default(),
            n,
        )));
    }
    out.set_rdma(merge_map(current.rdma(), change.rdma()));
    out.set_unified(merge_map(current.unified(), change.unified()));
    Ok(out)
}

fn nonzero<T: Default + PartialEq>(new: Option<T>, old: Option<T>) -> Option<T> {
    new.filter(|v| *v != T::default()).or(old)
}

fn non_empty(new: &Option<String>, old: &Option<String>) -> Option<String> {
    new.clone()
        .filter(|s| !s.is_empty())
        .or_else(|| old.clone())
}

#[allow(deprecated)] // kernel: obsolete, merged so the record says what was asked
fn merge_memory(old: &LinuxMemory, new: &LinuxMemory) -> LinuxMemory {
    let mut m = *old;
    m.set_limit(nonzero(new.limit(), old.limit()));
    m.set_reservation(nonzero(new.reservation(), old.reservation()));
    let swap = match (new.limit(), new.swap()) {
        (Some(-1), None) => Some(-1),
        (_, swap) => swap,
    };
    m.set_swap(nonzero(swap, old.swap()));
    m.set_kernel(nonzero(new.kernel(), old.kernel()));
    m.set_kernel_tcp(nonzero(new.kernel_tcp(), old.kernel_tcp()));
    // -1 (u64::MAX in the OCI type) is runc's "unset".
    m.set_swappiness(
        new.swappiness()
            .filter(|s| *s != u64::MAX)
            .or(old.swappiness()),
    );
    m.set_disable_oom_killer(new.disable_oom_killer().or(old.disable_oom_killer()));
    m.set_use_hierarchy(new.use_hierarchy().or(old.use_hierarchy()));
    // A condition of this update, not a limit to keep.
    m.set_check_before_update(None);
    m
}

fn merge_cpu(old: &LinuxCpu, new: &LinuxCpu) -> LinuxCpu {
    let mut c = old.clone();
    c.set_shares(nonzero(new.shares(), old.shares()));
    c.set_quota(nonzero(new.quota(), old.quota()));
    c.set_period(nonzero(new.period(), old.period()));
    c.set_realtime_runtime(nonzero(new.realtime_runtime(), old.realtime_runtime()));
    c.set_realtime_period(nonzero(new.realtime_period(), old.realtime_period()));
    // 0 is a real value here: no burst, not idle.
    c.set_burst(new.burst().or(old.burst()));
    c.set_idle(new.idle().or(old.idle()));
    c.set_cpus(non_empty(new.cpus(), old.cpus()));
    c.set_mems(non_empty(new.mems(), old.mems()));
    c
}

fn merge_block_io(old: &LinuxBlockIo, new: &LinuxBlockIo) -> LinuxBlockIo {
    let mut b = old.clone();
    b.set_weight(nonzero(new.weight(), old.weight()));
    b.set_leaf_weight(nonzero(new.leaf_weight(), old.leaf_weight()));
    b.set_weight_device(merge_by(old.weight_device(), new.weight_device(), |d| {
        (d.major(), d.minor())
    }));
    let dev = |d: &oci_spec::runtime::LinuxThrottleDevice| (d.major(), d.minor());
    b.set_throttle_read_bps_device(merge_by(
        old.throttle_read_bps_device(),
        new.throttle_read_bps_device(),
        dev,
    ));
    b.set_throttle_write_bps_device(merge_by(
        old.throttle_write_bps_device(),
        new.throttle_write_bps_device(),
        dev,
    ));
    b.set_throttle_read_iops_device(merge_by(
        old.throttle_read_iops_device(),
        new.throttle_read_iops_device(),
        dev,
    ));
    b.set_throttle_write_iops_device(merge_by(
        old.throttle_write_iops_device(),
        new.throttle_write_iops_device(),
        dev,
    ));
    b
}

fn merge_network(old: &LinuxNetwork, new: &LinuxNetwork) -> LinuxNetwork {
    let mut n = old.clone();
    n.set_class_id(new.class_id().or(old.class_id()));
    n.set_priorities(merge_by(old.priorities(), new.priorities(), |p| {
        p.name().clone()
    }));
    n
}

/// `old` with each entry of `new` replacing the one with the same key (or added).
fn merge_by<T: Clone, K: PartialEq>(
    old: &Option<Vec<T>>,
    new: &Option<Vec<T>>,
    key: impl Fn(&T) -> K,
) -> Option<Vec<T>> {
    let Some(new) = new else {
        return old.clone();
    };
    let mut out = old.clone().unwrap_or_default();
    for item in new {
        match out.iter_mut().find(|o| key(o) == key(item)) {
            Some(o) => *o = item.clone(),
            None => out.push(item.clone()),
        }
    }
    Some(out)
}

fn merge_map<V: Clone>(
    old: &Option<HashMap<String, V>>,
    new: &Option<HashMap<String, V>>,
) -> Option<HashMap<String, V>> {
    let Some(new) = new else {
        return old.clone();
    };
    let mut out = old.clone().unwrap_or_default();
    out.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn absent_and_zero_fields_keep_the_limits_in_force() {
        let current = res(json!({
            "memory": {"limit": 100, "swap": 200},
            "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"},
            "pids": {"limit": 10},
            "blockIO": {"weight": 300, "throttleReadBpsDevice": [
                {"major": 8, "minor": 0, "rate": 1000}, {"major": 8, "minor": 16, "rate": 2000}
            ]},
            "unified": {"memory.high": "50"}
        }));
        // dockerd's zeros, a new quota, one device's rate and one more unified key.
        let change = res(json!({
            "memory": {"limit": 0, "swap": 0, "reservation": 0},
            "cpu": {"shares": 0, "quota": 50000, "period": 0, "cpus": ""},
            "pids": {"limit": 0},
            "blockIO": {"weight": 0, "throttleReadBpsDevice": [{"major": 8, "minor": 16, "rate": 5}]},
            "unified": {"pids.max": "7"}
        }));
        let m = serde_json::to_value(merge(&current, &change).unwrap()).unwrap();
        assert_eq!(m["memory"], json!({"limit": 100, "swap": 200}));
        assert_eq!(
            m["cpu"],
            json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"})
        );
        assert_eq!(m["pids"]["limit"], 10);
        assert_eq!(m["blockIO"]["weight"], 300);
        assert_eq!(
            m["blockIO"]["throttleReadBpsDevice"],
            json!([{"major": 8, "minor": 0, "rate": 1000}, {"major": 8, "minor": 16, "rate": 5}])
        );
        assert_eq!(m["unified"], json!({"memory.high": "50", "pids.max": "7"}));
    }

    #[test]
    fn unlimited_memory_without_swap_makes_swap_unlimited_as_in_runc() {
        let current = res(json!({"memory": {"limit": 100, "swap": 200}}));
        let m = merge(&current, &res(json!({"memory": {"limit": -1}}))).unwrap();
        assert_eq!(m.memory().unwrap().swap(), Some(-1));
        let m = merge(
            &current,
            &res(json!({"memory": {"limit": -1, "swap": 300}})),
        )
        .unwrap();
        assert_eq!(m.memory().unwrap().swap(), Some(300));
    }

    #[test]
    fn device_rules_may_only_be_repeated() {
        let rules = json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]);
        let current = res(json!({"devices": rules}));
        assert!(merge(&current, &res(json!({"devices": rules}))).is_ok());
        assert!(merge(&res(json!({})), &res(json!({"devices": []}))).is_ok());
        let e = merge(
            &current,
            &res(json!({"devices": [{"allow": true, "access": "rwm"}]})),
        );
        match e {
            Err(ContainerError::Resource { field, .. }) => {
                assert_eq!(field, "linux.resources.devices")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v1_memory_and_swap_are_written_in_an_order_the_kernel_takes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.limit_in_bytes"), "104857600").unwrap();
        let v1 = |_: &str| Ok(Flavor::V1);
        let order = |limit: i64, swap: i64| {
            let merged = res(json!({"memory": {"limit": limit, "swap": swap}}));
            let mut w = resources::settings(&merged, &v1).unwrap();
            order_v1_memory(&mut w, &merged, dir.path());
            w.iter()
                .map(|s| {
                    s.field
                        .trim_start_matches("linux.resources.memory.")
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        // Growing past the current 100 MiB limit: memory+swap first.
        assert_eq!(order(300 << 20, 600 << 20), ["swap", "limit"]);
        assert_eq!(order(300 << 20, -1), ["swap", "limit"]);
        // Shrinking: the memory limit first, so it never exceeds memory+swap.
        assert_eq!(order(50 << 20, 80 << 20), ["limit", "swap"]);
    }
}
