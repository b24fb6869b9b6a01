//! `exec` and terminals in a microVM through the CLI: the processes run in the guest, beside
//! the workload, as sessions of the agent (qemu TCG on hosts without hardware
//! virtualization, the built-in VMM where it has it).
//!
//! This test process is a child subreaper, as the engines' shims are, so a detached exec's
//! stand-in (the pid of `--pid-file`) can be waited for here.

mod support;

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use support::console::{
    become_subreaper, read_pid_file, read_until_within, under_pty_within, wait_exit_within,
    with_console_socket,
};
use support::{stderr, stdout, Isobox, TestBundle};

/// Boots and guest round trips are slow under software emulation.
const VM_LIMIT: Duration = Duration::from_secs(120);

macro_rules! require_vm {
    () => {
        if let Some(reason) = support::vm_skip_reason() {
            isobox_common::skip::skip(&reason);
            return;
        }
    };
}

/// A detached microVM `id` whose workload sleeps.
fn running_vm(ib: &Isobox, id: &str) -> TestBundle {
    become_subreaper();
    let mut b = TestBundle::sh("exec sleep 1000");
    b.edit(|c| {
        c["annotations"] = json!({"io.isobox.backend": "microvm"});
        c["hostname"] = json!("vmhost");
    });
    let out = ib.run_detached(&["run", "--detach", id], b.path());
    assert!(out.status.success(), "run -d {id}: {}", stderr(&out));
    b
}

