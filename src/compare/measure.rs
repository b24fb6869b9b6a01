//! Timing one runtime command: wall time to exit, time to the first stdout byte, and the peak
//! RSS of its host process tree — plus the statistics over many runs.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// What one run of a command showed.
#[derive(Debug)]
pub struct RunOutcome {
    /// From just before spawn to the moment the process exited.
    pub wall: Duration,
    /// From just before spawn to the first byte on its stdout (None: it printed nothing).
    pub first_output: Option<Duration>,
    /// Exit code, or 128 + signal number.
    pub exit_code: i32,
    /// ru_maxrss of wait4: the largest resident set of the process or of any descendant it
    /// (or its descendants) reaped — a maximum over the tree, not a sum.
    pub peak_rss_bytes: u64,
    /// For a microVM: the most its host processes held beyond the guest's RAM (filled in by
    /// the caller, which knows the VM's state directory; see `vmm_memory`).
    pub vmm_overhead_bytes: Option<u64>,
    /// For a microVM: its host processes and how each is confined (filled in the same way).
    pub host_processes: Vec<super::row::HostProcess>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl RunOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The line that says why a run failed, for a table cell: isobox's error line
    /// (`isobox: …`, not `isobox: warning: …` such as the TCG notice), else the first other
    /// stderr line that is not a warning, else stdout's first line, else a warning, else the
    /// exit code.
    pub fn error_line(&self) -> String {
        let lines = |bytes: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        let err = lines(&self.stderr);
        let out = lines(&self.stdout);
        err.iter()
            .find(|l| l.starts_with("isobox: ") && !is_warning(l))
            .or_else(|| err.iter().find(|l| !is_warning(l)))
            .or_else(|| out.first())
            .or_else(|| err.first())
            .cloned()
            .unwrap_or_else(|| format!("exited with code {}", self.exit_code))
    }
}

/// A stderr line that warns rather than says why the run failed (isobox's own, or runc's
/// logrus `level=warning`).
fn is_warning(line: &str) -> bool {
    let rest = line.strip_prefix("isobox: ").unwrap_or(line);
    rest.get(..8)
        .is_some_and(|w| w.eq_ignore_ascii_case("warning:"))
        || line.contains("level=warning")
}

