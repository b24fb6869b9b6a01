//! `exec` and terminals through the CLI, on real busybox containers (root only).
//!
//! This test process makes itself a child subreaper, as the engines' shims are: a detached
//! process (`exec --detach`, a created container's init) is then reparented to it once
//! isobox has gone, and is waited for here with the pid from `--pid-file`.

mod support;

use std::fs;
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::console::{
    become_subreaper, read_pid_file, read_until_within, under_pty_within, wait_exit_within,
    with_console_socket,
};
use support::{stderr, stdout, Isobox, TestBundle};

/// How long a process here may take.
const LIMIT: Duration = Duration::from_secs(20);

/// A running container `id` whose init sleeps.
fn running(ib: &Isobox, id: &str) -> TestBundle {
    become_subreaper();
    let b = TestBundle::sh("exec sleep 1000");
    let out = ib.run_detached(&["run", "--detach", id], b.path());
    assert!(out.status.success(), "run -d {id}: {}", stderr(&out));
    b
}

fn exec(ib: &Isobox, args: &[&str]) -> Output {
    ib.cmd().arg("exec").args(args).output().unwrap()
}

fn init_pid(ib: &Isobox, id: &str) -> i32 {
    ib.state(id)["pid"].as_i64().unwrap() as i32
}

/// The exit code of `pid`, a child of this (subreaper) process, within 20 s.
fn wait_exit(pid: i32) -> i32 {
    wait_exit_within(pid, LIMIT)
}