fn host_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn exec_runs_in_the_guest_beside_the_workload() {
    require_vm!();
    let ib = Isobox::new();
    let b = running_vm(&ib, "vmx");
    // Env, exit status and the guest's own kernel and hostname.
    let out = ib
        .cmd()
        .args(["exec", "--env", "X=from exec", "vmx", "sh", "-c"])
        .arg("echo $X; hostname; cat /proc/sys/kernel/random/boot_id; echo err >&2; exit 5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["from exec", "vmhost"], "{text}");
    // The guest kernel's boot, not the host's.
    assert_eq!(lines[2].len(), 36, "not a boot id: {text}");
    assert_ne!(lines[2], host_boot_id(), "the exec ran on the host kernel");
    assert_eq!(stderr(&out), "err\n");

    // Two at once: the quick one ends while the slow one still runs.
    let mut slow = ib
        .cmd()
        .args(["exec", "vmx", "sh", "-c", "sleep 8; echo slow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let quick = ib
        .cmd()
        .args(["exec", "vmx", "sh", "-c", "read x; echo quick $x; exit 2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    quick.stdin.as_ref().unwrap().write_all(b"input\n").unwrap();
    let quick = quick.wait_with_output().unwrap();
    assert_eq!(quick.status.code(), Some(2));
    assert_eq!(stdout(&quick), "quick input\n");
    assert!(
        slow.try_wait().unwrap().is_none(),
        "the slow session ended before the quick one"
    );
    let slow = slow.wait_with_output().unwrap();
    assert!(slow.status.success());
    assert_eq!(stdout(&slow), "slow\n");

    // Detached: the pid in --pid-file stands for the guest process, relays signals to it and
    // exits with its status.
    let pid_file = b.path().join("exec.pid");
    let out = support::status_with_stderr({
        let mut c = ib.cmd();
        c.args(["exec", "-d", "--pid-file"])
            .arg(&pid_file)
            .args(["vmx", "sh", "-c"])
            .arg("trap 'exit 7' TERM; echo armed >/tmp/armed; while :; do sleep 0.1; done");
        c
    });
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = read_pid_file(&pid_file);
    let deadline = Instant::now() + VM_LIMIT;
    while !stdout(&ib.run(&["exec", "vmx", "cat", "/tmp/armed"])).contains("armed") {
        assert!(
            Instant::now() < deadline,
            "the detached process never armed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: plain syscall on the stand-in, our (subreaper's) child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(wait_exit_within(pid, VM_LIMIT), 7);

    // A program that is not there is an error of exec itself.
    let out = ib.run(&["exec", "vmx", "/no/such/program"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/no/such/program"),
        "{}",
        stderr(&out)
    );

    // The workload's end ends an exec'd process with it.
    let mut long = ib
        .cmd()
        .args(["exec", "vmx", "sh", "-c", "echo started; exec sleep 1000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(long.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "started\n");
    let out = ib.run(&["kill", "vmx", "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let code = long.wait_with_output().unwrap().status.code();
    assert_eq!(code, Some(128 + libc::SIGKILL));
    ib.run(&["delete", "--force", "vmx"]);
    ib.assert_nothing_left("vmx", None);
}

#[test]
fn exec_with_a_terminal_in_the_guest() {
    require_vm!();
    let ib = Isobox::new();
    let b = running_vm(&ib, "vmt");
    // An engine's console socket: the master of a host pty comes to it; the process's
    // terminal is a pty in the guest, its window size follows the host's.
    let (master, pid) = with_console_socket(&ib, b.path(), &["exec", "-t", "-d"], &["vmt", "sh"]);
    let size = isobox_common::protocol::WindowSize {
        rows: 33,
        cols: 101,
    };
    isobox_common::pty::set_window_size(std::os::fd::AsFd::as_fd(&master), size).unwrap();
    let mut master = master;
    // The size reaches the guest within a moment; the shell reads the line after it.
    master
        .write_all(b"sleep 1; tty; stty size; echo h$((1+1))i; exit 3\n")
        .unwrap();
    let seen = read_until_within(&mut master, "h2i\r\n", VM_LIMIT);
    assert!(seen.contains("/dev/pts/"), "{seen}");
    assert!(seen.contains("33 101"), "{seen}");
    assert_eq!(wait_exit_within(pid, VM_LIMIT), 3);

    // In the foreground isobox relays its own terminal, and its size.
    let mut cmd = ib.cmd();
    cmd.args(["exec", "-t", "vmt", "sh"]);
    let (code, seen) = under_pty_within(
        cmd,
        b"stty size; echo $((40+2)); exit 4\n",
        "42\r\n",
        VM_LIMIT,
    );
    assert_eq!(code, 4, "{seen}");
    assert!(seen.contains("40 120"), "{seen}");
    ib.run(&["delete", "--force", "vmt"]);
    ib.assert_nothing_left("vmt", None);
}

#[test]
fn the_workload_has_a_terminal_in_the_guest() {
    require_vm!();
    let ib = Isobox::new();
    become_subreaper();
    let vm_tty = |b: &mut TestBundle| {
        b.edit(|c| {
            c["annotations"] = json!({"io.isobox.backend": "microvm"});
            c["process"]["args"] = json!(["/bin/sh"]);
            c["process"]["terminal"] = json!(true);
            c["process"]["consoleSize"] = json!({"height": 33, "width": 101});
        });
    };
    // create --console-socket, as the engines do: the master comes before create returns.
    let mut b = TestBundle::sh("unused");
    vm_tty(&mut b);
    let bundle = b.path().to_str().unwrap();
    let (mut master, pid) =
        with_console_socket(&ib, b.path(), &["create", "--bundle", bundle], &["vmtty"]);
    let out = ib.run(&["start", "vmtty"]);
    assert!(out.status.success(), "{}", stderr(&out));
    master
        .write_all(b"tty; stty size; echo $((40+2)); exit 3\n")
        .unwrap();
    let seen = read_until_within(&mut master, "42\r\n", VM_LIMIT);
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    assert!(seen.contains("33 101"), "{seen}");
    // The VM's host process ends with the workload's status.
    assert_eq!(wait_exit_within(pid, VM_LIMIT), 3);
    ib.run(&["delete", "--force", "vmtty"]);

    // `run` in the foreground relays isobox's own terminal, and its size.
    let mut b = TestBundle::sh("unused");
    vm_tty(&mut b);
    b.edit(|c| {
        c["process"].as_object_mut().unwrap().remove("consoleSize");
    });
    let mut cmd = ib.cmd();
    cmd.args(["run", "--bundle"]).arg(b.path()).arg("vmrun");
    let (code, seen) = under_pty_within(
        cmd,
        b"stty size; echo $((40+2)); exit 4\n",
        "42\r\n",
        VM_LIMIT,
    );
    assert_eq!(code, 4, "{seen}");
    assert!(seen.contains("40 120"), "{seen}");
    ib.assert_nothing_left("vmrun", None);
}
