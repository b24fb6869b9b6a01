//! Unit tests on temporary directory trees laid out like v1, v2 and hybrid /sys/fs/cgroup.
//! `files::fake` makes mkdir/rmdir there behave like the kernel's.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};
use tempfile::TempDir;

use super::*;
use crate::error::ContainerError;

const MIB: i64 = 1024 * 1024;

struct Tree {
    _tmp: TempDir,
    root: PathBuf,
    h: Hierarchy,
}

fn put(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, value) in files {
        fs::write(dir.join(name), value).unwrap();
    }
}

/// v1 hierarchies (cpu and cpuacct co-mounted), plus a controller-less unified one if hybrid.
fn v1_tree(hybrid: bool, memsw: bool) -> Tree {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().to_path_buf();
    let common = [("cgroup.procs", ""), ("tasks", "")];
    let mut mounts = Vec::new();
    let mut add = |dir: &str, ctls: &[&str], files: &[(&str, &str)]| {
        let d = root.join(dir);
        put(&d, &common);
        put(&d, files);
        mounts.push(V1Mount {
            controllers: ctls.iter().map(|s| s.to_string()).collect(),
            mount: d,
        });
    };
    add(
        "cpu,cpuacct",
        &["cpu", "cpuacct"],
        &[
            ("cpu.shares", "1024"),
            ("cpu.cfs_quota_us", "-1"),
            ("cpu.cfs_period_us", "100000"),
            ("cpuacct.usage", "0"),
        ],
    );
    add(
        "cpuset",
        &["cpuset"],
        &[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")],
    );
    let mut mem = vec![
        ("memory.limit_in_bytes", "9223372036854771712"),
        ("memory.soft_limit_in_bytes", "9223372036854771712"),
        ("memory.usage_in_bytes", "0"),
        ("memory.swappiness", "60"),
    ];
    if memsw {
        mem.push(("memory.memsw.limit_in_bytes", "9223372036854771712"));
    }
    add("memory", &["memory"], &mem);
    add(
        "pids",
        &["pids"],
        &[("pids.max", "max"), ("pids.current", "0")],
    );
    add("freezer", &["freezer"], &[("freezer.state", "THAWED")]);
    add(
        "devices",
        &["devices"],
        &[
            ("devices.allow", ""),
            ("devices.deny", ""),
            ("devices.list", "a *:* rwm"),
        ],
    );
    let unified = hybrid.then(|| {
        let u = root.join("unified");
        put(
            &u,
            &[
                ("cgroup.procs", ""),
                ("cgroup.controllers", "hugetlb"),
                ("cgroup.subtree_control", ""),
                ("cgroup.freeze", "0"),
                ("cgroup.kill", ""),
                ("hugetlb.2MB.max", "max"),
            ],
        );
        u
    });
    let h = Hierarchy::v1(mounts, unified);
    Tree { _tmp: tmp, root, h }
}

fn v2_tree(controllers: &str, swap_file: bool) -> Tree {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("cgroup");
    let mut files = vec![
        ("cgroup.procs", ""),
        ("cgroup.controllers", controllers),
        ("cgroup.subtree_control", ""),
        ("cgroup.freeze", "0"),
        ("cgroup.kill", ""),
        ("memory.max", "max"),
        ("memory.low", "0"),
        ("cpu.weight", "100"),
        ("cpu.max", "max 100000"),
        ("cpuset.cpus", ""),
        ("pids.max", "max"),
    ];
    if swap_file {
        files.push(("memory.swap.max", "max"));
    }
    put(&root, &files);
    let h = Hierarchy::v2(&root);
    Tree { _tmp: tmp, root, h }
}

fn limits(limit: i64, swap: Option<i64>) -> LinuxResources {
    let mut mem = LinuxMemoryBuilder::default()
        .limit(limit)
        .reservation(16 * MIB);
    if let Some(s) = swap {
        mem = mem.swap(s);
    }
    LinuxResourcesBuilder::default()
        .memory(mem.build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("1")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .build()
        .unwrap()
}

fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
        .trim()
        .to_string()
}

/// Every directory below `root` whose name is not one the fixture made.
fn dirs_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                if e.file_name() == name {
                    found.push(e.path());
                }
                stack.push(e.path());
            }
        }
    }
    found
}