#[test]
fn exec_runs_in_the_containers_namespaces_and_cgroup() {
    require_root!();
    let ib = Isobox::new();
    let _b = running(&ib, "ns");
    let init = init_pid(&ib, "ns");
    let names = ["pid", "net", "ipc", "uts", "mnt"];
    let script: String = names
        .iter()
        .map(|n| format!("readlink /proc/self/ns/{n}; "))
        .collect();
    let out = exec(&ib, &["ns", "sh", "-c", &format!("{script} hostname")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    for (i, n) in names.iter().enumerate() {
        let want = fs::read_link(format!("/proc/{init}/ns/{n}")).unwrap();
        assert_eq!(lines[i], want.to_string_lossy(), "{n} namespace");
    }
    assert_eq!(lines[names.len()], "isobox-test");
    // Its pid in the container's pid namespace is not 1, and its cgroup is the init's.
    let out = exec(
        &ib,
        &[
            "ns",
            "sh",
            "-c",
            "echo $$; cmp /proc/1/cgroup /proc/self/cgroup && echo same",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_ne!(lines[0], "1", "{text}");
    assert_eq!(lines[1], "same", "{text}");
    let out = ib.run(&["delete", "--force", "ns"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn exec_exit_status_propagates() {
    require_root!();
    let ib = Isobox::new();
    let _b = running(&ib, "status");
    let out = exec(&ib, &["status", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = exec(&ib, &["status", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let out = exec(&ib, &["status", "no-such-program"]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("no-such-program") && err.lines().count() == 1,
        "{err}"
    );
    ib.run(&["delete", "--force", "status"]);
}

#[test]
fn exec_process_file_sets_env_cwd_and_user() {
    require_root!();
    let ib = Isobox::new();
    let b = running(&ib, "pfile");
    let process = json!({
        "args": ["sh", "-c", "echo $FOO; pwd; id -u; id -g; id -G"],
        "env": ["PATH=/bin", "FOO=from-file"],
        "cwd": "/tmp",
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
        "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": []}
    });
    let file = b.path().join("process.json");
    fs::write(&file, process.to_string()).unwrap();
    let out = exec(&ib, &["--process", file.to_str().unwrap(), "pfile"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..4], ["from-file", "/tmp", "1000", "1000"], "{text}");
    assert!(lines[4].split(' ').any(|g| g == "5"), "{text}");

    // A bad field is named with the file.
    fs::write(
        &file,
        r#"{"args": ["sh"], "cwd": "/", "user": {"uid": "x"}}"#,
    )
    .unwrap();
    let out = exec(&ib, &["--process", file.to_str().unwrap(), "pfile"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}: user.uid", file.display())) && err.lines().count() == 1,
        "{err}"
    );
    // Flags override the container's own process.
    let out = exec(
        &ib,
        &[
            "--cwd",
            "/proc",
            "-e",
            "FOO=flag",
            "-u",
            "1000:1000",
            "pfile",
            "sh",
            "-c",
            "echo $FOO; pwd; id -u",
        ],
    );
    assert_eq!(stdout(&out), "flag\n/proc\n1000\n", "{}", stderr(&out));
    ib.run(&["delete", "--force", "pfile"]);
}

#[test]
fn exec_capabilities_follow_the_process_spec() {
    require_root!();
    let ib = Isobox::new();
    let b = running(&ib, "caps");
    let caps = ["CAP_KILL", "CAP_NET_RAW"];
    let process = json!({
        "args": ["sh", "-c", "grep -E '^Cap(Eff|Bnd):' /proc/self/status"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}
    });
    let file = b.path().join("caps.json");
    fs::write(&file, process.to_string()).unwrap();
    let out = exec(&ib, &["-p", file.to_str().unwrap(), "caps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = format!("{:016x}", (1u64 << 5) | (1u64 << 13));
    let text = stdout(&out);
    for line in text.lines() {
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(want.as_str()),
            "{text}"
        );
    }
    // --cap adds to the container's own sets (the default config has no CAP_NET_RAW).
    let out = exec(
        &ib,
        &[
            "--cap",
            "CAP_NET_RAW",
            "caps",
            "grep",
            "CapEff",
            "/proc/self/status",
        ],
    );
    let eff = stdout(&out);
    let mask = u64::from_str_radix(eff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_ne!(mask & (1 << 13), 0, "{eff}");
    assert_eq!(mask & (1 << 21), 0, "no CAP_SYS_ADMIN: {eff}");
    ib.run(&["delete", "--force", "caps"]);
}

#[test]
fn exec_detach_writes_the_pid_of_a_descendant() {
    require_root!();
    let ib = Isobox::new();
    let b = running(&ib, "detach");
    let pid_file = b.path().join("exec.pid");
    let out = support::status_with_stderr({
        let mut c = ib.cmd();
        c.args(["exec", "--detach", "--pid-file"])
            .arg(&pid_file)
            .args(["detach", "sh", "-c", "sleep 0.3; exit 5"]);
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = read_pid_file(&pid_file);
    // isobox has gone: the process was reparented to this subreaper, which can wait for it.
    assert_eq!(wait_exit(pid), 5);
    ib.run(&["delete", "--force", "detach"]);
}

#[test]
fn exec_into_a_stopped_container_fails_with_one_line() {
    require_root!();
    let ib = Isobox::new();
    become_subreaper();
    let b = TestBundle::sh("true");
    let pid_file = b.path().join("init.pid");
    let out = ib.run_detached(
        &[
            "run",
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "gone",
        ],
        b.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    wait_exit(read_pid_file(&pid_file));
    let out = exec(&ib, &["gone", "true"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("stopped") && err.lines().count() == 1, "{err}");
    let out = exec(&ib, &["nosuch", "true"]);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    ib.run(&["delete", "--force", "gone"]);
}

/// Read `master` until `want` appears (or 20 s pass); returns what was read.
fn read_until(master: &mut fs::File, want: &str) -> String {
    read_until_within(master, want, LIMIT)
}

#[test]
fn create_with_a_console_socket_gives_the_init_a_terminal() {
    require_root!();
    let ib = Isobox::new();
    become_subreaper();
    let mut b = TestBundle::sh("unused");
    b.edit(|c| {
        c["process"]["args"] = json!(["/bin/sh"]);
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    });
    let bundle = b.path().to_str().unwrap();
    let (mut master, pid) =
        with_console_socket(&ib, b.path(), &["create", "--bundle", bundle], &["tty"]);
    let out = ib.run(&["start", "tty"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The shell's output, not the terminal's echo of the input, has "42".
    master
        .write_all(b"tty; stty size; echo $((40+2)); exit 3\n")
        .unwrap();
    let seen = read_until(&mut master, "42\r\n");
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    assert!(seen.contains("33 101"), "{seen}");
    assert_eq!(wait_exit(pid), 3);
    ib.run(&["delete", "--force", "tty"]);
}

#[test]
fn exec_tty_with_a_console_socket() {
    require_root!();
    let ib = Isobox::new();
    let b = running(&ib, "exectty");
    let (mut master, pid) =
        with_console_socket(&ib, b.path(), &["exec", "-t", "-d"], &["exectty", "sh"]);
    master.write_all(b"echo $((40+2)); exit 3\n").unwrap();
    read_until(&mut master, "42\r\n");
    assert_eq!(wait_exit(pid), 3);
    // A terminal of a detached process needs a console socket, as in runc.
    let out = exec(&ib, &["-t", "-d", "exectty", "sh"]);
    assert!(
        stderr(&out).contains("--console-socket"),
        "{}",
        stderr(&out)
    );
    ib.run(&["delete", "--force", "exectty"]);
}

/// Run `cmd` under a new 40x120 pty made here; write `input`, read until `want`, and return
/// the exit code and what was read.
fn under_pty(cmd: std::process::Command, input: &[u8], want: &str) -> (i32, String) {
    under_pty_within(cmd, input, want, LIMIT)
}

#[test]
fn run_with_a_terminal_relays_its_own() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("unused");
    b.edit(|c| {
        c["process"]["args"] = json!(["/bin/sh"]);
        c["process"]["terminal"] = json!(true);
    });
    let mut cmd = ib.cmd();
    cmd.args(["run", "--bundle"]).arg(b.path()).arg("runtty");
    let (code, seen) = under_pty(cmd, b"tty; stty size; echo $((40+2)); exit 3\n", "42\r\n");
    assert_eq!(code, 3, "{seen}");
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    // isobox's own window size is the container's.
    assert!(seen.contains("40 120"), "{seen}");
    ib.assert_nothing_left("runtty", Some(b.path()));
}

#[test]
fn exec_tty_in_the_foreground_relays_its_own() {
    require_root!();
    let ib = Isobox::new();
    let _b = running(&ib, "fgtty");
    let mut cmd = ib.cmd();
    cmd.args(["exec", "-t", "fgtty", "sh"]);
    let (code, seen) = under_pty(cmd, b"echo $((40+2)); exit 4\n", "42\r\n");
    assert_eq!(code, 4, "{seen}");
    ib.run(&["delete", "--force", "fgtty"]);
}

#[test]
fn exec_a_second_process_while_one_runs() {
    require_root!();
    let ib = Isobox::new();
    let _b = running(&ib, "two");
    // A foreground exec does not hold the container's lock while it waits.
    let mut long = ib
        .cmd()
        .args(["exec", "two", "sleep", "3"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let out = exec(&ib, &["two", "echo", "second"]);
    assert_eq!(stdout(&out), "second\n", "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(2));
    let state: Value = ib.state("two");
    assert_eq!(state["status"], "running");
    assert!(long.wait().unwrap().success());
    ib.run(&["delete", "--force", "two"]);
}

#[test]
fn exec_gets_the_containers_seccomp_filter_and_user_namespace() {
    require_root!();
    let ib = Isobox::new();
    become_subreaper();
    let mut b = TestBundle::sh("exec sleep 1000");
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        support::add_user_namespace(c);
    });
    let out = ib.run_detached(&["run", "--detach", "filtered"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = exec(
        &ib,
        &[
            "filtered",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; mkdir /tmp/d && echo made",
        ],
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "{text}: {}", stderr(&out));
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"], "{text}");
    assert!(!text.contains("made"), "mkdir was allowed: {text}");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    ib.run(&["delete", "--force", "filtered"]);
}

#[test]
fn exec_refuses_a_paused_container_and_labels_it_cannot_apply() {
    require_root!();
    let ib = Isobox::new();
    let _b = running(&ib, "frozen");
    for (flag, value, field) in [
        ("--apparmor", "docker-default", "apparmorProfile"),
        (
            "--process-label",
            "system_u:system_r:container_t",
            "selinuxLabel",
        ),
    ] {
        let out = exec(&ib, &[flag, value, "frozen", "true"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{flag} was accepted");
        assert!(
            err.contains(&format!("process.{field}")) && err.lines().count() == 1,
            "{err}"
        );
    }
    let out = ib.run(&["pause", "frozen"]);
    if !out.status.success() {
        isobox_common::skip::skip(&format!("no cgroup freezer here: {}", stderr(&out)));
        ib.run(&["delete", "--force", "frozen"]);
        return;
    }
    let out = exec(&ib, &["frozen", "true"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("paused") && err.lines().count() == 1, "{err}");
    let out = ib.run(&["resume", "frozen"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = exec(&ib, &["frozen", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ib.run(&["delete", "--force", "frozen"]);
}
