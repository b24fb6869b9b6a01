//! Resource-containment checks (`--containment`): does the sandbox stop a workload that eats
//! memory or forks without end? Both run in child processes, stop at a cap even when nothing
//! contains them, and leave no process behind.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::Serialize;

use super::syscalls::errno_name;

pub const MEM_ENV: &str = "ISOBOX_PROBE_MEM_MIB";
pub const FORKS_ENV: &str = "ISOBOX_PROBE_FORKS";
const DEFAULT_MEM_MIB: u64 = 512;
const DEFAULT_FORKS: u32 = 1024;
const MAX_MEM_MIB: u64 = 16 * 1024;
const MAX_FORKS: u32 = 32 * 1024;
const STEP_MIB: u64 = 8;
/// Give up on a child that has said nothing for this long (it is then killed).
const QUIET_TIMEOUT_MS: i32 = 60_000;

/// The `containment` object of the report (present only with `--containment`).
#[derive(Debug, Clone, Serialize)]
pub struct Containment {
    pub memory: MemoryResult,
    pub pids: PidsResult,
    /// Bad env values, named; the default was used instead.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryResult {
    pub cap_mib: u64,
    pub step_mib: u64,
    /// Memory allocated and touched before the child stopped.
    pub reached_mib: u64,
    /// "completed" (reached the cap: not contained below it), "killed" (by a signal, normally
    /// the OOM killer's SIGKILL), "alloc_failed" (mmap refused), or "error".
    pub outcome: String,
    /// The signal that killed the child, if any.
    pub signal: Option<i32>,
    /// Whether the child was killed by SIGKILL: the sandbox's memory limit held.
    pub oom_killed: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PidsResult {
    pub cap: u32,
    /// Children forked before fork failed or the cap was reached.
    pub forked: u32,
    /// The errno that stopped forking (EAGAIN under a pids limit); null when the cap was hit.
    pub stopped_by: Option<String>,
    /// `forked < cap`: something limited the number of processes.
    pub limited: bool,
    pub error: Option<String>,
}

/// Reads a bounded positive number from `var`, or the default with an error naming the value.
fn env_number(var: &str, default: u64, max: u64, errors: &mut Vec<String>) -> u64 {
    match std::env::var(var) {
        Err(_) => default,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                errors.push(format!(
                    "{var}={v:?}: not a number in 1..={max}; using {default}"
                ));
                default
            }
        },
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fills two descriptors into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors owned only here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on EOF, `Err` on timeout or read error.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> Result<bool, String> {
    let mut have = 0;
    while have < buf.len() {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, QUIET_TIMEOUT_MS) };
        if n == 0 {
            return Err(format!("child silent for {} s", QUIET_TIMEOUT_MS / 1000));
        }
        let got = if n > 0 {
            // SAFETY: reads into the unfilled tail of `buf`.
            unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    buf[have..].as_mut_ptr().cast(),
                    buf.len() - have,
                )
            }
        } else {
            -1
        };
        if got == 0 {
            return Ok(false);
        }
        if got < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("reading the child's pipe: {e}"));
        }
        have += got as usize;
    }
    Ok(true)
}

fn write_all(fd: i32, buf: &[u8]) {
    // SAFETY: writes a local buffer; small pipe writes are atomic.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: reaps our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
    status
}

/// Child: allocate and touch STEP_MIB at a time, reporting each finished step.
fn eat_memory(fd: i32, steps: u64) -> ! {
    // Be the OOM killer's first choice, so a limit kills this child and not the probe.
    let score = b"1000";
    // SAFETY: a static NUL-terminated path and a local buffer; raw calls only after fork.
    unsafe {
        let adj = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if adj >= 0 {
            libc::write(adj, score.as_ptr().cast(), score.len());
            libc::close(adj);
        }
    }
    let len = (STEP_MIB << 20) as usize;
    for step in 1..=steps {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(3) };
        }
        let base = p.cast::<u8>();
        for off in (0..len).step_by(4096) {
            // SAFETY: off < len, inside the mapping; volatile so the page is really touched.
            unsafe { base.add(off).write_volatile(1) };
        }
        write_all(fd, &(step as u32).to_le_bytes());
    }
    // SAFETY: leaves the child; the kernel frees its memory.
    unsafe { libc::_exit(0) }
}

