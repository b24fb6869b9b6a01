//! What a bundle may ask of the host through the container backend: only namespaced sysctls
//! (in the container's own namespace), a device cgroup that denies what it does not list,
//! real user and group ids, and limits and capabilities the runtime can grant, refused at
//! `create` otherwise.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use support::{stderr, stdout, Isobox, TestBundle};

/// The one line of a refused run, checked to name `field`, and that nothing was left.
fn assert_refused(ib: &Isobox, out: &Output, id: &str, b: &TestBundle, field: &str) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "{id} ran: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(field), "{id}: {field} not named: {err}");
    ib.assert_nothing_left(id, Some(b.path()));
    err
}

fn sysctl_value(key: &str) -> String {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

fn remove_namespace(c: &mut Value, typ: &str) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

fn add_cap(c: &mut Value, cap: &str) {
    for set in ["bounding", "effective", "permitted"] {
        c["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!(cap));
    }
}

#[test]
fn host_wide_sysctls_are_refused_and_the_host_keeps_its_values() {
    require_root!();
    let ib = Isobox::new();
    for (key, value) in [
        ("kernel.printk_ratelimit", None),
        ("kernel.core_pattern", Some("|/bin/false %p")),
        ("vm.overcommit_memory", None),
    ] {
        let before = sysctl_value(key);
        let value = value.map_or_else(
            || (before.parse::<u64>().unwrap() + 1).to_string(),
            str::to_string,
        );
        let mut b = TestBundle::sh("true");
        b.edit(|c| c["linux"]["sysctl"] = json!({ key: value }));
        let id = format!("sysctl-{}", key.replace(['.', '_'], "-"));
        let out = ib.run_bundle(&b, &id);
        let err = assert_refused(&ib, &out, &id, &b, &format!("linux.sysctl.{key}"));
        assert!(err.contains("host"), "{err}");
        assert_eq!(sysctl_value(key), before, "{key} changed on the host");
    }
}

#[test]
fn a_network_sysctl_needs_the_containers_own_network_namespace() {
    require_root!();
    let ib = Isobox::new();
    let host = sysctl_value("net.ipv4.ip_forward");
    let want = if host == "1" { "0" } else { "1" };
    let mut b = TestBundle::sh("cat /proc/sys/net/ipv4/ip_forward");
    b.edit(|c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": want}));
    let out = ib.run_bundle(&b, "netsysctl");
    assert_eq!(stdout(&out), format!("{want}\n"), "{}", stderr(&out));
    assert_eq!(sysctl_value("net.ipv4.ip_forward"), host);

    b.edit(|c| remove_namespace(c, "network"));
    let out = ib.run_bundle(&b, "netsysctl-hostnet");
    assert_refused(
        &ib,
        &out,
        "netsysctl-hostnet",
        &b,
        "linux.sysctl.net.ipv4.ip_forward",
    );
    // Joining the runtime's own network namespace by path is the host's too (runc's rule).
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "network", "path": "/proc/self/ns/net"}))
    });
    let out = ib.run_bundle(&b, "netsysctl-joined");
    let err = assert_refused(
        &ib,
        &out,
        "netsysctl-joined",
        &b,
        "linux.sysctl.net.ipv4.ip_forward",
    );
    assert!(err.contains("host's network namespace"), "{err}");
    assert_eq!(sysctl_value("net.ipv4.ip_forward"), host);
}

#[test]
fn an_ipc_sysctl_needs_an_ipc_namespace() {
    require_root!();
    let ib = Isobox::new();
    let host = sysctl_value("kernel.shmmax");
    let mut b = TestBundle::sh("cat /proc/sys/kernel/shmmax");
    b.edit(|c| c["linux"]["sysctl"] = json!({"kernel.shmmax": "12345678"}));
    let out = ib.run_bundle(&b, "shmmax");
    assert_eq!(stdout(&out), "12345678\n", "{}", stderr(&out));
    assert_eq!(sysctl_value("kernel.shmmax"), host);

    b.edit(|c| remove_namespace(c, "ipc"));
    let out = ib.run_bundle(&b, "shmmax-hostipc");
    let err = assert_refused(
        &ib,
        &out,
        "shmmax-hostipc",
        &b,
        "linux.sysctl.kernel.shmmax",
    );
    assert!(err.contains("ipc namespace"), "{err}");
    assert_eq!(sysctl_value("kernel.shmmax"), host);
}

