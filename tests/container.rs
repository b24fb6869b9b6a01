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
    // A child of the workload killed by a signal: the shell reports 128+9.
    let b = TestBundle::sh("sh -c 'kill -9 $$'; exit $?");
    let out = ib.run_bundle(&b, "sig");
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    // The workload itself (PID 1) killed from outside: `run` exits 128+9 too.
    let b = TestBundle::sh("exec sleep 100");
    let child = ib
        .cmd()
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg("sig1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ib.run(&["state", "sig1"]).stdout.is_empty() || ib.state("sig1")["status"] != "running" {
        assert!(Instant::now() < deadline, "never running");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = ib.run(&["kill", "sig1", "SIGKILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137));
    ib.assert_nothing_left("sig1", Some(b.path()));
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
    let b = TestBundle::sh(
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status; grep NoNewPrivs /proc/self/status",
    );
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
        "echo keys=$(wc -c < /proc/keys); ls /sys/kernel | wc -l; \
         echo x > /proc/sys/kernel/domainname && echo writable || echo readonly",
    );
    let out = ib.run_bundle(&b, "mask");
    let text = stdout(&out);
    assert_eq!(text, "keys=0\n0\nreadonly\n", "{}", stderr(&out));
}

#[test]
fn readonly_root() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh(
        "touch /rootfile && echo writable || echo readonly; touch /tmp/ok && echo tmp-ok",
    );
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
    assert!(
        text.contains("survived"),
        "shell killed instead of its child: {}",
        stderr(&out)
    );
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
    // A subshell forks sleepers until the kernel refuses (then it dies); the outer shell counts
    // them with builtins only, since it cannot fork either while they live.
    let mut b = TestBundle::sh(
        "(for i in $(seq 40); do sleep 5 & echo $! >> /tmp/pids; done) 2>/dev/null; \
         n=0; while read -r l; do n=$((n+1)); done < /tmp/pids; echo started=$n",
    );
    b.edit(|c| c["linux"]["resources"] = json!({"pids": {"limit": 10}}));
    let out = ib.run_bundle(&b, "pids");
    let text = stdout(&out);
    let started: usize = text
        .trim()
        .strip_prefix("started=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {text:?}: {}", stderr(&out)));
    assert!(
        (1..10).contains(&started),
        "{started} sleepers despite pids.limit 10"
    );
    ib.assert_nothing_left("pids", Some(b.path()));
}

