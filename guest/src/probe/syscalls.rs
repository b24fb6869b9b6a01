//! The syscall surface: which syscalls reach a kernel from inside the sandbox.
//!
//! Every probed syscall is called once with harmless arguments (see `syscall_table`). The
//! sweep runs in a forked child that reports each call over a pipe before and after making it,
//! so a seccomp filter that kills (SECCOMP_RET_KILL/TRAP) or a call that never returns
//! (SECCOMP_RET_USER_NOTIF without an answer) costs one syscall, not the whole report: the
//! parent records it and starts a new child after it. When fork is refused the sweep runs in
//! the probe process itself, which the table's arguments make safe too.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::Serialize;

use super::syscall_table::{Probe, Sys, TABLE};

/// How long one syscall may take before the child is killed and the call recorded "timed out".
const CALL_TIMEOUT_MS: i32 = 3000;

/// What happened when one syscall was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call returned this non-negative value.
    Returned(i64),
    /// The call failed with this errno.
    Errno(i32),
    /// The process died in the call, killed by this signal (SIGSYS for a seccomp kill/trap).
    Killed(i32),
    /// The call had not returned after `CALL_TIMEOUT_MS`.
    TimedOut,
}

/// The four classes of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Reachable,
    Blocked,
    Enosys,
    NotProbed,
}

/// Classifies one outcome. EPERM/EACCES count as "blocked" only under a seccomp filter:
/// without one they can only come from the kernel's own checks, which means it was reached.
/// (Under a filter a kernel-made EPERM is indistinguishable; the raw errno is kept in the
/// report for that reason.)
pub fn classify(outcome: Outcome, seccomp_filter: bool) -> Class {
    match outcome {
        Outcome::Returned(_) => Class::Reachable,
        Outcome::Errno(libc::ENOSYS) => Class::Enosys,
        Outcome::Errno(libc::EPERM | libc::EACCES) if seccomp_filter => Class::Blocked,
        Outcome::Errno(_) => Class::Reachable,
        Outcome::Killed(_) | Outcome::TimedOut => Class::Blocked,
    }
}

/// One row of `syscalls.results`.
#[derive(Debug, Clone, Serialize)]
pub struct SyscallResult {
    pub nr: u32,
    pub name: &'static str,
    pub class: Class,
    /// "ok <value>", an errno name ("EBADF"), "killed by signal <n>", "timed out", or for
    /// not_probed the reason it is never called.
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub reachable: usize,
    pub blocked: usize,
    pub enosys: usize,
    pub not_probed: usize,
}

/// The `syscalls` object of the report.
#[derive(Debug, Clone, Serialize)]
pub struct SyscallReport {
    pub arch: &'static str,
    /// "child" (forked sweep) or "in_process" (fork refused).
    pub method: &'static str,
    /// Whether EPERM/EACCES were read as a seccomp verdict.
    pub seccomp_filter: bool,
    pub counts: Counts,
    pub reachable: Vec<&'static str>,
    pub blocked: Vec<&'static str>,
    pub enosys: Vec<&'static str>,
    pub not_probed: Vec<&'static str>,
    pub results: Vec<SyscallResult>,
}

/// Makes one call. Returns the result as the kernel encodes it: >= 0 value, < 0 -errno.
/// Allocates nothing, so it is safe in a forked child.
fn invoke(sys: &Sys) -> i64 {
    let (args, close) = match sys.probe {
        Probe::Call(a) => (a, false),
        Probe::CallClose(a) => (a, true),
        Probe::Skip(_) => return 0,
    };
    // SAFETY: the table's arguments are chosen so that the kernel rejects the call or does
    // nothing observable outside this process; pointers are null, never our memory.
    let ret = unsafe {
        libc::syscall(
            libc::c_long::from(sys.nr()),
            args[0],
            args[1],
            args[2],
            args[3],
            args[4],
            args[5],
        )
    };
    if ret < 0 {
        // SAFETY: errno is thread-local and set by the failed call just above.
        return -i64::from(unsafe { *libc::__errno_location() });
    }
    if close {
        if let Ok(fd) = i32::try_from(ret) {
            // SAFETY: the call just returned this descriptor to us and nothing else owns it.
            unsafe { libc::close(fd) };
        }
    }
    ret
}

fn decode(raw: i64) -> Outcome {
    if raw < 0 {
        Outcome::Errno(i32::try_from(-raw).unwrap_or(i32::MAX))
    } else {
        Outcome::Returned(raw)
    }
}

