//! Tests on the host's real cgroups. They need root and a mounted cgroup file system, and
//! skip (printing why) without them.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::*;
use crate::error::ContainerError;

const MIB: i64 = 1024 * 1024;

fn host() -> Option<Hierarchy> {
    if !nix::unistd::geteuid().is_root() {
        isobox_common::skip::skip("needs root to make cgroups");
        return None;
    }
    match Hierarchy::host() {
        Ok(h) => Some(h),
        Err(e) => {
            isobox_common::skip::skip(&format!("no usable cgroup hierarchy: {e}"));
            None
        }
    }
}

/// A cgroups path of this test alone, so parents it makes are its own to check.
fn test_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/isobox-test-{}-{name}/c", std::process::id()))
}

/// A `sleep` child, killed and reaped when dropped (also when an assertion fails).
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper() -> Sleeper {
    // Not inheriting stdout: a leftover child would hold the test harness's pipe open.
    Sleeper(
        Command::new("sleep")
            .arg("1000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    )
}

/// Destroys the cgroup when dropped, so a failed assertion leaves nothing behind.
struct Guard<'a>(&'a Cgroup);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

/// The value of `file` in whichever of the cgroup's directories has it.
fn value(cg: &Cgroup, file: &str) -> Option<String> {
    cg.paths
        .iter()
        .find_map(|p| std::fs::read_to_string(p.join(file)).ok())
        .map(|s| s.trim().to_string())
}

/// 32 MiB of memory, 10 pids and a fifth of a CPU.
fn limits_32m_10_pids_fifth_cpu() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(32 * MIB)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .quota(20_000i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn all_gone(cg: &Cgroup) {
    for p in cg.paths.iter().chain(&cg.parents) {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn limits_processes_and_destroy() {
    let Some(h) = host() else { return };
    let res = limits_32m_10_pids_fifth_cpu();
    let path = test_path("limits");
    let cg = Cgroup::create_in(&h, Some(&path), "limits", Some(&res)).unwrap();
    let _guard = Guard(&cg);
    assert_eq!(cg.mode, detect().unwrap());
    assert!(!cg.parents.is_empty());
    let mib32 = (32 * MIB).to_string();
    match cg.mode {
        Mode::V2 => {
            assert_eq!(value(&cg, "memory.max").as_deref(), Some(&*mib32));
            assert_eq!(value(&cg, "cpu.max").as_deref(), Some("20000 100000"));
        }
        Mode::V1 | Mode::Hybrid => {
            assert_eq!(
                value(&cg, "memory.limit_in_bytes").as_deref(),
                Some(&*mib32)
            );
            assert_eq!(value(&cg, "cpu.cfs_quota_us").as_deref(), Some("20000"));
            assert_eq!(value(&cg, "cpu.cfs_period_us").as_deref(), Some("100000"));
        }
    }
    assert_eq!(value(&cg, "pids.max").as_deref(), Some("10"));

    let mut child = sleeper();
    let pid = child.0.id() as i32;
    cg.add(pid).unwrap();
    assert_eq!(cg.pids().unwrap(), [pid]);
    let stats = cg.stats().unwrap();
    // v1 does not move a joining task's charge, so only the limit is certain.
    assert_eq!(stats.memory.usage.limit, 32 << 20, "{stats:?}");
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.pids.limit, 10);

    cg.destroy().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    all_gone(&cg);
    cg.destroy().expect("destroy twice");
}

#[test]
fn update_changes_the_live_limits_and_refuses_before_writing() {
    let Some(h) = host() else { return };
    let res = limits_32m_10_pids_fifth_cpu();
    let cg = Cgroup::create_in(&h, Some(&test_path("update")), "update", Some(&res)).unwrap();
    let _guard = Guard(&cg);
    let memory_file = match cg.mode {
        Mode::V2 => "memory.max",
        Mode::V1 | Mode::Hybrid => "memory.limit_in_bytes",
    };
    // A zero quota is "unset": the quota in force stays.
    let change = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * MIB)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(20).build().unwrap())
        .cpu(LinuxCpuBuilder::default().quota(0i64).build().unwrap())
        .build()
        .unwrap();
    let now = cg.update_in(&h, Some(&res), &change).unwrap();
    assert_eq!(value(&cg, "pids.max").as_deref(), Some("20"));
    let mib64 = (64 * MIB).to_string();
    assert_eq!(value(&cg, memory_file).as_deref(), Some(&*mib64));
    assert_eq!(now.memory().unwrap().limit(), Some(64 * MIB));
    assert_eq!(now.cpu().as_ref().unwrap().quota(), Some(20_000));
    assert_eq!(now.pids().as_ref().unwrap().limit(), 20);
    assert_eq!(cg.stats().unwrap().pids.limit, 20);

    // memory+swap below the new memory limit: refused as create refuses it, nothing written.
    let bad = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().swap(MIB).build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(30).build().unwrap())
        .build()
        .unwrap();
    match cg.update_in(&h, Some(&now), &bad) {
        Err(ContainerError::Resource { field, .. }) => {
            assert_eq!(field, "linux.resources.memory.swap")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(value(&cg, "pids.max").as_deref(), Some("20"));
    let devices: LinuxResources =
        serde_json::from_value(serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}))
            .unwrap();
    match cg.update_in(&h, Some(&now), &devices) {
        Err(ContainerError::Resource { field, .. }) => assert_eq!(field, "linux.resources.devices"),
        other => panic!("{other:?}"),
    }
    cg.destroy().unwrap();
}