fn resource_err(e: ContainerError) -> (String, String) {
    match e {
        ContainerError::Resource { field, reason } => (field, reason),
        other => panic!("expected a Resource error, got {other:?}"),
    }
}

#[test]
fn conversions() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(0), 1, "clamped to the v1 minimum");
    assert_eq!(blkio_weight_to_io(10), 1);
    assert_eq!(blkio_weight_to_io(1000), 10_000);
    assert_eq!(
        swap_to_v2(Some(32 * MIB), Some(64 * MIB)).unwrap().unwrap(),
        (32 * MIB).to_string()
    );
    assert_eq!(
        swap_to_v2(Some(32 * MIB), Some(32 * MIB)).unwrap().unwrap(),
        "0"
    );
    assert_eq!(
        swap_to_v2(Some(32 * MIB), Some(-1)).unwrap().unwrap(),
        "max"
    );
    assert_eq!(swap_to_v2(Some(32 * MIB), None).unwrap(), None);
    for (limit, swap) in [
        (Some(64 * MIB), Some(32 * MIB)),
        (None, Some(32 * MIB)),
        (Some(-1), Some(MIB)),
    ] {
        let (field, _) = resource_err(swap_to_v2(limit, swap).unwrap_err());
        assert_eq!(field, "linux.resources.memory.swap");
    }
}

