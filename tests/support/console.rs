//! What an engine does around `exec` and terminals: be a child subreaper and wait for the pid
//! of `--pid-file`, listen on a `--console-socket` and take the pty master from it, drive a
//! terminal.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Make this test process a child subreaper, as the engines' shims are: a detached process is
/// reparented to it once isobox has gone, and can be waited for with its pid.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// The exit code of `pid`, a child of this (subreaper) process, within `limit`.
pub fn wait_exit_within(pid: i32, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        match waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(e) => panic!("waiting for {pid}: {e}"),
        }
        assert!(Instant::now() < deadline, "pid {pid} did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn read_pid_file(path: &Path) -> i32 {
    fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {}: {e}", path.display()))
}

/// A console socket listening in `dir`, and its path.
pub fn socket_in(dir: &Path) -> (UnixListener, String) {
    let path = dir.join("console.sock");
    let l = UnixListener::bind(&path).unwrap();
    (l, path.to_string_lossy().into_owned())
}

/// `isobox VERB… --console-socket S --pid-file F REST…` for a verb that leaves a process with
/// a terminal behind (`create`, `exec -t -d`), as an engine runs it: the master of the
/// terminal comes to S. Returns the master and the pid written to F.
pub fn with_console_socket(
    ib: &super::Isobox,
    dir: &Path,
    verb: &[&str],
    rest: &[&str],
) -> (fs::File, i32) {
    let (listener, sock) = socket_in(dir);
    let pid_file = dir.join("console.pid");
    let receiver = std::thread::spawn(move || receive_master(&listener));
    let mut cmd = ib.cmd();
    cmd.args(verb)
        .args(["--console-socket", &sock, "--pid-file"])
        .arg(&pid_file)
        .args(rest);
    let out = super::status_with_stderr(cmd);
    // Before the join: a verb that failed never connects.
    assert!(out.status.success(), "{verb:?}: {}", super::stderr(&out));
    let master = fs::File::from(receiver.join().unwrap());
    (master, read_pid_file(&pid_file))
}

/// Accept one connection on `listener` and receive the pty master as containerd's go-runc
/// does: one message, the name as its bytes, exactly one descriptor.
pub fn receive_master(listener: &UnixListener) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{FromRawFd, RawFd};
    let (conn, _) = listener.accept().unwrap();
    let mut name = [0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    assert!(msg.bytes > 0, "no name with the master");
    let fds: Vec<RawFd> = msg
        .cmsgs()
        .unwrap()
        .flat_map(|c| match c {
            ControlMessageOwned::ScmRights(f) => f,
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(fds.len(), 1, "one descriptor");
    // SAFETY: just received, owned by this process alone.
    unsafe { OwnedFd::from_raw_fd(fds[0]) }
}

/// Read `master` until `want` appears (or `limit` passes); returns what was read.
pub fn read_until_within(master: &mut fs::File, want: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "never saw {want:?} in {seen:?}");
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(seen.contains(want), "never saw {want:?} in {seen:?}");
    seen
}

/// Run `cmd` with a new 40x120 pty made here as its stdin, stdout and stderr; write `input`,
/// read until `want` (within `limit`), and return the exit code and what was read.
pub fn under_pty_within(
    mut cmd: std::process::Command,
    input: &[u8],
    want: &str,
    limit: Duration,
) -> (i32, String) {
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    // Not inherited by what other tests of this process start meanwhile.
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
    }
    let slave = fs::File::from(pty.slave);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut master = fs::File::from(pty.master);
    master.write_all(input).unwrap();
    let seen = read_until_within(&mut master, want, limit);
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), seen)
}
