//! Faults in the middle of `create` leave nothing that no command can see or remove: a
//! killed `create` shows up in `list`/`state` and `delete --force` removes what it made (state
//! dir, cgroups, the init, a VM's host process and hypervisor); plus the `delete` rules of the
//! runtime spec (only a stopped container; `--force` of an unknown id succeeds).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cgroup_dirs, stderr, Isobox, TestBundle};

/// `isobox create` in the background, its stdio away from the test's pipes (a hook or VM left
/// behind must not hold them open).
fn spawn_create(ib: &Isobox, bundle: &Path, id: &str, extra: &[&str]) -> Child {
    ib.cmd()
        .arg("create")
        .args(extra)
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listed(ib: &Isobox, id: &str) -> Option<Value> {
    let out = ib.run(&["list", "--format", "json"]);
    assert!(out.status.success(), "list: {}", stderr(&out));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all.as_array()?.iter().find(|c| c["id"] == id).cloned()
}

fn kill(child: &mut Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own, unreaped child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    child.wait().unwrap();
}

/// A bundle whose createRuntime hook records its pid and then sleeps.
fn bundle_with_sleeping_hook() -> (TestBundle, PathBuf) {
    let mut b = TestBundle::sh("true");
    let pid_file = b.path().join("hook.pid");
    let script = b.path().join("hook.sh");
    fs::write(
        &script,
        format!(
            "echo $$ > {}.tmp\nmv {0}.tmp {0}\nexec sleep 30\n",
            pid_file.display()
        ),
    )
    .unwrap();
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", script]}]})
    });
    (b, pid_file)
}