#[test]
fn v1_writes_every_limit_to_its_controller() {
    let t = v1_tree(false, true);
    let res = limits(32 * MIB, Some(64 * MIB));
    let cg = Cgroup::create_in(&t.h, None, "c1", Some(&res)).unwrap();
    assert_eq!(cg.mode, Mode::V1);
    assert_eq!(cg.paths.len(), 6);
    let d = |ctl: &str| t.root.join(ctl).join("isobox/c1");
    assert!(cg.paths.contains(&d("cpu,cpuacct")) && cg.paths.contains(&d("memory")));
    assert_eq!(
        read(d("memory").join("memory.limit_in_bytes")),
        (32 * MIB).to_string()
    );
    assert_eq!(
        read(d("memory").join("memory.memsw.limit_in_bytes")),
        (64 * MIB).to_string()
    );
    assert_eq!(
        read(d("memory").join("memory.soft_limit_in_bytes")),
        (16 * MIB).to_string()
    );
    assert_eq!(read(d("cpu,cpuacct").join("cpu.shares")), "512");
    assert_eq!(read(d("cpu,cpuacct").join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(d("cpu,cpuacct").join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(d("pids").join("pids.max")), "10");
    // cpuset: the bundle's cpus, and mems inherited from the root down through /isobox.
    assert_eq!(read(d("cpuset").join("cpuset.cpus")), "1");
    assert_eq!(read(d("cpuset").join("cpuset.mems")), "0");
    assert_eq!(read(t.root.join("cpuset/isobox/cpuset.cpus")), "0-1");
    assert!(cg.parents.contains(&t.root.join("memory/isobox")));
    assert!(!t.root.join("unified").exists());
}

#[test]
fn v1_pids_unlimited_and_devices() {
    let t = v1_tree(false, true);
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(3)
                .access("r")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    let cg = Cgroup::create_in(&t.h, None, "c2", Some(&res)).unwrap();
    let d = t.root.join("pids/isobox/c2");
    assert_eq!(read(d.join("pids.max")), "max");
    // Deny-all went to devices.deny, then each allowed device to devices.allow (the fake
    // files keep the last write).
    assert_eq!(read(t.root.join("devices/isobox/c2/devices.deny")), "a");
    assert_eq!(
        read(t.root.join("devices/isobox/c2/devices.allow")),
        "c 1:3 r"
    );
    cg.destroy().unwrap();
}

#[test]
fn device_rules() {
    let rule = |t, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default().typ(t).access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    };
    let state = |rules: &[oci_spec::runtime::LinuxDeviceCgroup]| {
        resources::device_state(rules).map(|s| {
            s.into_iter()
                .map(|(a, r)| format!("{} {r}", if a { "allow" } else { "deny" }))
                .collect::<Vec<_>>()
        })
    };
    let mut allow_rw = rule(LinuxDeviceType::C, Some(1), Some(3), "rw");
    allow_rw.set_allow(true);
    let mut allow_b = rule(LinuxDeviceType::B, Some(8), None, "m");
    allow_b.set_allow(true);
    // No rules: deny everything (runc starts there whatever the rules say).
    assert_eq!(state(&[]).unwrap(), ["deny a"]);
    assert_eq!(
        state(&[allow_rw.clone(), allow_b.clone()]).unwrap(),
        ["deny a", "allow c 1:3 rw", "allow b 8:* m"]
    );
    // `a` resets whatever its access says; -1 is a wildcard.
    let mut all = rule(LinuxDeviceType::A, Some(1), None, "r");
    all.set_allow(true);
    assert_eq!(state(&[allow_rw, all]).unwrap(), ["allow a"]);
    let mut any = rule(LinuxDeviceType::C, Some(-1), Some(-1), "m");
    any.set_allow(true);
    assert_eq!(state(&[any]).unwrap(), ["deny a", "allow c *:* m"]);
    // Errors name the rule's index.
    for (bad, what) in [
        (rule(LinuxDeviceType::C, None, None, "rx"), "access"),
        (rule(LinuxDeviceType::P, None, None, "r"), "type"),
        (rule(LinuxDeviceType::U, None, None, "r"), "type"),
        (rule(LinuxDeviceType::C, Some(-2), None, "r"), "major"),
        (rule(LinuxDeviceType::C, None, Some(1 << 32), "r"), "minor"),
    ] {
        let (i, why) = state(&[allow_b.clone(), bad]).unwrap_err();
        assert_eq!(i, 1);
        assert!(why.contains(what), "{why}");
    }
    let (field, _) = resource_err(
        resources::device_rules(&[rule(LinuxDeviceType::C, None, None, "")]).unwrap_err(),
    );
    assert_eq!(field, "linux.resources.devices[0]");
}

#[test]
fn the_default_allowlist_is_runcs() {
    let rules = default_device_rules();
    let state = resources::device_state(&rules).unwrap();
    let text: Vec<String> = state
        .iter()
        .map(|(a, r)| format!("{} {r}", if *a { "allow" } else { "deny" }))
        .collect();
    assert_eq!(
        text,
        [
            "deny a",
            "allow b *:* m",
            "allow c *:* m",
            "allow c 1:3 rwm",
            "allow c 1:5 rwm",
            "allow c 1:7 rwm",
            "allow c 1:8 rwm",
            "allow c 1:9 rwm",
            "allow c 5:0 rwm",
            "allow c 5:2 rwm",
            "allow c 10:200 rwm",
            "allow c 136:* rwm",
        ]
    );
    assert!(!text.iter().any(|t| t == "allow a"));
}

#[test]
fn v1_without_swap_accounting_names_the_field_and_leaves_nothing() {
    let t = v1_tree(false, false);
    let res = limits(32 * MIB, Some(64 * MIB));
    let err = Cgroup::create_in(&t.h, None, "c3", Some(&res)).unwrap_err();
    let (field, reason) = resource_err(err);
    assert_eq!(field, "linux.resources.memory.swap");
    assert!(reason.contains("memory.memsw.limit_in_bytes"), "{reason}");
    assert!(
        dirs_named(&t.root, "isobox").is_empty(),
        "{:?}",
        dirs_named(&t.root, "isobox")
    );
}

#[test]
fn hybrid_adds_the_unified_dir_and_uses_its_controllers() {
    let t = v1_tree(true, true);
    let mut res = limits(32 * MIB, None);
    res.set_hugepage_limits(Some(vec![LinuxHugepageLimitBuilder::default()
        .page_size("2MB")
        .limit(4 * MIB)
        .build()
        .unwrap()]));
    let cg = Cgroup::create_in(&t.h, Some(Path::new("/a/b")), "ignored", Some(&res)).unwrap();
    assert_eq!(cg.mode, Mode::Hybrid);
    let u = t.root.join("unified/a/b");
    assert_eq!(cg.paths.last(), Some(&u));
    assert_eq!(read(u.join("hugetlb.2MB.max")), (4 * MIB).to_string());
    // hugetlb handed down from the unified root through /a to /a/b.
    assert_eq!(
        read(t.root.join("unified/cgroup.subtree_control")),
        "+hugetlb"
    );
    assert_eq!(
        read(t.root.join("unified/a/cgroup.subtree_control")),
        "+hugetlb"
    );
    assert_eq!(
        read(t.root.join("memory/a/b/memory.limit_in_bytes")),
        (32 * MIB).to_string()
    );
    // /a was made here, so it is ours to remove; the roots are not.
    assert!(cg.parents.contains(&t.root.join("unified/a")));
    assert_eq!(cg.parents.len(), 7);

    cg.add(4_000_000).unwrap();
    for p in &cg.paths {
        assert_eq!(read(p.join("cgroup.procs")), "4000000");
    }
    assert_eq!(cg.pids().unwrap(), [4_000_000]);
    // Leave the fake pid out of destroy's way: nothing real may be signalled.
    for p in &cg.paths {
        fs::write(p.join("cgroup.procs"), "").unwrap();
    }
    cg.destroy().unwrap();
    assert!(dirs_named(&t.root, "a").is_empty());
    cg.destroy().unwrap();
}

#[test]
fn v2_converts_and_delegates() {
    let t = v2_tree("cpuset cpu io memory hugetlb pids rdma misc", true);
    let res = limits(32 * MIB, Some(96 * MIB));
    let cg = Cgroup::create_in(&t.h, None, "c4", Some(&res)).unwrap();
    assert_eq!(cg.mode, Mode::V2);
    let d = t.root.join("isobox/c4");
    assert_eq!(cg.paths.len(), 1);
    assert_eq!(cg.paths[0], d);
    assert_eq!(read(d.join("memory.max")), (32 * MIB).to_string());
    assert_eq!(read(d.join("memory.swap.max")), (64 * MIB).to_string());
    assert_eq!(read(d.join("memory.low")), (16 * MIB).to_string());
    assert_eq!(
        read(d.join("cpu.weight")),
        shares_to_weight(512).to_string()
    );
    assert_eq!(read(d.join("cpu.max")), "50000 100000");
    assert_eq!(read(d.join("cpuset.cpus")), "1");
    assert_eq!(read(d.join("pids.max")), "10");
    for dir in [t.root.clone(), t.root.join("isobox")] {
        let enabled = read(dir.join("cgroup.subtree_control"));
        // Every controller the root offers, not only those a limit needs.
        for c in [
            "+memory", "+cpu", "+cpuset", "+pids", "+io", "+hugetlb", "+rdma", "+misc",
        ] {
            assert!(
                enabled.split(' ').any(|e| e == c),
                "{}: {enabled}",
                dir.display()
            );
        }
    }
    cg.destroy().unwrap();
    assert!(!t.root.join("isobox").exists());
}

#[test]
fn v2_quota_without_period_and_unlimited() {
    let t = v2_tree("cpu memory pids", true);
    let res = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
        .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
        .build()
        .unwrap();
    let cg = Cgroup::create_in(&t.h, None, "c5", Some(&res)).unwrap();
    assert_eq!(read(cg.paths[0].join("cpu.max")), "max");
    assert_eq!(read(cg.paths[0].join("memory.max")), "max");
    cg.destroy().unwrap();
}

#[test]
fn v2_missing_controller_or_file_is_a_resource_error() {
    let t = v2_tree("cpu memory", true);
    let err = Cgroup::create_in(&t.h, None, "c6", Some(&limits(32 * MIB, None))).unwrap_err();
    let (field, reason) = resource_err(err);
    // cpu.cpus needs cpuset, which this host lacks; the check runs before any mkdir.
    assert_eq!(field, "linux.resources.cpu.cpus");
    assert!(
        reason.contains("cpuset controller is not available"),
        "{reason}"
    );
    assert!(!t.root.join("isobox").exists());

    let t = v2_tree("cpuset cpu memory pids", false);
    let err =
        Cgroup::create_in(&t.h, None, "c7", Some(&limits(32 * MIB, Some(64 * MIB)))).unwrap_err();
    let (field, reason) = resource_err(err);
    assert_eq!(field, "linux.resources.memory.swap");
    assert!(reason.contains("memory.swap.max"), "{reason}");
    assert!(
        !t.root.join("isobox").exists(),
        "made directories are removed"
    );
}

#[test]
fn cleanup_keeps_what_it_did_not_make() {
    let t = v1_tree(false, false);
    fs::create_dir(t.root.join("memory/keep")).unwrap();
    let res = limits(32 * MIB, Some(64 * MIB));
    assert!(Cgroup::create_in(&t.h, Some(Path::new("/keep/c")), "x", Some(&res)).is_err());
    assert!(t.root.join("memory/keep").is_dir());
    assert!(!t.root.join("memory/keep/c").exists());
    assert!(!t.root.join("pids/keep").exists());

    // And destroy leaves a parent it did not make.
    let cg = Cgroup::create_in(&t.h, Some(Path::new("/keep/c")), "x", None).unwrap();
    assert!(!cg.parents.contains(&t.root.join("memory/keep")));
    assert!(cg.parents.contains(&t.root.join("pids/keep")));
    cg.destroy().unwrap();
    assert!(t.root.join("memory/keep").is_dir());
    assert!(!t.root.join("pids/keep").exists());
}

#[test]
fn busy_leaf_and_systemd_paths_are_refused() {
    let t = v1_tree(false, true);
    put(&t.root.join("pids/busy"), &[("cgroup.procs", "1\n")]);
    let err = Cgroup::create_in(&t.h, Some(Path::new("/busy")), "x", None).unwrap_err();
    assert!(err.to_string().contains("holds processes [1]"), "{err}");
    assert!(!t.root.join("memory/busy").exists());
    assert!(t.root.join("pids/busy").exists());

    let err =
        Cgroup::create_in(&t.h, Some(Path::new("user.slice:isobox:x")), "x", None).unwrap_err();
    let (field, reason) = resource_err(err);
    assert_eq!(field, "linux.cgroupsPath");
    assert!(reason.contains("systemd"), "{reason}");
}

#[test]
fn state_round_trip() {
    let t = v2_tree("cpu memory pids", true);
    let cg = Cgroup::create_in(&t.h, None, "c8", None).unwrap();
    let json = serde_json::to_string(&cg).unwrap();
    assert!(json.contains("\"mode\":\"v2\""), "{json}");
    let back: Cgroup = serde_json::from_str(&json).unwrap();
    assert_eq!(back.paths, cg.paths);
    assert_eq!(back.parents, cg.parents);
    // An older state without `parents` still loads.
    let old: Cgroup = serde_json::from_str(r#"{"mode":"hybrid","paths":["/x"]}"#).unwrap();
    assert!(old.parents.is_empty());
    back.destroy().unwrap();
    assert!(!t.root.join("isobox").exists());
}

#[test]
fn unified_keys_go_to_v2_only() {
    let unified = |k: &str, v: &str| {
        LinuxResourcesBuilder::default()
            .unified(std::collections::HashMap::from([(
                k.to_string(),
                v.to_string(),
            )]))
            .build()
            .unwrap()
    };
    let t = v2_tree("cpu memory pids", true);
    fs::write(t.root.join("memory.high"), "max").unwrap();
    let cg = Cgroup::create_in(&t.h, None, "u1", Some(&unified("memory.high", "1000000"))).unwrap();
    assert_eq!(read(cg.paths[0].join("memory.high")), "1000000");
    cg.destroy().unwrap();

    for (tree, key, needle) in [
        (
            v1_tree(false, true),
            "cgroup.max.depth",
            "no cgroup v2 hierarchy",
        ),
        (v1_tree(true, true), "memory.high", "cgroup v1 controller"),
        (
            v2_tree("memory", true),
            "../memory.max",
            "not a cgroup v2 file",
        ),
        (
            v2_tree("memory", true),
            "bogus.x",
            "unknown cgroup v2 controller",
        ),
    ] {
        let err = Cgroup::create_in(&tree.h, None, "u2", Some(&unified(key, "1"))).unwrap_err();
        let (field, reason) = resource_err(err);
        assert_eq!(field, format!("linux.resources.unified.{key}"));
        assert!(reason.contains(needle), "{key}: {reason}");
        assert!(dirs_named(&tree.root, "isobox").is_empty());
    }
}

#[test]
fn block_io_picks_the_file_the_scheduler_offers() {
    use oci_spec::runtime::{LinuxBlockIoBuilder, LinuxThrottleDeviceBuilder};
    let res = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(8)
                    .minor(0)
                    .rate(1_048_576u64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // v1 with BFQ: no blkio.weight, only blkio.bfq.weight.
    let t = v1_tree(false, true);
    let blkio = t.root.join("blkio");
    put(
        &blkio,
        &[
            ("cgroup.procs", ""),
            ("blkio.bfq.weight", "100"),
            ("blkio.throttle.read_bps_device", ""),
        ],
    );
    let mut h = t.h.clone();
    h.v1.push(V1Mount {
        controllers: vec!["blkio".into()],
        mount: blkio.clone(),
    });
    let cg = Cgroup::create_in(&h, None, "b1", Some(&res)).unwrap();
    let d = blkio.join("isobox/b1");
    assert_eq!(read(d.join("blkio.bfq.weight")), "500");
    assert_eq!(
        read(d.join("blkio.throttle.read_bps_device")),
        "8:0 1048576"
    );
    cg.destroy().unwrap();

    // v2: io.max, and the weight mapped onto io.weight's range.
    let t = v2_tree("io memory", true);
    put(&t.root, &[("io.weight", "default 100"), ("io.max", "")]);
    let cg = Cgroup::create_in(&t.h, None, "b2", Some(&res)).unwrap();
    assert_eq!(
        read(cg.paths[0].join("io.weight")),
        blkio_weight_to_io(500).to_string()
    );
    assert_eq!(read(cg.paths[0].join("io.max")), "8:0 rbps=1048576");
    cg.destroy().unwrap();

    // An empty blockIO asks for nothing, so a host without the controller is fine.
    let t = v2_tree("memory", true);
    let empty = LinuxResourcesBuilder::default()
        .block_io(LinuxBlockIoBuilder::default().build().unwrap())
        .build()
        .unwrap();
    Cgroup::create_in(&t.h, None, "b3", Some(&empty))
        .unwrap()
        .destroy()
        .unwrap();
}

/// linux.resources with every field runc reads as unset at zero (dockerd sends
/// blockIO.weight and cpu.shares so for every container).
pub(super) fn zeros_runc_leaves_unset() -> LinuxResources {
    serde_json::from_value(serde_json::json!({
        "blockIO": {"weight": 0, "leafWeight": 0, "weightDevice": [{"major": 8, "minor": 0, "weight": 0}]},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0, "cpus": "", "mems": ""},
        "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernelTCP": 0, "swappiness": u64::MAX, "disableOOMKiller": false},
        "pids": {"limit": 0}
    }))
    .unwrap()
}

#[test]
fn zero_values_are_unset_as_in_runc() {
    let res = zeros_runc_leaves_unset();
    let any = |_: &str| Ok(resources::Flavor::V1);
    assert_eq!(resources::settings(&res, &any).unwrap(), vec![]);
    let v2 = |_: &str| Ok(resources::Flavor::V2);
    assert_eq!(resources::settings(&res, &v2).unwrap(), vec![]);
    for mode in [Mode::V1, Mode::V2, Mode::Hybrid] {
        Cgroup::check(None, "z", Some(&res), mode).unwrap();
    }
    // Nothing is asked of a controller, so a host with none of them is fine, and the
    // kernel's defaults stay.
    let t = v2_tree("", false);
    let cg = Cgroup::create_in(&t.h, None, "z1", Some(&res)).unwrap();
    cg.destroy().unwrap();
    let t = v1_tree(false, true);
    let cg = Cgroup::create_in(&t.h, None, "z2", Some(&res)).unwrap();
    let d = |ctl: &str| t.root.join(ctl).join("isobox/z2");
    assert_eq!(read(d("cpu,cpuacct").join("cpu.shares")), "1024");
    assert_eq!(read(d("cpu,cpuacct").join("cpu.cfs_quota_us")), "-1");
    assert_eq!(read(d("pids").join("pids.max")), "max");
    assert_eq!(read(d("memory").join("memory.swappiness")), "60");
    assert_eq!(
        read(d("memory").join("memory.limit_in_bytes")),
        "9223372036854771712"
    );
    cg.destroy().unwrap();

    // A zero beside a real value leaves only the real one.
    let mut res = zeros_runc_leaves_unset();
    let mut cpu = res.cpu().clone().unwrap();
    cpu.set_quota(Some(20_000));
    res.set_cpu(Some(cpu));
    let s = resources::settings(&res, &any).unwrap();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        s[0].choices,
        vec![("cpu.cfs_quota_us".to_string(), "20000".to_string())]
    );
}