#[test]
fn create_start_state_kill_delete_cycle() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("echo started > /tmp/marker; exec sleep 100");
    let pidfile = b.path().join("pid");
    let out = ib.run_detached(
        &["create", "--pid-file", pidfile.to_str().unwrap(), "cyc"],
        b.path(),
    );
    assert!(out.status.success(), "create: {}", stderr(&out));
    let st = ib.state("cyc");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "cyc");
    assert_eq!(st["ociVersion"], "1.2.0");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid.to_string());
    assert_eq!(
        st["bundle"],
        std::fs::canonicalize(b.path())
            .unwrap()
            .to_string_lossy()
            .as_ref()
    );

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
    assert!(
        stderr(&out).contains("\"cyc\" does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn delete_force_kills_a_running_container() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("exec sleep 100");
    let out = ib.run_detached(&["run", "--detach", "force"], b.path());
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
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read -r s; echo {name} >> {}", log.display())]});
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

#[test]
fn sysctl_and_devices() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh(
        "cat /proc/sys/kernel/domainname; ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty \
         | cut -c1; readlink /dev/fd; echo x > /dev/null && echo null-ok",
    );
    b.edit(|c| c["linux"]["sysctl"] = json!({"kernel.domainname": "isobox.test"}));
    let out = ib.run_bundle(&b, "sysctl");
    assert_eq!(
        stdout(&out),
        "isobox.test\nc\nc\nc\nc\nc\nc\n/proc/self/fd\nnull-ok\n",
        "{}",
        stderr(&out)
    );
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_uid() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("id -u; cat /proc/self/uid_map");
    b.edit(support::add_user_namespace);
    let out = ib.run_bundle(&b, "userns");
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"), "{text}: {}", stderr(&out));
    let map: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(map, ["0", "100000", "65536"], "{text}");
}

#[test]
fn joining_an_existing_namespace_by_path() {
    require_root!();
    let ib = Isobox::new();
    // A first container's uts namespace, joined by a second one: the hostname is shared.
    let first = TestBundle::sh("exec sleep 100");
    let out = ib.run_detached(&["run", "--detach", "nsowner"], first.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = ib.state("nsowner")["pid"].as_i64().unwrap();
    let mut second = TestBundle::sh("hostname");
    second.edit(|c| {
        c.as_object_mut().unwrap().remove("hostname");
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "uts");
        ns.push(json!({"type": "uts", "path": format!("/proc/{pid}/ns/uts")}));
    });
    let out = ib.run_bundle(&second, "nsjoiner");
    assert_eq!(stdout(&out), "isobox-test\n", "{}", stderr(&out));
    let out = ib.run(&["delete", "--force", "nsowner"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// IFF_UP and IFF_LOOPBACK of /sys/class/net/lo/flags (the container's own sysfs shows its
/// network namespace's devices).
const IFF_UP: u32 = 0x1;

fn lo_flags(out: &std::process::Output) -> u32 {
    let text = stdout(out);
    let hex = text.trim().trim_start_matches("0x");
    u32::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{text:?}: {}", stderr(out)))
}

#[test]
fn a_new_network_namespace_has_lo_up_a_joined_one_is_left_alone() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("cat /sys/class/net/lo/flags");
    let out = ib.run_bundle(&b, "lo-new");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lo_flags(&out) & IFF_UP, IFF_UP, "lo is down");

    // A network namespace made elsewhere, its lo down: joined as it is.
    let mut holder = std::process::Command::new("unshare")
        .args(["--net", "sleep", "100"])
        .spawn()
        .unwrap();
    let netns = format!("/proc/{}/ns/net", holder.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&netns).ok() == std::fs::read_link("/proc/self/ns/net").ok() {
        assert!(Instant::now() < deadline, "unshare --net never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut b = TestBundle::sh("cat /sys/class/net/lo/flags");
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": netns}));
    });
    let out = ib.run_bundle(&b, "lo-joined");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lo_flags(&out) & IFF_UP,
        0,
        "a joined namespace's lo was brought up"
    );
}

#[test]
fn the_cgroup_mount_shows_the_containers_own_cgroup() {
    require_root!();
    // pids.max of the mounted pids hierarchy (v1 and hybrid) or of the cgroup2 root (v2),
    // and whether that root holds isobox's parent cgroup, as the host's whole tree would.
    let script = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
        ls /sys/fs/cgroup/pids/isobox /sys/fs/cgroup/isobox >/dev/null 2>&1 && echo host-tree; \
        cat /proc/self/cgroup";
    for (id, cgroupns) in [("cgmount-ns", true), ("cgmount-host", false)] {
        let ib = Isobox::new();
        let mut b = TestBundle::sh(script);
        b.edit(|c| {
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }));
            c["linux"]["resources"] = json!({"pids": {"limit": 17}});
            if cgroupns {
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.push(json!({"type": "cgroup"}));
            }
        });
        let out = ib.run_bundle(&b, id);
        assert!(out.status.success(), "{id}: {}", stderr(&out));
        let text = stdout(&out);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("17"), "{id}: {text}");
        assert!(!text.contains("host-tree"), "{id}: {text}");
        let own: Vec<&str> = lines.collect();
        assert!(!own.is_empty(), "{id}: {text}");
        for line in own {
            let path = line.splitn(3, ':').nth(2).unwrap();
            if cgroupns {
                assert_eq!(path, "/", "{id}: {text}");
            } else if !line.contains("name=") {
                assert!(path.ends_with(&format!("/{id}")), "{id}: {text}");
            }
        }
    }
}

