//! The runtime spec's lifecycle through the CLI (root only): a container without a process,
//! linux.rootfsPropagation, a config without a mount namespace, and what a failing hook of
//! each kind does to create, start, run and delete.

mod support;

use serde_json::{json, Value};
use support::{stderr, stdout, Isobox, TestBundle};

/// The one line of a failed command's stderr.
fn one_line(out: &std::process::Output) -> String {
    let text = stderr(out);
    assert_eq!(text.lines().count(), 1, "not one line: {text:?}");
    text.trim_end().to_string()
}

/// The optional fields of the host's `/` in our own mountinfo (its propagation).
fn host_root_propagation() -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("a / line")
        .to_string();
    let fields: Vec<&str> = line.split(' ').collect();
    let dash = fields.iter().position(|f| *f == "-").unwrap();
    fields[6..dash].join(" ")
}

fn hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

/// Create `id` from a bundle without `process` (on the microVM with `microvm`): it is created,
/// `start` fails naming the field and leaves it created, `delete --force` leaves nothing.
fn create_without_process(id: &str, microvm: bool) {
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    b.edit(|c| {
        c.as_object_mut().unwrap().remove("process");
        if microvm {
            c["annotations"] = json!({"io.isobox.backend": "microvm"});
        }
    });
    let out = ib.run_detached(&["create", id], b.path());
    assert!(out.status.success(), "create: {}", stderr(&out));
    assert_eq!(ib.state(id)["status"], "created");
    let out = ib.run(&["start", id]);
    assert!(!out.status.success());
    let line = one_line(&out);
    assert!(
        line.contains(
            "config.json: process: missing; a container without a process cannot be started"
        ),
        "{line}"
    );
    // Refused before the init was released: still created, still startable in principle.
    assert_eq!(ib.state(id)["status"], "created");
    let out = ib.run(&["delete", "--force", id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    // The microVM's rootfs is packed, not mounted: no bundle mount to look for.
    ib.assert_nothing_left(id, (!microvm).then(|| b.path()));
}

#[test]
fn create_without_process_then_start_fails_and_the_container_stays_created() {
    require_root!();
    create_without_process("noproc", false);
}

/// Run `awk` on the container's own mountinfo line for `/` with rootfsPropagation `prop`.
fn root_line_with_propagation(prop: &str) -> String {
    let ib = Isobox::new();
    let mut b = TestBundle::sh("awk '$5 == \"/\"' /proc/self/mountinfo");
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!(prop));
    let id = format!("prop-{prop}");
    let out = ib.run_bundle(&b, &id);
    assert!(
        out.status.success(),
        "rootfsPropagation {prop}: {}",
        stderr(&out)
    );
    ib.assert_nothing_left(&id, Some(b.path()));
    let line = stdout(&out);
    assert_eq!(line.lines().count(), 1, "{line}");
    line
}

#[test]
fn rootfs_propagation_shared_makes_the_new_root_shared() {
    require_root!();
    let before = host_root_propagation();
    let line = root_line_with_propagation("shared");
    assert!(line.contains(" shared:"), "{line}");
    assert_eq!(
        host_root_propagation(),
        before,
        "the host's / changed propagation"
    );
}

#[test]
fn rootfs_propagation_unbindable_runs_and_the_root_is_unbindable() {
    require_root!();
    let line = root_line_with_propagation("unbindable");
    assert!(line.contains(" unbindable "), "{line}");
}

#[test]
fn rootfs_propagation_slave_and_private_keep_working() {
    require_root!();
    for prop in ["slave", "private", "rslave", "rprivate"] {
        let line = root_line_with_propagation(prop);
        assert!(
            !line.contains("shared:") && !line.contains("unbindable"),
            "{prop}: {line}"
        );
    }
}

/// The default test config without a mount namespace and without what would need one.
fn without_mount_ns(c: &mut Value) {
    c["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]);
    c["mounts"] = json!([]);
    let linux = c["linux"].as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
}

#[test]
fn no_mount_namespace_runs_in_the_rootfs_and_mounts_nothing_on_the_host() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("cat /marker; hostname; test -e /etc/passwd && echo passwd");
    std::fs::write(b.rootfs().join("marker"), "only in the rootfs\n").unwrap();
    b.edit(without_mount_ns);
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prop_before = host_root_propagation();
    let out = ib.run_bundle(&b, "nomntns");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "only in the rootfs\nisobox-test\npasswd\n",
        "{}",
        stderr(&out)
    );
    ib.assert_nothing_left("nomntns", Some(b.path()));
    assert_eq!(host_root_propagation(), prop_before);
    let rootfs = std::fs::canonicalize(b.rootfs()).unwrap();
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for text in [&mounts_before, &mounts_after] {
        assert!(
            !text.contains(&*rootfs.to_string_lossy()),
            "a mount of the rootfs on the host"
        );
    }
}

