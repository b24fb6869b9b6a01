//! The container backend end to end through the CLI, on real busybox bundles (root only).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{stderr, stdout, Isobox, TestBundle};

#[test]
fn exit_code_is_the_workloads() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("exit 3");
    let out = ib.run_bundle(&b, "exit3");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    ib.assert_nothing_left("exit3", Some(b.path()));
}

#[test]
fn killed_by_signal_exits_128_plus_n() {
    require_root!();
    let ib = Isobox::new();
    // PID 1 ignores signals it has no handler for, so the signal hits a child shell.
    let b = TestBundle::sh("sh -c 'kill -9 $$'; exit $?");
    let out = ib.run_bundle(&b, "sig");
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let b = TestBundle::sh("kill -9 $$");
    let out = ib.run_bundle(&b, "sig1");
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
}

#[test]
fn hostname_pid1_env_and_cwd() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("hostname; echo pid=$$; echo foo=$FOO; pwd");
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
        c["process"]["cwd"] = json!("/tmp");
        c["hostname"] = json!("boxhost");
    });
    let out = ib.run_bundle(&b, "ident");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "boxhost\npid=1\nfoo=bar baz\n/tmp\n");
}

#[test]
fn stdout_and_stderr_pass_through_separately() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("echo out; echo err >&2");
    let out = ib.run_bundle(&b, "stdio");
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err\n"), "{}", stderr(&out));
}

#[test]
fn uid_gid_and_additional_gids() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("id -u; id -g; id -G");
    b.edit(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 7]}));
    let out = ib.run_bundle(&b, "uid");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["1000", "1000"], "{text}");
    let mut groups: Vec<&str> = lines[2].split(' ').collect();
    groups.sort();
    assert_eq!(groups, ["1000", "5", "7"], "{text}");
}

#[test]
fn capabilities_are_limited_to_the_config() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("grep -E '^Cap(Eff|Bnd)' /proc/self/status; grep NoNewPrivs /proc/self/status");
    let out = ib.run_bundle(&b, "caps");
    assert!(out.status.success(), "{}", stderr(&out));
    // CAP_CHOWN(0) DAC_OVERRIDE(1) KILL(5) SETGID(6) SETUID(7) NET_BIND_SERVICE(10) = 0x4e3
    let text = stdout(&out);
    assert!(text.contains("CapEff:\t00000000000004e3"), "{text}");
    assert!(text.contains("CapBnd:\t00000000000004e3"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
}

#[test]
fn rlimits_and_umask() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("ulimit -n; umask");
    b.edit(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 321, "soft": 123}]);
        c["process"]["user"]["umask"] = json!(0o027);
    });
    let out = ib.run_bundle(&b, "rlim");
    assert_eq!(stdout(&out), "123\n0027\n", "{}", stderr(&out));
}

#[test]
fn masked_and_readonly_paths() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh(
        "echo kcore=$(wc -c < /proc/kcore); ls /sys/firmware | wc -l; \
         echo x > /proc/sys/kernel/domainname && echo writable || echo readonly",
    );
    let out = ib.run_bundle(&b, "mask");
    let text = stdout(&out);
    assert_eq!(text, "kcore=0\n0\nreadonly\n", "{}", stderr(&out));
}

#[test]
fn readonly_root() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("touch /rootfile && echo writable || echo readonly; touch /tmp/ok && echo tmp-ok");
    b.edit(|c| c["root"]["readonly"] = json!(true));
    let out = ib.run_bundle(&b, "ro");
    assert_eq!(stdout(&out), "readonly\ntmp-ok\n", "{}", stderr(&out));
}

#[test]
fn memory_limit_kills_the_workload_not_the_host() {
    require_root!();
    let ib = Isobox::new();
    // `tail` of an endless line buffers it all: it grows until the cgroup stops it.
    let mut b = TestBundle::sh("tail /dev/zero; echo survived");
    b.edit(|c| c["linux"]["resources"] = json!({"memory": {"limit": 33554432}}));
    let out = ib.run_bundle(&b, "oom");
    let text = stdout(&out);
    assert!(text.contains("survived"), "shell killed instead of its child: {}", stderr(&out));
    assert!(out.status.success());
    // The shell saw its child die of SIGKILL (the OOM killer): busybox prints "Killed".
    let b2 = TestBundle::sh("tail /dev/zero");
    let mut b2 = b2;
    b2.edit(|c| c["linux"]["resources"] = json!({"memory": {"limit": 33554432}}));
    let out = ib.run_bundle(&b2, "oom2");
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    ib.assert_nothing_left("oom2", Some(b2.path()));
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh(
        "n=0; for i in $(seq 40); do sleep 2 2>/dev/null & n=$((n+1)); done 2>/dev/null; \
         echo procs=$(ls /proc | grep -c '^[0-9]')",
    );
    b.edit(|c| c["linux"]["resources"] = json!({"pids": {"limit": 10}}));
    let out = ib.run_bundle(&b, "pids");
    let text = stdout(&out);
    let procs: usize = text
        .trim()
        .strip_prefix("procs=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {text:?}: {}", stderr(&out)));
    assert!(procs <= 10, "{procs} processes despite pids.limit 10");
    ib.assert_nothing_left("pids", Some(b.path()));
}

#[test]
fn create_start_state_kill_delete_cycle() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("echo started > /tmp/marker; exec sleep 100");
    let pidfile = b.path().join("pid");
    let out = ib
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg("--pid-file")
        .arg(&pidfile)
        .arg("cyc")
        .output()
        .unwrap();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let st = ib.state("cyc");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "cyc");
    assert_eq!(st["ociVersion"], "1.2.0");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid.to_string());
    assert_eq!(st["bundle"], std::fs::canonicalize(b.path()).unwrap().to_string_lossy().as_ref());

    let list = ib.run(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["id"], "cyc");

    // Deleting a running container needs --force; starting twice is refused.
    let out = ib.run(&["start", "cyc"]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert_eq!(ib.state("cyc")["status"], "running");
    let out = ib.run(&["start", "cyc"]);
    assert!(!out.status.success());
    let out = ib.run(&["delete", "cyc"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));

    let ps = ib.run(&["ps", "--format", "json", "cyc"]);
    let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");

    let out = ib.run(&["kill", "cyc", "KILL"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ib.state("cyc")["status"] != "stopped" {
        assert!(Instant::now() < deadline, "still not stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ib.state("cyc")["pid"], 0);
    let out = ib.run(&["kill", "cyc"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    let out = ib.run(&["delete", "cyc"]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    ib.assert_nothing_left("cyc", Some(b.path()));
    let out = ib.run(&["state", "cyc"]);
    assert!(stderr(&out).contains("\"cyc\" does not exist"), "{}", stderr(&out));
}

#[test]
fn delete_force_kills_a_running_container() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("exec sleep 100");
    let out = ib.cmd().args(["run", "--detach", "--bundle"]).arg(b.path()).arg("force").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ib.state("force")["status"], "running");
    let out = ib.run(&["delete", "--force", "force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ib.assert_nothing_left("force", Some(b.path()));
}

#[test]
fn hooks_run_with_the_state_on_stdin() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    let log = b.path().join("hooks.log");
    let hook = |name: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read -r s; echo {name} >> {}", log.display())]})
    };
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")]
        })
    });
    let out = ib.run_bundle(&b, "hooks");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    for name in ["prestart", "createRuntime", "poststart", "poststop"] {
        assert!(text.contains(name), "{name} did not run: {text}");
    }
}