#[test]
fn dockers_zero_valued_resources_mean_unset() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("cat /proc/self/cgroup");
    // What dockerd 20.10 sends for a container run without limits (its blockIO weight 0 was
    // written to blkio.bfq.weight, which refused it), and the other zeros runc skips.
    b.edit(|c| {
        c["linux"]["resources"] = json!({
            "blockIO": {"weight": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                    "realtimePeriod": 0, "cpus": "", "mems": ""},
            "memory": {"reservation": 0, "swap": 0, "kernelTCP": 0, "disableOOMKiller": false}
        })
    });
    let out = ib.run_bundle(&b, "docker-zeros");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("/docker-zeros"), "{}", stdout(&out));
    ib.assert_nothing_left("docker-zeros", Some(b.path()));
}

#[test]
fn device_cgroup_denies_all_but_defaults_and_listed_devices() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh(
        "true < /dev/loop-control && echo listed-ok; echo x > /dev/null && echo null-ok; \
         mknod /tmp/fuse c 10 229; true < /tmp/fuse 2>/dev/null && echo fuse-open || echo fuse-denied",
    );
    b.edit(|c| {
        c["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
        c["process"]["capabilities"]["effective"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
        c["process"]["capabilities"]["permitted"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
        c["linux"]["devices"] =
            json!([{"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237}]);
        c["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    });
    let out = ib.run_bundle(&b, "devcg");
    assert_eq!(
        stdout(&out),
        "listed-ok\nnull-ok\nfuse-denied\n",
        "{}",
        stderr(&out)
    );
}

/// A profile that allows everything but mkdir/mkdirat, which fail with errnoRet 1 (EPERM).
fn deny_mkdir_profile() -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["bpf", "keyctl", "add_key"], "action": "SCMP_ACT_ERRNO"}
        ]
    })
}

#[test]
fn seccomp_profile_denies_the_listed_syscalls() {
    require_root!();
    let ib = Isobox::new();
    let mut b =
        TestBundle::sh("mkdir /tmp/x; echo mkdir=$?; echo hi; grep Seccomp: /proc/self/status");
    b.edit(|c| c["linux"]["seccomp"] = deny_mkdir_profile());
    let out = ib.run_bundle(&b, "seccomp");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "mkdir=1\nhi\nSeccomp:\t2\n");
    ib.assert_nothing_left("seccomp", Some(b.path()));
    // A profile needing a user-space agent is refused before anything is made.
    b.edit(|c| c["linux"]["seccomp"]["defaultAction"] = json!("SCMP_ACT_NOTIFY"));
    let out = ib.run_bundle(&b, "seccomp-notify");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("config.json") && err.contains("linux.seccomp.defaultAction"),
        "{err}"
    );
    assert!(err.contains("SCMP_ACT_NOTIFY"), "{err}");
    ib.assert_nothing_left("seccomp-notify", Some(b.path()));
}

#[test]
fn probe_reports_the_seccomp_filter() {
    require_root!();
    // The probe is another package's binary: present after `cargo test --workspace`.
    let probe = std::path::Path::new(env!("CARGO_BIN_EXE_isobox")).with_file_name("isobox-probe");
    if !probe.exists() {
        isobox_common::skip::skip(&format!("{} is not built", probe.display()));
        return;
    }
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    std::fs::copy(&probe, b.rootfs().join("bin/isobox-probe")).unwrap();
    b.edit(|c| {
        c["process"]["args"] = json!(["/bin/isobox-probe"]);
        c["linux"]["seccomp"] = deny_mkdir_profile();
    });
    let out = ib.run_bundle(&b, "seccomp-probe");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["capabilities"]["seccomp"], "filter", "{report}");
    let blocked = report["syscalls"]["blocked"].as_array().unwrap();
    for name in ["bpf", "keyctl", "add_key"] {
        assert!(
            blocked.iter().any(|b| b == name),
            "{name} not blocked: {blocked:?}"
        );
    }
}