/// Make a kvm node (10:232, not on the default allowlist) and open it: the device cgroup
/// must refuse the open even though mknod (allowed for every device, as in runc) worked.
const MAKE_AND_OPEN_KVM: &str = "mknod /dev/xkvm c 10 232 && echo made; \
     cat /dev/xkvm 2>/tmp/err && echo opened; grep -q 'not permitted' /tmp/err && echo eperm; \
     echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; \
     echo x 2>/dev/null > /dev/full || echo full-enospc";

const DEFAULT_DEVICES_OK: &str = "null-ok\n4\n4\nfull-enospc\n";

#[test]
fn a_device_not_allowed_cannot_be_opened_even_without_linux_resources() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh(MAKE_AND_OPEN_KVM);
    b.edit(|c| {
        add_cap(c, "CAP_MKNOD");
        assert!(c["linux"].get("resources").is_none());
    });
    let out = ib.run_bundle(&b, "xkvm");
    assert_eq!(
        stdout(&out),
        format!("made\neperm\n{DEFAULT_DEVICES_OK}"),
        "{}",
        stderr(&out)
    );
    ib.assert_nothing_left("xkvm", Some(b.path()));
}

/// `isobox spec` writes runc's default: deny-all device rules, no CAP_MKNOD.
#[test]
fn the_default_spec_denies_devices_and_mknod() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    std::fs::remove_file(b.path().join("config.json")).unwrap();
    let out = ib.run(&["spec", "--bundle", b.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(b.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        spec["linux"]["resources"]["devices"],
        json!([{"allow": false, "access": "rwm"}])
    );
    let bounding = spec["process"]["capabilities"]["bounding"].clone();
    assert_eq!(
        bounding,
        json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    );
    b.config = spec;
    b.edit(|c| {
        c["process"]["args"] = json!(["/bin/sh", "-c", MAKE_AND_OPEN_KVM]);
        c["root"]["readonly"] = json!(false);
    });
    let out = ib.run_bundle(&b, "spec-xkvm");
    // No CAP_MKNOD: nothing is made; the open of nothing fails, not with EPERM.
    assert_eq!(stdout(&out), DEFAULT_DEVICES_OK, "{}", stderr(&out));
    b.edit(|c| add_cap(c, "CAP_MKNOD"));
    let out = ib.run_bundle(&b, "spec-xkvm-mknod");
    assert_eq!(
        stdout(&out),
        format!("made\neperm\n{DEFAULT_DEVICES_OK}"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn listed_devices_and_explicit_allow_rules_are_usable() {
    require_root!();
    if !Path::new("/dev/fuse").exists() {
        support_skip("the host has no /dev/fuse (10:229)");
        return;
    }
    let ib = Isobox::new();
    // linux.devices: made by the init and allowed in the cgroup.
    let mut b = TestBundle::sh("true < /dev/fuse && echo fuse-ok");
    b.edit(|c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
        c["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    });
    let out = ib.run_bundle(&b, "listed");
    assert_eq!(stdout(&out), "fuse-ok\n", "{}", stderr(&out));

    // A node the container makes itself: refused, until a resources.devices rule allows it.
    let script = "mknod /dev/myfuse c 10 229 && true < /dev/myfuse 2>/dev/null && echo open-ok \
                  || echo open-refused";
    let mut b = TestBundle::sh(script);
    b.edit(|c| add_cap(c, "CAP_MKNOD"));
    let out = ib.run_bundle(&b, "unlisted");
    assert_eq!(stdout(&out), "open-refused\n", "{}", stderr(&out));
    b.edit(|c| {
        c["linux"]["resources"] = json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}
        ]})
    });
    let out = ib.run_bundle(&b, "allowed");
    assert_eq!(stdout(&out), "open-ok\n", "{}", stderr(&out));
}

fn support_skip(reason: &str) {
    isobox_common::skip::skip(reason);
}

/// The v1 devices.list of the container's cgroup (hybrid or v1 host), None on pure v2.
fn devices_list(id: &str) -> Option<String> {
    let file = PathBuf::from("/sys/fs/cgroup/devices/isobox")
        .join(id)
        .join("devices.list");
    std::fs::read_to_string(file).ok()
}

#[test]
fn the_v1_device_cgroup_lists_only_allowed_devices() {
    require_root!();
    if !Path::new("/sys/fs/cgroup/devices").is_dir() {
        // Not a skip of something that should run: v1's devices.list does not exist on pure
        // v2, where the BPF program enforces the same rules (the open tests above run there).
        isobox_common::skip::not_applicable(
            "no v1 devices controller on pure cgroup v2 (the BPF program is tested by the open tests)",
        );
        return;
    }
    let ib = Isobox::new();
    let b = TestBundle::sh("exec sleep 100");
    let out = ib.run_detached(&["run", "--detach", "devlist"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let list = devices_list("devlist").expect("the container's devices.list");
    let out = ib.run(&["delete", "--force", "devlist"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<&str> = list.lines().collect();
    assert!(!lines.contains(&"a *:* rwm"), "allow-all left: {list}");
    for want in ["c 1:3 rwm", "c 1:9 rwm", "c 136:* rwm", "c *:* m"] {
        assert!(lines.contains(&want), "{want} missing: {list}");
    }
    assert!(!list.contains("10:232"), "{list}");
    ib.assert_nothing_left("devlist", Some(b.path()));
}

#[test]
fn uid_and_gid_minus_one_are_refused() {
    require_root!();
    let ib = Isobox::new();
    for (id, edit, field) in [
        (
            "uid-1",
            json!({"uid": 4294967295u32, "gid": 0}),
            "process.user.uid",
        ),
        (
            "gid-1",
            json!({"uid": 0, "gid": 4294967295u32}),
            "process.user.gid",
        ),
        (
            "groups-1",
            json!({"uid": 0, "gid": 0, "additionalGids": [10, 4294967295u32]}),
            "process.user.additionalGids[1]",
        ),
    ] {
        let mut b = TestBundle::sh("id");
        b.edit(|c| c["process"]["user"] = edit);
        let out = ib.run_bundle(&b, id);
        let err = assert_refused(&ib, &out, id, &b, field);
        assert!(
            stdout(&out).is_empty(),
            "the workload ran: {}",
            stdout(&out)
        );
        assert!(err.contains("4294967295"), "{err}");
    }
}

/// `isobox create` run without CAP_SYS_RESOURCE in its bounding set (so as root without it
/// in any set) and with a hard RLIMIT_NOFILE of 4096, whatever the host grants the test.
fn create_as_limited_runtime(ib: &Isobox, b: &TestBundle, id: &str) -> Output {
    let mut cmd = ib.cmd();
    cmd.args(["create", "--bundle"]).arg(b.path()).arg(id);
    // SAFETY: only async-signal-safe calls (prctl, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_CAPBSET_DROP, 24, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The error goes to stderr before create returns; a created init would hold a pipe.
    support::status_with_stderr(cmd)
}

#[test]
fn an_rlimit_above_the_runtimes_hard_limit_fails_create() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    b.edit(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 8192, "soft": 1024}])
    });
    let out = create_as_limited_runtime(&ib, &b, "nofile");
    let err = assert_refused(&ib, &out, "nofile", &b, "process.rlimits[0]");
    assert!(
        err.contains("CAP_SYS_RESOURCE") && err.contains("4096"),
        "{err}"
    );
    // At the runtime's hard limit it is created (and then deleted).
    b.edit(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}])
    });
    let out = create_as_limited_runtime(&ib, &b, "nofile-ok");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ib.run(&["delete", "--force", "nofile-ok"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ib.assert_nothing_left("nofile-ok", Some(b.path()));
}

#[test]
fn a_capability_outside_the_runtimes_bounding_set_fails_create() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    let index = b.config["process"]["capabilities"]["effective"]
        .as_array()
        .unwrap()
        .len();
    b.edit(|c| {
        c["process"]["capabilities"]["effective"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_RESOURCE"))
    });
    let out = create_as_limited_runtime(&ib, &b, "capbnd");
    let err = assert_refused(
        &ib,
        &out,
        "capbnd",
        &b,
        &format!("process.capabilities.effective[{index}]"),
    );
    assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
}