pub fn memory(cap_mib: u64) -> MemoryResult {
    let steps = cap_mib.div_ceil(STEP_MIB);
    let mut r = MemoryResult {
        cap_mib,
        step_mib: STEP_MIB,
        reached_mib: 0,
        outcome: "error".into(),
        signal: None,
        oom_killed: false,
        error: None,
    };
    let (rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            r.error = Some(format!("memory: pipe: {e}"));
            return r;
        }
    };
    // SAFETY: single-threaded; the child only maps, touches, writes and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        r.error = Some(format!("memory: fork: {}", std::io::Error::last_os_error()));
        return r;
    }
    if pid == 0 {
        drop(rd);
        eat_memory(wr.as_raw_fd(), steps);
    }
    drop(wr);
    let mut buf = [0u8; 4];
    loop {
        match read_full(&rd, &mut buf) {
            Ok(true) => r.reached_mib = u64::from(u32::from_le_bytes(buf)) * STEP_MIB,
            Ok(false) => break,
            Err(e) => {
                r.error = Some(format!("memory: {e}"));
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
        }
    }
    let status = wait(pid);
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        r.signal = Some(sig);
        r.oom_killed = sig == libc::SIGKILL && r.error.is_none();
        r.outcome = "killed".into();
    } else if libc::WIFEXITED(status) {
        r.outcome = match libc::WEXITSTATUS(status) {
            0 => "completed",
            3 => "alloc_failed",
            _ => "error",
        }
        .into();
    }
    if r.error.is_some() {
        r.outcome = "error".into();
    }
    r
}

/// Leader: fork up to `cap` sleepers, count them, kill and reap them all, report.
fn fork_bomb(fd: i32, cap: u32, mut kids: Vec<i32>) -> ! {
    // SAFETY: puts the leader in its own process group so the parent can kill them all.
    unsafe { libc::setpgid(0, 0) };
    // SAFETY: getpid cannot fail.
    let leader = unsafe { libc::getpid() };
    let mut stopped = 0i32;
    for _ in 0..cap {
        // SAFETY: single-threaded leader; the grandchild only waits to be killed.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            // SAFETY: errno of the failed fork.
            stopped = unsafe { *libc::__errno_location() };
            break;
        }
        if pid == 0 {
            // SAFETY: die with the leader; then sleep until killed.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if libc::getppid() != leader {
                    libc::_exit(0);
                }
                loop {
                    libc::pause();
                }
            }
        }
        kids.push(pid);
    }
    for &k in &kids {
        // SAFETY: our own children.
        unsafe { libc::kill(k, libc::SIGKILL) };
    }
    for &k in &kids {
        wait(k);
    }
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&(kids.len() as u32).to_le_bytes());
    rec[4..].copy_from_slice(&stopped.to_le_bytes());
    write_all(fd, &rec);
    // SAFETY: leaves the leader.
    unsafe { libc::_exit(0) }
}

pub fn pids(cap: u32) -> PidsResult {
    let mut r = PidsResult {
        cap,
        forked: 0,
        stopped_by: None,
        limited: false,
        error: None,
    };
    let (rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            r.error = Some(format!("pids: pipe: {e}"));
            return r;
        }
    };
    // Allocated before fork so the leader never needs the allocator.
    let kids: Vec<i32> = Vec::with_capacity(cap as usize);
    // SAFETY: single-threaded; see fork_bomb.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        r.error = Some(format!("pids: fork: {}", std::io::Error::last_os_error()));
        return r;
    }
    if pid == 0 {
        drop(rd);
        fork_bomb(wr.as_raw_fd(), cap, kids);
    }
    drop(wr);
    let mut rec = [0u8; 8];
    match read_full(&rd, &mut rec) {
        Ok(true) => {
            r.forked = u32::from_le_bytes(rec[..4].try_into().unwrap_or_default());
            let e = i32::from_le_bytes(rec[4..].try_into().unwrap_or_default());
            r.stopped_by = (e != 0).then(|| errno_name(e));
            r.limited = r.forked < cap;
        }
        Ok(false) => r.error = Some("pids: the fork leader died before reporting".into()),
        Err(e) => r.error = Some(format!("pids: {e}")),
    }
    // Backstop while the leader's group id cannot be reused (the leader is not reaped yet).
    // SAFETY: signals only the group this probe created.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    wait(pid);
    r
}

/// Runs both checks with the caps from the environment.
pub fn probe() -> Containment {
    let mut errors = Vec::new();
    let mem = env_number(MEM_ENV, DEFAULT_MEM_MIB, MAX_MEM_MIB, &mut errors);
    let forks = env_number(
        FORKS_ENV,
        u64::from(DEFAULT_FORKS),
        u64::from(MAX_FORKS),
        &mut errors,
    );
    let memory = memory(mem);
    let pids = pids(u32::try_from(forks).unwrap_or(DEFAULT_FORKS));
    Containment {
        memory,
        pids,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_run_completes() {
        let r = memory(16);
        assert_eq!(r.outcome, "completed", "{r:?}");
        assert_eq!(r.reached_mib, 16);
        assert!(!r.oom_killed);
    }

    #[test]
    fn small_fork_run_forks_and_cleans_up() {
        let r = pids(8);
        assert_eq!(r.error, None);
        assert_eq!(r.forked, 8, "{r:?}");
        assert!(!r.limited);
    }

    #[test]
    fn env_numbers_are_bounded() {
        let mut errors = Vec::new();
        assert_eq!(
            env_number("ISOBOX_PROBE_TEST_UNSET_VAR", 5, 10, &mut errors),
            5
        );
        assert!(errors.is_empty());
    }
}