/// Run `argv` with `env` added, stdin closed, stdout/stderr captured, in its own process group
/// (so stragglers can be killed as one). Past `timeout` the whole group is killed and an error
/// returned.
pub fn run_measured(
    argv: &[OsString],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<RunOutcome> {
    let (program, args) = argv.split_first().context("empty command line")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // A pre_exec hook makes std fork instead of vfork: after a vfork, exec records the
    // parent's whole peak RSS (text pages included) as the child's ru_maxrss; after a fork
    // only the anonymous pages the child copied. SAFETY: the hook does nothing.
    unsafe { cmd.pre_exec(|| Ok(())) };
    let shown = || {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", program.to_string_lossy()))?;
    let pid = child.id() as libc::pid_t;
    let out_pipe = child.stdout.take().context("child stdout")?;
    let err_pipe = child.stderr.take().context("child stderr")?;

    let (err_tx, err_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut pipe = err_pipe;
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = err_tx.send(buf);
    });

    // stdout is read here, between waits on the exit, so its first byte is stamped the
    // moment it arrives rather than when a freshly started reader thread gets a CPU.
    let mut out = StdoutWatch::new(out_pipe);
    let exited = wait_exit(pid, timeout, &mut out);
    let wall = started.elapsed();
    // The leader is a zombie (or was killed) and keeps the group id reserved until reaped:
    // whatever it left behind in its group goes now.
    // SAFETY: kill(2) on our own child's process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let (exit_code, rusage) = reap(pid)?;
    // The child handle must not wait again; std does not reap on drop.
    drop(child);
    if let Err(e) = exited {
        bail!("{}: {e}", shown());
    }

    // What is still in the pipe; a writer that escaped the group cannot hold this up.
    out.drain_nonblocking();
    let (stdout, first_at) = (out.buf, out.first);
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_default();
    Ok(RunOutcome {
        wall,
        first_output: first_at.map(|t| t.saturating_duration_since(started)),
        exit_code,
        peak_rss_bytes: (rusage.ru_maxrss.max(0) as u64) * 1024,
        vmm_overhead_bytes: None,
        host_processes: Vec::new(),
        stdout,
        stderr,
    })
}

/// The child's stdout, read as it comes, with the arrival time of its first byte.
struct StdoutWatch {
    pipe: std::process::ChildStdout,
    open: bool,
    buf: Vec<u8>,
    first: Option<Instant>,
}

impl StdoutWatch {
    fn new(pipe: std::process::ChildStdout) -> Self {
        StdoutWatch {
            pipe,
            open: true,
            buf: Vec::new(),
            first: None,
        }
    }

    /// One read after poll said the pipe is ready (data or EOF).
    fn read_ready(&mut self) {
        let mut chunk = [0u8; 4096];
        match self.pipe.read(&mut chunk) {
            Ok(0) => self.open = false,
            Ok(n) => {
                self.first.get_or_insert_with(Instant::now);
                self.buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => self.open = false,
        }
    }

    /// Read what is left without blocking.
    fn drain_nonblocking(&mut self) {
        if !self.open {
            return;
        }
        let fd = self.pipe.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        let mut chunk = [0u8; 4096];
        loop {
            match self.pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    self.first.get_or_insert_with(Instant::now);
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.open = false;
    }
}

/// Block until `pid` has exited (left as a zombie, not reaped) or `timeout` passed, reading
/// its stdout meanwhile.
fn wait_exit(pid: libc::pid_t, timeout: Duration, out: &mut StdoutWatch) -> Result<()> {
    // A pidfd becomes readable when the process exits: no polling loop, no signal handler.
    // SAFETY: plain syscall; the result is checked.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if raw < 0 {
        bail!("pidfd_open({pid}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let deadline = Instant::now() + timeout;
    loop {
        if interrupted() {
            bail!("interrupted, killed");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("still running after {} s, killed", timeout.as_secs());
        }
        let mut pfds = [
            libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                // A negative fd is ignored by poll: the pipe reached EOF.
                fd: if out.open { out.pipe.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms.max(1)) };
        if n > 0 {
            if pfds[1].revents != 0 {
                out.read_ready();
            }
            if pfds[0].revents != 0 {
                return Ok(());
            }
            continue;
        }
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                bail!("poll on pidfd of {pid}: {err}");
            }
        }
    }
}

/// Reap `pid` and return its exit code (128 + signal when killed) and its rusage.
fn reap(pid: libc::pid_t) -> Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}): {err}");
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    Ok((code, usage))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT, SIGTERM and SIGHUP so a run in progress is killed and the caller can clean up
/// (the children sit in their own process groups, so a terminal's ^C does not reach them).
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// True once one of the signals `catch_interrupts` handles arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// min/median/max of a series, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Stats {
    /// None for an empty series. The median of an even count is the mean of the middle two.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            min: v[0],
            median,
            max: v[n - 1],
        })
    }

    pub fn of_durations(values: &[Duration]) -> Option<Stats> {
        let ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        Stats::of(&ms)
    }
}