#[test]
fn no_mount_namespace_refuses_what_would_mount_on_the_host() {
    require_root!();
    let ib = Isobox::new();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 6] = [
        (
            "mounts[0]",
            |c| c["mounts"] = json!([{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]),
        ),
        ("linux.maskedPaths", |c| {
            c["linux"]["maskedPaths"] = json!(["/proc/kcore"])
        }),
        ("linux.readonlyPaths", |c| {
            c["linux"]["readonlyPaths"] = json!(["/proc/sys"])
        }),
        ("root.readonly", |c| c["root"]["readonly"] = json!(true)),
        ("linux.rootfsPropagation", |c| {
            c["linux"]["rootfsPropagation"] = json!("shared")
        }),
        (
            "linux.devices",
            |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/xnull", "type": "c", "major": 1, "minor": 3}])
            },
        ),
    ];
    for (field, add) in cases {
        let mut b = TestBundle::sh("true");
        b.edit(without_mount_ns);
        b.edit(add);
        let out = ib.run_bundle(&b, "refused");
        assert!(!out.status.success(), "{field}: ran");
        let line = one_line(&out);
        assert!(
            line.contains(&format!("config.json: {field}: needs a mount namespace")),
            "{field}: {line}"
        );
        ib.assert_nothing_left("refused", Some(b.path()));
        assert!(!b.rootfs().join("dev/xnull").exists());
    }
}

#[test]
fn poststart_and_poststop_hooks_after_a_failing_one_still_run() {
    require_root!();
    let ib = Isobox::new();
    for kind in ["poststart", "poststop"] {
        let mut b = TestBundle::sh("true");
        let mark = b.path().join("second-ran");
        b.edit(|c| {
            c["hooks"] = json!({kind: [hook("exit 3"), hook(&format!("touch {}", mark.display()))]})
        });
        let out = ib.run_bundle(&b, kind);
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        let line = one_line(&out);
        assert!(
            line.starts_with("isobox: warning: ")
                && line.contains(&format!("{kind} hook /bin/sh"))
                && line.contains("exit status: 3"),
            "{kind}: {line}"
        );
        assert!(
            mark.exists(),
            "the {kind} hook after the failing one did not run"
        );
        ib.assert_nothing_left(kind, Some(b.path()));
    }
}

#[test]
fn failing_prestart_create_runtime_and_create_container_hooks_fail_create() {
    require_root!();
    let ib = Isobox::new();
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let mut b = TestBundle::sh("true");
        let mark = b.path().join("later-ran");
        b.edit(|c| {
            c["hooks"] = json!({kind: [hook("exit 4"), hook(&format!("touch {}", mark.display()))]})
        });
        let id = kind.to_lowercase();
        let out = ib.run_detached(&["create", &id], b.path());
        assert!(!out.status.success(), "{kind}: create succeeded");
        let line = one_line(&out);
        assert!(
            line.contains(&format!("{kind} hook /bin/sh: failed: exit status: 4")),
            "{kind}: {line}"
        );
        assert!(!line.contains("container init: container init"), "{line}");
        assert!(!mark.exists(), "{kind}: a hook after the failing one ran");
        ib.assert_nothing_left(&id, Some(b.path()));
    }
}

/// A startContainer hook that fails (it runs in the container: /bin/sh of the rootfs), before
/// a workload that would leave /workload-ran in the rootfs.
fn failing_start_container(b: &mut TestBundle) {
    b.edit(|c| {
        c["process"]["args"] = json!(["/bin/sh", "-c", "touch /workload-ran"]);
        c["hooks"] = json!({"startContainer": [hook("exit 5")]});
    });
}

#[test]
fn failing_start_container_hook_fails_start_and_the_container_stops() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    failing_start_container(&mut b);
    let out = ib.run_detached(&["create", "startfail"], b.path());
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = ib.run(&["start", "startfail"]);
    assert!(!out.status.success(), "start succeeded");
    let line = one_line(&out);
    assert!(
        line.contains("startContainer hook /bin/sh: failed: exit status: 5"),
        "{line}"
    );
    assert_eq!(ib.state("startfail")["status"], "stopped");
    assert!(
        !b.rootfs().join("workload-ran").exists(),
        "the workload ran"
    );
    let out = ib.run(&["delete", "startfail"]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    ib.assert_nothing_left("startfail", Some(b.path()));
}

#[test]
fn failing_start_container_hook_fails_run_and_leaves_nothing() {
    require_root!();
    let ib = Isobox::new();
    for detach in [false, true] {
        let mut b = TestBundle::sh("true");
        failing_start_container(&mut b);
        let out = if detach {
            ib.run_detached(&["run", "--detach", "runfail"], b.path())
        } else {
            ib.run_bundle(&b, "runfail")
        };
        assert!(!out.status.success(), "run (detach {detach}) succeeded");
        let line = one_line(&out);
        assert!(
            line.contains("startContainer hook /bin/sh: failed: exit status: 5"),
            "{line}"
        );
        ib.assert_nothing_left("runfail", Some(b.path()));
        assert!(
            !b.rootfs().join("workload-ran").exists(),
            "the workload ran"
        );
    }
}

#[test]
fn microvm_create_without_process_then_start_fails_and_the_vm_stays_created() {
    if let Some(reason) = support::vm_skip_reason() {
        isobox_common::skip::skip(&reason);
        return;
    }
    create_without_process("vmnoproc", true);
}