/// Child side: report "starting i" then "done i value" for each probed row from `start` on.
fn child_sweep(fd: i32, start: usize) -> ! {
    for (i, sys) in TABLE.iter().enumerate().skip(start) {
        if matches!(sys.probe, Probe::Skip(_)) {
            continue;
        }
        write_record(fd, i, 0, 0);
        let raw = invoke(sys);
        write_record(fd, i, 1, raw);
    }
    // SAFETY: _exit skips atexit handlers and buffers that belong to the parent.
    unsafe { libc::_exit(0) }
}

fn write_record(fd: i32, index: usize, phase: u32, value: i64) {
    let mut rec = [0u8; 16];
    rec[0..4].copy_from_slice(&(index as u32).to_le_bytes());
    rec[4..8].copy_from_slice(&phase.to_le_bytes());
    rec[8..16].copy_from_slice(&value.to_le_bytes());
    // SAFETY: writes 16 bytes from a local buffer; a pipe write this small is atomic.
    unsafe { libc::write(fd, rec.as_ptr().cast(), rec.len()) };
}

/// Reads one 16-byte record, waiting at most `CALL_TIMEOUT_MS`. `Ok(None)` on EOF,
/// `Err(())` on timeout.
fn read_record(fd: &OwnedFd) -> Result<Option<(usize, u32, i64)>, ()> {
    let mut rec = [0u8; 16];
    let mut have = 0;
    while have < rec.len() {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, CALL_TIMEOUT_MS) };
        if n == 0 {
            return Err(());
        }
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Ok(None);
        }
        // SAFETY: reads into the unfilled tail of a local buffer.
        let got = unsafe {
            libc::read(
                fd.as_raw_fd(),
                rec[have..].as_mut_ptr().cast(),
                rec.len() - have,
            )
        };
        if got <= 0 {
            if got < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            return Ok(None);
        }
        have += got as usize;
    }
    let index = u32::from_le_bytes(rec[0..4].try_into().unwrap_or_default()) as usize;
    let phase = u32::from_le_bytes(rec[4..8].try_into().unwrap_or_default());
    let value = i64::from_le_bytes(rec[8..16].try_into().unwrap_or_default());
    Ok(Some((index, phase, value)))
}

/// Runs one child from `start`; fills `out`. Returns `None` when fork is refused, else the
/// index of the call the child died or hung in, if any.
fn run_child(start: usize, out: &mut [Option<Outcome>]) -> Option<Option<usize>> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: both descriptors are fresh and owned only here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the probe is single-threaded; the child only makes raw syscalls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return None;
    }
    if pid == 0 {
        drop(rd);
        child_sweep(wr.as_raw_fd(), start);
    }
    drop(wr);
    let mut current = None;
    let mut hung = false;
    loop {
        match read_record(&rd) {
            Ok(Some((i, 0, _))) if i < out.len() => current = Some(i),
            Ok(Some((i, _, v))) if i < out.len() => {
                out[i] = Some(decode(v));
                current = None;
            }
            Ok(Some(_)) | Ok(None) => break,
            Err(()) => {
                hung = true;
                // SAFETY: pid is our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
        }
    }
    let mut status = 0;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if let Some(i) = current {
        out[i] = Some(if hung {
            Outcome::TimedOut
        } else if libc::WIFSIGNALED(status) {
            Outcome::Killed(libc::WTERMSIG(status))
        } else {
            Outcome::Killed(0)
        });
    }
    Some(current)
}

/// Runs the whole sweep and builds the report.
pub fn probe(seccomp_filter: bool) -> SyscallReport {
    let mut out: Vec<Option<Outcome>> = vec![None; TABLE.len()];
    let mut method = "child";
    let mut start = 0;
    while start < TABLE.len() {
        match run_child(start, &mut out) {
            // Died or hung in a call: carry on after it.
            Some(Some(i)) => start = i + 1,
            Some(None) => break,
            None => {
                method = "in_process";
                for (i, sys) in TABLE.iter().enumerate().skip(start) {
                    if !matches!(sys.probe, Probe::Skip(_)) {
                        out[i] = Some(decode(invoke(sys)));
                    }
                }
                break;
            }
        }
    }
    build(&out, seccomp_filter, method)
}

