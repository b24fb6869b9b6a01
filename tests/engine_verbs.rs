//! The verbs engines use on a live container beyond its lifecycle: pause and resume, update,
//! events. Container backend, real busybox containers (root only).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{stderr, Isobox, TestBundle};

/// A workload that appends to /count on its rootfs as fast as it can (appends: a writer
/// frozen mid-way leaves no half-written value).
fn counter() -> TestBundle {
    TestBundle::sh("while :; do echo x >> /count; done")
}

/// How far the counter has got: the file's length, once it has started.
fn count(rootfs: &Path) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::metadata(rootfs.join("count")) {
            Ok(m) if m.len() > 0 => return m.len(),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the counter never counted");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The one line of a failed verb's error.
fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    err
}

fn wait_status(ib: &Isobox, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ib.state(id)["status"] != want {
        assert!(Instant::now() < deadline, "{id} never {want}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pause_freezes_the_workload_and_resume_lets_it_go_on() {
    require_root!();
    let ib = Isobox::new();
    let b = counter();
    let out = ib.run_detached(&["run", "--detach", "frz"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    count(&b.rootfs());

    let err = one_line_error(&ib.run(&["resume", "frz"]));
    assert!(err.contains("running, not paused"), "{err}");

    let out = ib.run(&["pause", "frz"]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    assert_eq!(ib.state("frz")["status"], "paused");
    let list = ib.run(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["status"], "paused", "{list}");
    let frozen = count(&b.rootfs());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&b.rootfs()), frozen, "the counter ran while paused");
    let err = one_line_error(&ib.run(&["pause", "frz"]));
    assert!(err.contains("already paused"), "{err}");
    // A signal other than SIGKILL waits for the resume.
    let out = ib.run(&["kill", "frz", "TERM"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ib.state("frz")["status"], "paused");

    let out = ib.run(&["resume", "frz"]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    // The shell as PID 1 ignores SIGTERM (no handler): it counts on.
    assert_eq!(ib.state("frz")["status"], "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&b.rootfs()) <= frozen {
        assert!(Instant::now() < deadline, "the counter never went on");
        std::thread::sleep(Duration::from_millis(10));
    }

    // A paused container can still be deleted by force: SIGKILL ends it.
    let out = ib.run(&["pause", "frz"]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    let err = one_line_error(&ib.run(&["delete", "frz"]));
    assert!(err.contains("paused"), "{err}");
    let out = ib.run(&["delete", "--force", "frz"]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    ib.assert_nothing_left("frz", Some(b.path()));
}

#[test]
fn a_paused_container_dies_of_sigkill() {
    require_root!();
    let ib = Isobox::new();
    let b = counter();
    let out = ib.run_detached(&["run", "--detach", "frzkill"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ib.run(&["pause", "frzkill"]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    let out = ib.run(&["kill", "frzkill", "KILL"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    wait_status(&ib, "frzkill", "stopped");
    let err = one_line_error(&ib.run(&["pause", "frzkill"]));
    assert!(err.contains("stopped"), "{err}");
    let err = one_line_error(&ib.run(&["resume", "frzkill"]));
    assert!(err.contains("stopped, not paused"), "{err}");
    let out = ib.run(&["delete", "frzkill"]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    ib.assert_nothing_left("frzkill", Some(b.path()));
}
