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

/// The value of cgroup file `name` in whichever of the container's cgroup directories has it.
fn cgroup_value(ib: &Isobox, id: &str, name: &str) -> Option<String> {
    let st = ib.state(id);
    st["isobox"]["cgroup"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| std::fs::read_to_string(Path::new(p.as_str().unwrap()).join(name)).ok())
        .map(|v| v.trim().to_string())
}

fn memory_limit(ib: &Isobox, id: &str) -> Option<String> {
    cgroup_value(ib, id, "memory.limit_in_bytes").or_else(|| cgroup_value(ib, id, "memory.max"))
}

fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(path) {
            if t.ends_with('\n') {
                return t;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn update_changes_the_cgroup_of_the_running_container() {
    require_root!();
    let ib = Isobox::new();
    // Forks sleepers once /go exists, counting with builtins only (it cannot fork while
    // they live), then stays.
    let mut b = TestBundle::sh(
        "while [ ! -e /go ]; do sleep 0.05; done; \
         (for i in $(seq 20); do sleep 30 & echo $! >> /tmp/pids; done) 2>/dev/null; \
         n=0; while read -r l; do n=$((n+1)); done < /tmp/pids; echo started=$n > /result; \
         exec sleep 100",
    );
    b.edit(|c| {
        c["linux"]["resources"] =
            serde_json::json!({"pids": {"limit": 50}, "memory": {"limit": 128 << 20}})
    });
    let out = ib.run_detached(&["run", "--detach", "upd"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cgroup_value(&ib, "upd", "pids.max").as_deref(), Some("50"));

    let out = ib.run(&["update", "--pids-limit", "8", "--memory", "64m", "upd"]);
    assert!(out.status.success(), "update: {}", stderr(&out));
    assert_eq!(cgroup_value(&ib, "upd", "pids.max").as_deref(), Some("8"));
    assert_eq!(memory_limit(&ib, "upd").as_deref(), Some("67108864"));
    let st = ib.state("upd");
    assert_eq!(st["isobox"]["resources"]["pids"]["limit"], 8, "{st}");
    assert_eq!(
        st["isobox"]["resources"]["memory"]["limit"],
        64 << 20,
        "{st}"
    );

    // runc's resources document on standard input; zeros leave limits as they are.
    let mut child = ib
        .cmd()
        .args(["update", "--resources", "-", "upd"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        br#"{"memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0}, "pids": {"limit": 6}}"#,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "update -r -: {}", stderr(&out));
    assert_eq!(cgroup_value(&ib, "upd", "pids.max").as_deref(), Some("6"));
    assert_eq!(memory_limit(&ib, "upd").as_deref(), Some("67108864"));

    // Bad input: one line naming what is wrong, and nothing changes.
    let bad = b.path().join("bad.json");
    std::fs::write(&bad, r#"{"pids": {"limit": "many"}}"#).unwrap();
    let err = one_line_error(&ib.run(&["update", "-r", bad.to_str().unwrap(), "upd"]));
    assert!(
        err.contains("bad.json") && err.contains("pids.limit"),
        "{err}"
    );
    let err = one_line_error(&ib.run(&["update", "--memory", "lots", "upd"]));
    assert!(err.contains("--memory"), "{err}");
    let err = one_line_error(&ib.run(&["update", "--memory-swap", "1m", "upd"]));
    assert!(err.contains("linux.resources.memory.swap"), "{err}");
    assert_eq!(cgroup_value(&ib, "upd", "pids.max").as_deref(), Some("6"));

    // The new pids limit holds: the shell and its sleepers stay below 6.
    std::fs::write(b.rootfs().join("go"), "").unwrap();
    let result = wait_file(&b.rootfs().join("result"));
    let started: usize = result
        .trim()
        .strip_prefix("started=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected {result:?}"));
    assert!(
        (1..6).contains(&started),
        "{started} sleepers despite pids.limit 6"
    );

    let out = ib.run(&["delete", "--force", "upd"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = one_line_error(&ib.run(&["update", "--pids-limit", "9", "upd"]));
    assert!(err.contains("does not exist"), "{err}");
    ib.assert_nothing_left("upd", Some(b.path()));
}

#[test]
fn events_prints_runcs_stats_and_oom_events() {
    require_root!();
    use std::io::{BufRead, BufReader};
    let ib = Isobox::new();
    // Busy for a moment (CPU time to report), then an OOM kill once /go exists.
    let mut b = TestBundle::sh(
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; \
         while [ ! -e /go ]; do sleep 0.05; done; tail /dev/zero; exec sleep 100",
    );
    b.edit(|c| {
        c["linux"]["resources"] =
            serde_json::json!({"pids": {"limit": 20}, "memory": {"limit": 32 << 20}})
    });
    let out = ib.run_detached(&["run", "--detach", "ev"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));

    let out = ib.run(&["events", "--stats", "ev"]);
    assert!(out.status.success(), "events --stats: {}", stderr(&out));
    let text = support::stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let ev: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "ev");
    let data = &ev["data"];
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert!(data["cpu"]["usage"]["kernel"].is_u64(), "{data}");
    assert!(data["cpu"]["throttling"].is_object(), "{data}");
    assert!(data["pids"]["current"].as_u64().unwrap() >= 1, "{data}");
    assert_eq!(data["pids"]["limit"], 20, "{data}");
    assert_eq!(data["memory"]["usage"]["limit"], 32 << 20, "{data}");
    assert!(data["memory"]["usage"]["failcnt"].is_u64(), "{data}");
    assert!(
        data["blkio"].is_object() && data["hugetlb"].is_object(),
        "{data}"
    );
    assert!(data["network_interfaces"].is_null(), "{data}");

    // Without --stats: stats every interval, and an oom event when the OOM killer runs.
    let mut events = ib
        .cmd()
        .args(["events", "--interval", "200ms", "ev"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    let mut next = || -> serde_json::Value {
        serde_json::from_str(&lines.next().expect("events ended").unwrap()).unwrap()
    };
    assert_eq!(next()["type"], "stats");
    assert_eq!(next()["type"], "stats");
    std::fs::write(b.rootfs().join("go"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ev = next();
        assert_eq!(ev["id"], "ev");
        if ev["type"] == "oom" {
            assert_eq!(ev, serde_json::json!({"type": "oom", "id": "ev"}));
            break;
        }
        assert_eq!(ev["type"], "stats", "{ev}");
        assert!(Instant::now() < deadline, "no oom event");
    }
    // It ends by itself once the container is gone.
    let out = ib.run(&["delete", "--force", "ev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "events outlived the container");
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = one_line_error(&ib.run(&["events", "--stats", "ev"]));
    assert!(err.contains("does not exist"), "{err}");
    ib.assert_nothing_left("ev", Some(b.path()));
}