fn build(out: &[Option<Outcome>], seccomp_filter: bool, method: &'static str) -> SyscallReport {
    let mut rep = SyscallReport {
        arch: "x86_64",
        method,
        seccomp_filter,
        counts: Counts::default(),
        reachable: Vec::new(),
        blocked: Vec::new(),
        enosys: Vec::new(),
        not_probed: Vec::new(),
        results: Vec::with_capacity(TABLE.len()),
    };
    for (sys, outcome) in TABLE.iter().zip(out) {
        let (class, detail) = match (sys.probe, outcome) {
            (Probe::Skip(why), _) => (Class::NotProbed, why.to_string()),
            (_, Some(o)) => (classify(*o, seccomp_filter), describe(*o)),
            // The child stopped reporting without dying in a call: should not happen.
            (_, None) => (Class::NotProbed, "no result from the sweep".to_string()),
        };
        let (count, list) = match class {
            Class::Reachable => (&mut rep.counts.reachable, &mut rep.reachable),
            Class::Blocked => (&mut rep.counts.blocked, &mut rep.blocked),
            Class::Enosys => (&mut rep.counts.enosys, &mut rep.enosys),
            Class::NotProbed => (&mut rep.counts.not_probed, &mut rep.not_probed),
        };
        *count += 1;
        list.push(sys.name);
        rep.results.push(SyscallResult {
            nr: sys.nr(),
            name: sys.name,
            class,
            detail,
        });
    }
    rep
}

fn describe(o: Outcome) -> String {
    match o {
        Outcome::Returned(v) => format!("ok {v}"),
        Outcome::Errno(e) => errno_name(e),
        Outcome::Killed(s) => format!("killed by signal {s}"),
        Outcome::TimedOut => "timed out".to_string(),
    }
}

/// The symbolic name of the errnos these probes produce; others as "errno <n>".
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ENODATA => "ENODATA",
        libc::EBADMSG => "EBADMSG",
        libc::ENOKEY => "ENOKEY",
        libc::ESTALE => "ESTALE",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_without_a_filter_counts_eperm_as_reached() {
        assert_eq!(classify(Outcome::Returned(0), false), Class::Reachable);
        assert_eq!(
            classify(Outcome::Errno(libc::EBADF), false),
            Class::Reachable
        );
        assert_eq!(
            classify(Outcome::Errno(libc::EPERM), false),
            Class::Reachable
        );
        assert_eq!(
            classify(Outcome::Errno(libc::EACCES), false),
            Class::Reachable
        );
        assert_eq!(classify(Outcome::Errno(libc::ENOSYS), false), Class::Enosys);
    }

    #[test]
    fn classifier_under_a_filter() {
        assert_eq!(classify(Outcome::Errno(libc::EPERM), true), Class::Blocked);
        assert_eq!(classify(Outcome::Errno(libc::EACCES), true), Class::Blocked);
        assert_eq!(classify(Outcome::Errno(libc::ENOSYS), true), Class::Enosys);
        assert_eq!(
            classify(Outcome::Errno(libc::EFAULT), true),
            Class::Reachable
        );
        assert_eq!(
            classify(Outcome::Killed(libc::SIGSYS), true),
            Class::Blocked
        );
        assert_eq!(classify(Outcome::TimedOut, true), Class::Blocked);
    }

    #[test]
    fn decode_splits_values_and_errnos() {
        assert_eq!(decode(5), Outcome::Returned(5));
        assert_eq!(decode(-9), Outcome::Errno(9));
        assert_eq!(errno_name(libc::EBADF), "EBADF");
        assert_eq!(errno_name(4095), "errno 4095");
    }

    #[test]
    fn build_counts_every_row_once() {
        let out: Vec<Option<Outcome>> = TABLE
            .iter()
            .map(|s| match s.name {
                "getpid" => Some(Outcome::Returned(1)),
                "bpf" => Some(Outcome::Errno(libc::EPERM)),
                "uselib" => Some(Outcome::Errno(libc::ENOSYS)),
                _ => Some(Outcome::Errno(libc::EBADF)),
            })
            .collect();
        let rep = build(&out, true, "child");
        let c = &rep.counts;
        assert_eq!(
            c.reachable + c.blocked + c.enosys + c.not_probed,
            TABLE.len()
        );
        assert_eq!(rep.blocked, ["bpf"]);
        assert_eq!(rep.enosys, ["uselib"]);
        assert!(rep.not_probed.contains(&"reboot"));
        assert_eq!(rep.results.len(), TABLE.len());
    }

    #[test]
    fn real_sweep_reaches_the_basics_and_survives() {
        let rep = probe(false);
        let c = &rep.counts;
        assert_eq!(
            c.reachable + c.blocked + c.enosys + c.not_probed,
            TABLE.len()
        );
        for name in ["getpid", "read", "close", "openat"] {
            assert!(
                rep.reachable.contains(&name),
                "{name} should reach the kernel"
            );
        }
        // The test process must still have its stdio after the sweep.
        for fd in 0..3 {
            // SAFETY: F_GETFD on fds 0..2 only reads flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(flags >= 0, "fd {fd} closed");
        }
    }
}
