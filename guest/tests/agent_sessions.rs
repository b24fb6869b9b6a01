//! The agent's session loop without a VM: it runs as PID 1 of a new PID namespace (so its
//! "kill every process" reaches only its own), with a socket pair as the serial line, and the
//! test speaks the host's side of the protocol.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use isobox_common::protocol::{
    self, ExecRequest, ExitStatus, Message, SessionId, WindowSize, WINDOW, WORKLOAD,
};

/// The host's end of a running agent.
struct Agent {
    line: UnixStream,
    buf: Vec<u8>,
    pid: libc::pid_t,
}

impl Agent {
    /// Fork; the child enters a new PID namespace and forks the agent as its PID 1.
    fn start() -> Option<Agent> {
        if !nix::unistd::geteuid().is_root() {
            isobox_common::skip::skip("a new PID namespace needs root");
            return None;
        }
        let (host, guest) = UnixStream::pair().unwrap();
        let guest_fd = guest.into_raw_fd();
        // SAFETY: the child only makes system calls, then runs the agent's loop, which does not
        // depend on other threads of this process, and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: as above; every path ends in _exit.
            unsafe {
                // Only the line: other tests' line ends, inherited, would keep theirs open.
                if libc::dup2(guest_fd, 3) != 3
                    || libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0
                    || libc::unshare(libc::CLONE_NEWPID) != 0
                {
                    libc::_exit(101);
                }
                let init = libc::fork();
                if init == 0 {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                }
                if init != 0 {
                    let mut status = 0;
                    libc::waitpid(init, &mut status, 0);
                    libc::_exit(if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        102
                    });
                }
                let line = std::fs::File::from(OwnedFd::from_raw_fd(3));
                let code = match isobox_guest::agent::mux::Mux::new(line).and_then(|mut m| m.run())
                {
                    Ok(()) => 0,
                    Err(_) => 103,
                };
                libc::_exit(code);
            }
        }
        // SAFETY: the child's copy is its own; ours is closed.
        unsafe { libc::close(guest_fd) };
        let mut a = Agent {
            line: host,
            buf: Vec::new(),
            pid,
        };
        assert_eq!(a.recv(), Message::hello());
        a.send(&Message::hello());
        Some(a)
    }

    fn send(&mut self, msg: &Message) {
        protocol::write_message(&mut self.line, msg).unwrap();
    }

    /// Report output written; the agent may have ended the session and the line meanwhile.
    fn consumed(&mut self, session: SessionId, bytes: usize) {
        let _ = protocol::write_message(
            &mut self.line,
            &Message::Consumed {
                session,
                bytes: bytes as u32,
            },
        );
    }

    fn try_recv(&mut self, within: Duration) -> Option<Message> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((msg, used)) = protocol::decode(&self.buf).unwrap() {
                self.buf.drain(..used);
                return Some(msg);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.line.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.line.read(&mut chunk) {
                Ok(0) => panic!("the agent closed the line"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(e) => panic!("reading the line: {e}"),
            }
        }
    }

    fn recv(&mut self) -> Message {
        self.try_recv(Duration::from_secs(20))
            .expect("no frame from the agent within 20 s")
    }

    /// The agent's exit code once it ended.
    fn wait(mut self) -> i32 {
        let _ = self.line.shutdown(std::net::Shutdown::Both);
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.pid = 0;
        libc::WEXITSTATUS(status)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // A failed test leaves no agent behind: its namespace's processes die with it.
        if self.pid > 0 {
            // SAFETY: plain syscalls on our own, unreaped child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn sh(script: &str, env: &[&str]) -> ExecRequest {
    ExecRequest {
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: env.iter().map(|s| s.to_string()).collect(),
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        ..Default::default()
    }
}

/// What one session produced, by the frames routed to it.
#[derive(Debug, Default)]
struct Seen {
    started: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    errors: Vec<String>,
    exit: Option<ExitStatus>,
}

/// Route frames to their sessions (consuming output at once) until `until` holds.
fn collect(
    a: &mut Agent,
    seen: &mut BTreeMap<SessionId, Seen>,
    until: impl Fn(&BTreeMap<SessionId, Seen>) -> bool,
) {
    while !until(seen) {
        let msg = a.recv();
        let id = msg.session().expect("only session frames after Hello");
        let s = seen.entry(id).or_default();
        assert!(s.exit.is_none(), "{msg:?} after the session's Exit");
        match msg {
            Message::Started { .. } => {
                assert!(!s.started, "a second Started for {id}");
                s.started = true;
            }
            Message::Stdout { ref data, .. } | Message::Stderr { ref data, .. } => {
                assert!(s.started, "output before Started for {id}");
                let bytes = data.len();
                match msg {
                    Message::Stdout { data, .. } => s.stdout.extend(data),
                    Message::Stderr { data, .. } => s.stderr.extend(data),
                    _ => {}
                }
                a.consumed(id, bytes);
            }
            Message::Error { text, .. } => s.errors.push(text),
            Message::Exit { status, .. } => s.exit = Some(status),
            Message::Consumed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn code(s: &Seen) -> Option<i32> {
    s.exit.and_then(|e| e.code)
}

#[test]
fn several_sessions_run_at_once_and_end_with_the_workload() {
    let Some(mut a) = Agent::start() else { return };
    let mut seen = BTreeMap::new();
    // The workload waits for a line of input.
    a.send(&Message::Exec {
        session: WORKLOAD,
        request: sh("read x; echo w$x; exit 7", &[]),
    });
    // Nothing blocked or ignored, whatever the agent blocks for itself (SIGCHLD).
    a.send(&Message::Exec {
        session: 5,
        request: sh("grep -E '^Sig(Blk|Ign)' /proc/self/status", &[]),
    });
    // Two sessions at once, one slower than the other; their env is their own.
    a.send(&Message::Exec {
        session: 1,
        request: sh("sleep 0.3; echo $X; exit 5", &["X=one"]),
    });
    a.send(&Message::Exec {
        session: 2,
        request: sh("echo $X >&2; exit 6", &["X=two"]),
    });
    // Background processes that hold its output open, quietly or writing on, do not keep
    // an ended session open for long.
    a.send(&Message::Exec {
        session: 6,
        request: sh(
            "sleep 100 & (while :; do echo bg; sleep 0.05; done) & echo main; exit 4",
            &[],
        ),
    });
    // One that never ends by itself, and one that cannot start.
    a.send(&Message::Exec {
        session: 3,
        request: sh("echo up; exec sleep 100", &[]),
    });
    a.send(&Message::Exec {
        session: 4,
        request: ExecRequest {
            args: vec!["/no/such/program".into()],
            ..sh("", &[])
        },
    });
    collect(&mut a, &mut seen, |s| {
        [1, 2, 4, 5, 6]
            .iter()
            .all(|i| s.get(i).is_some_and(|x| x.exit.is_some()))
            && s.get(&3).is_some_and(|x| x.stdout == b"up\n")
    });
    assert_eq!(seen[&1].stdout, b"one\n");
    assert_eq!(code(&seen[&1]), Some(5));
    assert_eq!(
        (&seen[&2].stdout[..], &seen[&2].stderr[..]),
        (&b""[..], &b"two\n"[..])
    );
    assert_eq!(code(&seen[&2]), Some(6));
    assert_eq!(
        String::from_utf8_lossy(&seen[&5].stdout),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    assert_eq!(code(&seen[&6]), Some(4));
    // Its background writer may print first: the two run at once.
    assert!(
        seen[&6].stdout.split(|b| *b == b'\n').any(|l| l == b"main"),
        "{:?}",
        seen[&6]
    );
    assert!(!seen[&4].started);
    assert!(
        seen[&4].errors[0].contains("/no/such/program"),
        "{:?}",
        seen[&4]
    );
    assert_eq!(code(&seen[&4]), Some(127));
    // The workload's end ends the sessions still running (SIGKILL), before its own Exit.
    a.send(&Message::Stdin {
        session: WORKLOAD,
        data: b"z\n".to_vec(),
    });
    collect(&mut a, &mut seen, |s| {
        s.get(&WORKLOAD).is_some_and(|x| x.exit.is_some())
    });
    assert_eq!(seen[&3].exit.unwrap().signal, Some(libc::SIGKILL));
    assert_eq!(seen[&WORKLOAD].stdout, b"wz\n");
    assert_eq!(code(&seen[&WORKLOAD]), Some(7));
    assert_eq!(a.wait(), 0, "the agent's loop ends with the workload");
}

#[test]
fn a_terminal_session_has_a_pty_its_size_and_signals() {
    let Some(mut a) = Agent::start() else { return };
    let mut seen = BTreeMap::new();
    a.send(&Message::Exec {
        session: WORKLOAD,
        request: sh("exec sleep 100", &[]),
    });
    let tty = |script: &str| ExecRequest {
        terminal: Some(WindowSize { rows: 24, cols: 80 }),
        ..sh(script, &["PATH=/bin:/usr/bin"])
    };
    a.send(&Message::Exec {
        session: 1,
        request: tty("exec sh -i"),
    });
    a.send(&Message::Resize {
        session: 1,
        size: WindowSize {
            rows: 50,
            cols: 132,
        },
    });
    // A terminal's input is typed: echoed, cooked into lines, and its end is a key.
    a.send(&Message::Stdin {
        session: 1,
        data: b"stty size; tty; test -t 0 && echo interactive; echo hi; exit 3\n".to_vec(),
    });
    collect(&mut a, &mut seen, |s| {
        s.get(&1).is_some_and(|x| x.exit.is_some())
    });
    let out = String::from_utf8_lossy(&seen[&1].stdout).into_owned();
    assert_eq!(code(&seen[&1]), Some(3), "{out}");
    assert!(out.contains("50 132"), "the resize reached the pty: {out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("interactive\r\n"), "{out}");
    assert!(
        out.contains("hi\r\n"),
        "output is through the pty (CR LF): {out}"
    );
    // ^C on the terminal interrupts its foreground process.
    a.send(&Message::Exec {
        session: 2,
        request: tty("trap 'echo INT; exit 9' INT; echo armed; while :; do sleep 0.1; done"),
    });
    collect(&mut a, &mut seen, |s| {
        s.get(&2)
            .is_some_and(|x| String::from_utf8_lossy(&x.stdout).contains("armed"))
    });
    a.send(&Message::Stdin {
        session: 2,
        data: b"\x03".to_vec(),
    });
    collect(&mut a, &mut seen, |s| {
        s.get(&2).is_some_and(|x| x.exit.is_some())
    });
    assert_eq!(code(&seen[&2]), Some(9));
    assert!(String::from_utf8_lossy(&seen[&2].stdout).contains("INT"));
    a.send(&Message::Signal {
        session: WORKLOAD,
        signal: libc::SIGTERM,
    });
    collect(&mut a, &mut seen, |s| {
        s.get(&WORKLOAD).is_some_and(|x| x.exit.is_some())
    });
    assert_eq!(seen[&WORKLOAD].exit.unwrap().signal, Some(libc::SIGTERM));
    assert_eq!(a.wait(), 0);
}

#[test]
fn output_waits_for_consumed_and_stdin_is_acknowledged() {
    let Some(mut a) = Agent::start() else { return };
    // 1 MB of output; the host consumes nothing at first.
    a.send(&Message::Exec {
        session: WORKLOAD,
        request: sh("head -c 1000000 /dev/zero; read x; echo $x", &[]),
    });
    let mut got = 0usize;
    let mut started = false;
    while let Some(msg) = a.try_recv(Duration::from_millis(500)) {
        match msg {
            Message::Started { .. } => started = true,
            Message::Stdout { data, .. } => got += data.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(started);
    assert_eq!(got, WINDOW, "the agent sent exactly one window and waited");
    // Stdin is acknowledged as the process reads it.
    a.send(&Message::Stdin {
        session: WORKLOAD,
        data: b"done\n".to_vec(),
    });
    a.send(&Message::Consumed {
        session: WORKLOAD,
        bytes: got as u32,
    });
    let (mut out, mut acked, mut exit) = (Vec::new(), 0, None);
    while exit.is_none() {
        match a.recv() {
            Message::Stdout { data, .. } => {
                a.consumed(WORKLOAD, data.len());
                got += data.len();
                out.extend(data);
            }
            Message::Consumed { bytes, .. } => acked += bytes,
            Message::Exit { status, .. } => exit = Some(status),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, 1_000_005);
    assert!(out.ends_with(b"done\n"));
    assert_eq!(acked, 5);
    assert_eq!(exit.unwrap().code, Some(0));
    assert_eq!(a.wait(), 0);
}

#[test]
fn a_closed_line_stops_everything() {
    let Some(mut a) = Agent::start() else { return };
    a.send(&Message::Exec {
        session: WORKLOAD,
        request: sh("exec sleep 100", &[]),
    });
    a.send(&Message::Exec {
        session: 1,
        request: sh("exec sleep 100", &[]),
    });
    let mut started = 0;
    while started < 2 {
        if let Message::Started { .. } = a.recv() {
            started += 1;
        }
    }
    let t = Instant::now();
    assert_eq!(a.wait(), 0);
    assert!(t.elapsed() < Duration::from_secs(10));
}