#[test]
fn kernel_refusal_names_the_field_and_leaves_nothing() {
    let Some(h) = host() else { return };
    // The kernel's minimum CFS quota is 1 ms.
    let res = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().quota(500i64).build().unwrap())
        .build()
        .unwrap();
    let path = test_path("refused");
    let err = Cgroup::create_in(&h, Some(&path), "refused", Some(&res)).unwrap_err();
    match err {
        ContainerError::Resource { field, reason } => {
            assert_eq!(field, "linux.resources.cpu.quota");
            assert!(reason.contains("invalid argument"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let top = path
        .parent()
        .unwrap()
        .strip_prefix("/")
        .unwrap()
        .to_path_buf();
    for m in
        h.v1.iter()
            .map(|m| m.mount.clone())
            .chain(h.unified.clone())
    {
        assert!(
            !m.join(&top).exists(),
            "{} left behind",
            m.join(&top).display()
        );
    }
}

#[test]
fn zero_values_create_on_the_host() {
    let Some(h) = host() else { return };
    let res = super::tests::zeros_runc_leaves_unset();
    let path = test_path("zeros");
    let cg = Cgroup::create_in(&h, Some(&path), "zeros", Some(&res)).unwrap();
    let _guard = Guard(&cg);
    let pids = value(&cg, "pids.max");
    assert!(pids.is_none() || pids.as_deref() == Some("max"), "{pids:?}");

    // A real weight on the scheduler's file, whichever the host offers.
    let mut weighted = res.clone();
    let mut b = weighted.block_io().clone().unwrap();
    b.set_weight(Some(500));
    b.set_weight_device(None);
    weighted.set_block_io(Some(b));
    let path = test_path("weight");
    match Cgroup::create_in(&h, Some(&path), "weight", Some(&weighted)) {
        Ok(cg) => {
            let _guard = Guard(&cg);
            let files = ["blkio.bfq.weight", "blkio.weight", "io.bfq.weight"];
            let w = files.iter().find_map(|f| value(&cg, f));
            let io = value(&cg, "io.weight");
            assert!(
                w.as_deref().is_some_and(|w| w.ends_with("500"))
                    || io.is_some_and(|w| w.ends_with(&blkio_weight_to_io(500).to_string())),
                "{w:?}"
            );
        }
        Err(ContainerError::Resource { field, reason })
            if reason.contains("not present") || reason.contains("not available") =>
        {
            assert_eq!(field, "linux.resources.blockIO.weight");
            isobox_common::skip::skip(&format!("no block I/O weight on this host: {reason}"));
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn freeze_signal_and_default_path() {
    let Some(h) = host() else { return };
    let id = format!("isobox-test-{}-sig", std::process::id());
    let cg = Cgroup::create_in(&h, None, &id, None).unwrap();
    let _guard = Guard(&cg);
    assert!(cg
        .paths
        .iter()
        .all(|p| p.ends_with(Path::new(DEFAULT_PARENT).join(&id))));
    let mut child = sleeper();
    cg.add(child.0.id() as i32).unwrap();
    if cg.freeze().unwrap() {
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        assert!(!cg.is_frozen().unwrap());
    }
    cg.signal_all(libc::SIGTERM).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(!cg.is_frozen().unwrap(), "signal_all thaws what it froze");
    cg.destroy().unwrap();
    for p in &cg.paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn bpf_device_filter_denies_and_allows() {
    let Some(h) = host() else { return };
    if h.unified.is_none() {
        isobox_common::skip::skip("no unified hierarchy to attach a device program to");
        return;
    }
    let path = test_path("bpf");
    let cg = Cgroup::create_in(&h, Some(&path), "bpf", None).unwrap();
    let _guard = Guard(&cg);
    let dir = v2::unified_dir(&cg.paths).unwrap().to_path_buf();
    let mut deny_all = vec![oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap()];
    deny_all.extend(default_device_rules());
    let rules = resources::device_rules(&deny_all).unwrap();
    if let Err(e) = bpf::attach(&dir, &rules) {
        isobox_common::skip::skip(&format!("this kernel refuses cgroup device programs: {e}"));
        return;
    }
    // /dev/null is on the default allowlist, /dev/kmsg (1:11) is not. The shell joins the
    // cgroup before it reads its go-ahead line, so both opens happen inside.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            "read go; dd if=/dev/null count=0 2>/dev/null || exit 10; \
              dd if=/dev/kmsg count=0 2>/dev/null && exit 20; exit 0",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    cg.add(child.id() as i32).unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "10: /dev/null refused, 20: /dev/kmsg allowed"
    );
}

#[test]
fn v1_device_cgroup_starts_from_deny_all() {
    let Some(h) = host() else { return };
    if h.v1_mount("devices").is_none() {
        isobox_common::skip::not_applicable("v1 only: this host has no v1 devices controller");
        return;
    }
    // No rules of the bundle's own: the default allowlist alone, on a cgroup that denies
    // everything else (a new v1 cgroup starts as `a *:* rwm`).
    let res = LinuxResourcesBuilder::default()
        .devices(default_device_rules())
        .build()
        .unwrap();
    let path = test_path("devlist");
    let cg = Cgroup::create_in(&h, Some(&path), "devlist", Some(&res)).unwrap();
    let _guard = Guard(&cg);
    let list = value(&cg, "devices.list").unwrap();
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "b *:* m",
            "c *:* m",
            "c 10:200 rwm",
            "c 136:* rwm",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rwm",
        ],
        "{list}"
    );
    let mut probe = Command::new("sh")
        .arg("-c")
        .arg(
            "read go; dd if=/dev/null count=0 2>/dev/null || exit 10; \
              dd if=/dev/kmsg count=0 2>/dev/null && exit 20; exit 0",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    cg.add(probe.id() as i32).unwrap();
    use std::io::Write;
    probe.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(
        probe.wait().unwrap().code(),
        Some(0),
        "10: null refused, 20: kmsg allowed"
    );
}

/// Cost of a cgroup's make + destroy here (prints figures, asserts none).
/// `cargo test -p isobox-container cgroups::tests_host::measure -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_create_destroy() {
    let Some(h) = host() else { return };
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(32 * MIB)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .build()
        .unwrap();
    let mut create = Vec::new();
    let mut destroy = Vec::new();
    for i in 0..50 {
        let id = format!("isobox-test-{}-m{i}", std::process::id());
        let t = std::time::Instant::now();
        let cg = Cgroup::create(None, &id, Some(&res)).unwrap();
        create.push(t.elapsed());
        let t = std::time::Instant::now();
        cg.destroy().unwrap();
        destroy.push(t.elapsed());
    }
    create.sort();
    destroy.sort();
    eprintln!(
        "{:?}: create median {:?} (min {:?}), destroy median {:?} (min {:?}), {} dirs",
        h.mode,
        create[25],
        create[0],
        destroy[25],
        destroy[0],
        Cgroup::create_in(&h, None, "isobox-test-count", None)
            .map(|c| {
                let n = c.paths.len();
                let _ = c.destroy();
                n
            })
            .unwrap_or(0)
    );
}

/// Containers come and go at once under a shared parent: one's destroy removing the empty
/// parent it made must not break another's create.
#[test]
fn concurrent_create_destroy_share_the_parent() {
    let Some(h) = host() else { return };
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let id = format!("w{w}-{i}");
                    let path = test_path("shared").with_file_name(&id);
                    let cg = Cgroup::create_in(&h, Some(&path), &id, None)
                        .unwrap_or_else(|e| panic!("{id}: {e}"));
                    cg.destroy().unwrap_or_else(|e| panic!("{id}: {e}"));
                    assert!(cg.paths.iter().all(|p| !p.exists()));
                }
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
    // The last one out may have found the parent made by another: remove it here.
    let top = test_path("shared");
    let top = top.parent().unwrap().strip_prefix("/").unwrap();
    for m in
        h.v1.iter()
            .map(|m| m.mount.clone())
            .chain(h.unified.clone())
    {
        let _ = std::fs::remove_dir(m.join(top));
    }
    for r in results {
        r.unwrap();
    }
}

/// The pure-v2 code paths on the real unified hierarchy (on a hybrid host it has no
/// controllers): a missing controller, the BPF device allowlist made by `create`, and
/// cgroup.kill in destroy.
#[test]
fn v2_mode_on_the_unified_hierarchy() {
    let Some(h) = host() else { return };
    let Some(unified) = h.unified.clone() else {
        isobox_common::skip::skip("no unified hierarchy");
        return;
    };
    let v2 = Hierarchy::v2(unified);
    let available = v2.v2_available().unwrap();

    if !available.iter().any(|c| c == "pids") {
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .build()
            .unwrap();
        let path = test_path("v2pids");
        match Cgroup::create_in(&v2, Some(&path), "x", Some(&res)).unwrap_err() {
            ContainerError::Resource { field, reason } => {
                assert_eq!(field, "linux.resources.pids.limit");
                assert!(
                    reason.contains("cgroup.controllers does not list it"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    // No rules of its own: the default allowlist on a cgroup that denies everything else.
    let res = LinuxResourcesBuilder::default()
        .devices(default_device_rules())
        .build()
        .unwrap();
    let path = test_path("v2");
    let cg = Cgroup::create_in(&v2, Some(&path), "v2", Some(&res)).unwrap();
    let _guard = Guard(&cg);
    assert_eq!(cg.paths.len(), 1);
    let mut probe = Command::new("sh")
        .arg("-c")
        .arg(
            "read go; dd if=/dev/null count=0 2>/dev/null || exit 10; \
              dd if=/dev/kmsg count=0 2>/dev/null && exit 20; exit 0",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    cg.add(probe.id() as i32).unwrap();
    use std::io::Write;
    probe.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(
        probe.wait().unwrap().code(),
        Some(0),
        "10: null refused, 20: kmsg allowed"
    );

    let mut child = sleeper();
    cg.add(child.0.id() as i32).unwrap();
    assert!(cg.freeze().unwrap());
    assert!(cg.is_frozen().unwrap());
    // Frozen, and still killed: cgroup.kill reaches frozen tasks.
    cg.destroy().unwrap();
    assert_eq!(child.0.wait().unwrap().signal(), Some(libc::SIGKILL));
    all_gone(&cg);
}

/// A container may make cgroups of its own below its cgroup: their processes count as the
/// container's, and destroy kills them and removes those cgroups too.
#[test]
fn nested_cgroups_are_listed_killed_and_removed() {
    let Some(h) = host() else { return };
    let path = test_path("nested");
    let cg = Cgroup::create_in(&h, Some(&path), "nested", None).unwrap();
    let _guard = Guard(&cg);
    let mut child = sleeper();
    let pid = child.0.id() as i32;
    for p in &cg.paths {
        let sub = p.join("inner");
        std::fs::create_dir(&sub).unwrap();
        if sub.join("cpuset.cpus").exists() {
            v1::cpuset_copy_down(&sub).unwrap();
        }
        std::fs::write(sub.join("cgroup.procs"), pid.to_string()).unwrap();
    }
    assert_eq!(cg.pids().unwrap(), [pid]);
    cg.destroy().unwrap();
    assert_eq!(child.0.wait().unwrap().signal(), Some(libc::SIGKILL));
    all_gone(&cg);
}
