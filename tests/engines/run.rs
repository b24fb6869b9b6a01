//! Running an engine's command line with a deadline: stdio through files (a container an
//! engine leaves running could hold a pipe open), or on a pseudo-terminal for `-t`.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a command did: its status (None if it ran past its deadline and was killed) and its
/// output (stdout and stderr together, in order, for a terminal).
#[derive(Debug)]
pub struct Ran {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub line: String,
}

impl Ran {
    fn not_started(line: String, e: std::io::Error) -> Ran {
        Ran {
            status: None,
            stdout: String::new(),
            stderr: format!("cannot run: {e}"),
            line,
        }
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn ok(&self) -> bool {
        self.code() == Some(0)
    }

    /// Everything it printed, for matching and for failure messages.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// One line saying what ran and what came of it.
    pub fn describe(&self) -> String {
        let status = match self.status {
            None => "timed out".to_string(),
            Some(s) => format!("{s}"),
        };
        let out = isobox_common::text::one_line(self.all().trim());
        format!("`{}` {status}: {}", self.line, cut(&out, 400))
    }
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The command as a user would type it: without the options that point an engine at the
/// test's private state (they are the same in every command and would bury the rest).
fn command_line(cmd: &Command) -> String {
    const PRIVATE: &[&str] = &[
        "--root",
        "--runroot",
        "--network-config-dir",
        "--tmpdir",
        "--address",
        "--namespace",
        "-H",
    ];
    let mut line = cmd.get_program().to_string_lossy().to_string();
    let mut args = cmd.get_args().map(|a| a.to_string_lossy());
    while let Some(a) = args.next() {
        if PRIVATE.contains(&&*a) {
            args.next();
            continue;
        }
        if a == "--storage-driver=vfs" {
            continue;
        }
        line.push(' ');
        line.push_str(&a);
    }
    line
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to its end or for at most `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Ran {
    let line = command_line(&cmd);
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    let status = match cmd.spawn() {
        Ok(mut child) => wait_until(&mut child, Instant::now() + limit),
        Err(e) => return Ran::not_started(line, e),
    };
    Ran {
        status,
        stdout: read_back(&mut out),
        stderr: read_back(&mut err),
        line,
    }
}

fn read_back(f: &mut std::fs::File) -> String {
    use std::io::Seek;
    let mut s = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut s).unwrap();
    String::from_utf8_lossy(&s).into_owned()
}

/// Runs `cmd` with a new pseudo-terminal as its stdin, stdout, stderr and controlling
/// terminal, as a user's shell would for `-t`; its output is what the terminal showed.
pub fn run_on_pty(mut cmd: Command, limit: Duration) -> Ran {
    use std::os::unix::process::CommandExt;
    let line = command_line(&cmd);
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave: OwnedFd = pty.slave;
    let master: OwnedFd = pty.master;
    let slave_fd = slave.as_raw_fd();
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(cmd);
    drop(slave);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Ran::not_started(line, e),
    };
    let deadline = Instant::now() + limit;
    let mut shown = Vec::new();
    let mut status = None;
    let mut ended_at = None;
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16)).unwrap_or(0);
        if ready > 0 {
            match nix::unistd::read(&master, &mut buf) {
                Ok(n) if n > 0 => shown.extend_from_slice(&buf[..n]),
                // EIO: every slave end is closed.
                _ => {
                    if status.is_some() {
                        break;
                    }
                }
            }
        }
        if status.is_none() {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                ended_at = Some(Instant::now());
            }
        }
        // Whatever it left holding the terminal gets a moment to flush, not forever.
        if ended_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
    }
    Ran {
        status,
        stdout: String::from_utf8_lossy(&shown).into_owned(),
        stderr: String::new(),
        line,
    }
}