/// `mine / reference` of two medians; None when either is missing or the reference is zero.
pub fn ratio(mine: Option<Stats>, reference: Option<Stats>) -> Option<f64> {
    let (m, r) = (mine?.median, reference?.median);
    (r > 0.0).then(|| m / r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_odd_count() {
        let s = Stats::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(
            s,
            Stats {
                min: 1.0,
                median: 3.0,
                max: 5.0
            }
        );
    }

    #[test]
    fn stats_even_count_takes_mean_of_middle_two() {
        let s = Stats::of(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
    }

    #[test]
    fn stats_empty_and_nan() {
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[f64::NAN]), None);
        assert_eq!(Stats::of(&[f64::NAN, 2.0]).unwrap().median, 2.0);
    }

    #[test]
    fn stats_of_durations_in_ms() {
        let s = Stats::of_durations(&[Duration::from_millis(20), Duration::from_micros(10_500)])
            .unwrap();
        assert_eq!(s.min, 10.5);
        assert_eq!(s.max, 20.0);
        assert_eq!(s.median, 15.25);
    }

    #[test]
    fn ratio_of_medians() {
        let a = Stats::of(&[30.0]);
        let b = Stats::of(&[20.0]);
        assert_eq!(ratio(a, b), Some(1.5));
        assert_eq!(ratio(a, None), None);
        assert_eq!(ratio(None, b), None);
        assert_eq!(ratio(a, Stats::of(&[0.0])), None);
    }

    #[test]
    fn measures_a_real_command() {
        let argv: Vec<OsString> = ["/bin/sh", "-c", "echo ready; echo oops >&2; exit 3"]
            .iter()
            .map(OsString::from)
            .collect();
        let out = run_measured(&argv, &[], Duration::from_secs(20)).unwrap();
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stdout, b"ready\n");
        assert_eq!(out.error_line(), "oops");
        assert!(out.first_output.is_some());
        assert!(out.first_output.unwrap() <= out.wall + Duration::from_secs(1));
        assert!(out.peak_rss_bytes > 0);
    }

    #[test]
    fn output_larger_than_a_pipe_and_stragglers() {
        // 200 kB is more than a pipe holds: reading must go on while waiting for the exit.
        // The background sleep keeps stdout open after the shell exits; it dies with the
        // group and must not hold the run up.
        let argv: Vec<OsString> = [
            "/bin/sh",
            "-c",
            "head -c 200000 /dev/zero; sleep 30 & exit 0",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let t = Instant::now();
        let out = run_measured(&argv, &[], Duration::from_secs(20)).unwrap();
        assert_eq!(out.stdout.len(), 200_000);
        assert!(out.success());
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "not held up by the straggler"
        );
    }

    #[test]
    fn error_line_is_the_error_not_a_warning() {
        let run = |stderr: &str, stdout: &str| RunOutcome {
            wall: Duration::ZERO,
            first_output: None,
            exit_code: 1,
            peak_rss_bytes: 0,
            vmm_overhead_bytes: None,
            host_processes: Vec::new(),
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        let tcg = "isobox: warning: this host's KVM cannot boot Linux: the VM runs under qemu TCG";
        assert_eq!(
            run(
                &format!(
                    "{tcg}\nisobox: microvm: guest agent: no Hello within 60 s\n  console line\n"
                ),
                ""
            )
            .error_line(),
            "isobox: microvm: guest agent: no Hello within 60 s"
        );
        assert_eq!(
            run(
                "time=\"x\" level=warning msg=\"w\"\ntime=\"x\" level=error msg=\"e\"\n",
                ""
            )
            .error_line(),
            "time=\"x\" level=error msg=\"e\""
        );
        assert_eq!(run(&format!("{tcg}\n"), "out\n").error_line(), "out");
        assert_eq!(run(&format!("{tcg}\n"), "").error_line(), tcg);
        assert_eq!(run("", "").error_line(), "exited with code 1");
    }

    #[test]
    fn kills_on_timeout_and_reports() {
        let argv: Vec<OsString> = ["/bin/sh", "-c", "sleep 30"]
            .iter()
            .map(OsString::from)
            .collect();
        let err = run_measured(&argv, &[], Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("killed"), "{err}");
    }

    #[test]
    fn env_reaches_the_child() {
        let argv: Vec<OsString> = ["/bin/sh", "-c", "echo $CMP_TEST_VAR"]
            .iter()
            .map(OsString::from)
            .collect();
        let env = [("CMP_TEST_VAR".to_string(), "x42".to_string())];
        let out = run_measured(&argv, &env, Duration::from_secs(20)).unwrap();
        assert_eq!(out.stdout, b"x42\n");
    }
}