/// kill `create` with `sig` while its createRuntime hook runs: the id stays visible and
/// deletable, nothing is left after `delete --force`, and the id can be used again.
fn killed_create_is_visible_and_deletable(sig: libc::c_int, id: &str) {
    let ib = Isobox::new();
    let (mut b, hook_pid) = bundle_with_sleeping_hook();
    let mut create = spawn_create(&ib, b.path(), id, &[]);
    wait_for(
        "the createRuntime hook to run",
        Duration::from_secs(30),
        || hook_pid.exists(),
    );
    // While create runs, the container is there, being created.
    assert_eq!(ib.state(id)["status"], "creating");
    assert_eq!(ib.state(id)["pid"], 0);
    let out = ib.run(&["delete", id]);
    assert!(!out.status.success(), "deleted a container being created");
    assert!(stderr(&out).contains("being created"), "{}", stderr(&out));
    kill(&mut create, sig);
    let hook: i32 = fs::read_to_string(&hook_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) of the orphaned hook; it is the test's own sleep.
    unsafe { libc::kill(hook, libc::SIGKILL) };

    // The cgroup made before the hook ran is what used to leak.
    assert!(
        cgroup_dirs(id).iter().any(|d| d.exists()),
        "no cgroup of {id} was made: the test does not reach the hook stage"
    );
    let entry = listed(&ib, id).unwrap_or_else(|| panic!("{id} is not listed"));
    assert_eq!(entry["status"], "stopped", "{entry}");
    assert_eq!(ib.state(id)["status"], "stopped");
    let out = ib.run(&["start", id]);
    assert!(!out.status.success(), "started a half-created container");
    let out = ib.run(&["delete", "--force", id]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    ib.assert_nothing_left(id, Some(b.path()));

    // The id is free again.
    b.edit(|c| c["hooks"] = json!({}));
    let out = ib.run_bundle(&b, id);
    assert!(out.status.success(), "run after delete: {}", stderr(&out));
    ib.assert_nothing_left(id, Some(b.path()));
}

#[test]
fn sigkill_of_create_during_a_create_runtime_hook_leaves_a_deletable_container() {
    require_root!();
    killed_create_is_visible_and_deletable(libc::SIGKILL, "leak-kill");
}

#[test]
fn sigterm_of_create_during_a_create_runtime_hook_leaves_a_deletable_container() {
    require_root!();
    killed_create_is_visible_and_deletable(libc::SIGTERM, "leak-term");
}

#[test]
fn delete_force_stops_a_create_still_in_progress() {
    require_root!();
    let ib = Isobox::new();
    let (b, hook_pid) = bundle_with_sleeping_hook();
    let mut create = spawn_create(&ib, b.path(), "leak-busy", &[]);
    wait_for(
        "the createRuntime hook to run",
        Duration::from_secs(30),
        || hook_pid.exists(),
    );
    let out = ib.run(&["delete", "--force", "leak-busy"]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    let status = create.wait().unwrap();
    assert!(!status.success(), "create went on after delete --force");
    let hook: i32 = fs::read_to_string(&hook_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(hook, libc::SIGKILL) };
    ib.assert_nothing_left("leak-busy", Some(b.path()));
}

#[test]
fn delete_force_of_an_unknown_id_succeeds() {
    require_root!();
    let ib = Isobox::new();
    let out = ib.run(&["delete", "--force", "ghost"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    // Without --force it is still an error.
    let out = ib.run(&["delete", "ghost"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container \"ghost\" does not exist"),
        "{}",
        stderr(&out)
    );
    // A malformed id is refused even with --force.
    let out = ib.run(&["delete", "--force", "../x"]);
    assert!(!out.status.success());
}

#[test]
fn delete_of_a_created_container_fails_and_keeps_it() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("true");
    let out = ib.run_detached(&["create", "fresh"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = ib.state("fresh")["pid"].as_i64().unwrap() as i32;
    let out = ib.run(&["delete", "fresh"]);
    assert!(!out.status.success(), "deleted a created container");
    assert!(
        stderr(&out).contains("is created: only a stopped container can be deleted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ib.state("fresh")["status"], "created");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the init went away"
    );
    let out = ib.run(&["delete", "--force", "fresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ib.assert_nothing_left("fresh", Some(b.path()));
}

/// Host processes whose command line mentions `needle` (the VM host and qemu name the state
/// dir in theirs).
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                found.push((pid, c));
            }
        }
    }
    found
}

#[test]
fn sigkill_of_a_microvm_create_during_boot_leaves_no_vm() {
    if let Some(reason) = support::vm_skip_reason() {
        isobox_common::skip::skip(&reason);
        return;
    }
    let ib = Isobox::new();
    let b = TestBundle::sh("true");
    let id = "leak-vm";
    let state_dir = ib.root.path().join(id);
    let needle = state_dir.to_string_lossy().into_owned();
    for round in ["pdeathsig", "delete --force"] {
        let mut create = spawn_create(&ib, b.path(), id, &["--backend", "microvm"]);
        // Booting (the first run may provision the kernel): qemu has been started, or, for
        // the built-in VMM, which runs inside the VM host, the VM host has been.
        wait_for("the VM to boot", Duration::from_secs(180), || {
            let builtin = std::fs::read(state_dir.join("vm.json"))
                .ok()
                .and_then(|c| serde_json::from_slice::<Value>(&c).ok())
                .is_some_and(|c| c["hypervisor"] == "builtin");
            state_dir.join("hypervisor.pid").exists()
                || (builtin && state_dir.join("vm-host.pid").exists())
        });
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            !processes_mentioning(&needle).is_empty(),
            "no VM host (or qemu) running during boot"
        );
        if round == "delete --force" {
            // While create still runs: delete --force ends it and everything it started.
            let out = ib.run(&["delete", "--force", id]);
            assert!(out.status.success(), "delete --force: {}", stderr(&out));
            assert!(!create.wait().unwrap().success());
        } else {
            kill(&mut create, libc::SIGKILL);
            // The VM host and qemu die with the create that started them.
            wait_for(
                "the VM host and qemu to end on their own",
                Duration::from_secs(10),
                || processes_mentioning(&needle).is_empty(),
            );
            let entry = listed(&ib, id).unwrap_or_else(|| panic!("{id} is not listed"));
            assert_eq!(entry["status"], "stopped", "{entry}");
            assert_eq!(entry["backend"], "microvm", "{entry}");
            let out = ib.run(&["delete", "--force", id]);
            assert!(out.status.success(), "delete --force: {}", stderr(&out));
        }
        assert!(!state_dir.exists(), "{round}: state dir left");
        let left = processes_mentioning(&needle);
        assert!(left.is_empty(), "{round}: processes left: {left:?}");
    }
}