#[test]
fn block_io_weights_take_each_files_range() {
    let blkio = |device: serde_json::Value| -> LinuxResources {
        serde_json::from_value(serde_json::json!({
            "blockIO": {"weight": 500, "weightDevice": [device]}
        }))
        .unwrap()
    };
    let res = blkio(serde_json::json!({"major": 8, "minor": 0, "weight": 300, "leafWeight": 200}));
    let no_leaf = blkio(serde_json::json!({"major": 8, "minor": 0, "weight": 300}));
    let choices = |res: &LinuxResources, f: resources::Flavor| -> Vec<Vec<(String, String)>> {
        let s = resources::settings(res, &|_| Ok(f)).unwrap();
        s.into_iter().map(|s| s.choices).collect()
    };
    let pair = |f: &str, v: &str| (f.to_string(), v.to_string());
    // v2 with BFQ: io.bfq.weight takes blkio's own range, not io.weight's.
    assert_eq!(
        choices(&no_leaf, resources::Flavor::V2),
        vec![
            vec![
                pair("io.bfq.weight", "500"),
                pair("io.weight", &blkio_weight_to_io(500).to_string())
            ],
            vec![
                pair("io.bfq.weight", "8:0 300"),
                pair("io.weight", &format!("8:0 {}", blkio_weight_to_io(300)))
            ],
        ]
    );
    let t = v2_tree("io memory", true);
    put(
        &t.root,
        &[
            ("io.bfq.weight", "default 100"),
            ("io.weight", "default 100"),
        ],
    );
    let cg = Cgroup::create_in(&t.h, None, "w1", Some(&no_leaf)).unwrap();
    // The fake file keeps the last write: the device's.
    assert_eq!(read(cg.paths[0].join("io.bfq.weight")), "8:0 300");
    assert_eq!(read(cg.paths[0].join("io.weight")), "default 100");
    cg.destroy().unwrap();
    // A leaf weight has no v2 file: refused, naming the field.
    let (field, _) = resource_err(Cgroup::create_in(&t.h, None, "w2", Some(&res)).unwrap_err());
    assert_eq!(field, "linux.resources.blockIO.weightDevice.leafWeight");

    // v1 with BFQ: the device weight goes to blkio.bfq.weight_device, the leaf weight to
    // blkio.leaf_weight_device.
    assert_eq!(
        choices(&res, resources::Flavor::V1),
        vec![
            vec![pair("blkio.bfq.weight", "500"), pair("blkio.weight", "500")],
            vec![
                pair("blkio.bfq.weight_device", "8:0 300"),
                pair("blkio.weight_device", "8:0 300")
            ],
            vec![pair("blkio.leaf_weight_device", "8:0 200")],
        ]
    );
}
