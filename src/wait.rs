//! Foreground `run`: wait for the container's process while forwarding the signals isobox
//! receives to it, then turn its wait status into an exit code (128+N for signal N).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Signals a user sends to `isobox run` that belong to the workload.
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

static PIPE_WR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WR.load(Ordering::Relaxed);
    let b = sig as u8;
    // SAFETY: write(2) is async-signal-safe; a full pipe just drops the signal.
    unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
}

/// Wait for `pid` (a child of this process), calling `forward(signal)` for every forwarded
/// signal received meanwhile. Returns the exit code `run` should exit with.
pub fn wait_forwarding(pid: i32, mut forward: impl FnMut(i32)) -> Result<i32> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .context("creating the signal pipe")?;
    PIPE_WR.store(wr.as_raw_fd(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in FORWARDED {
        // SAFETY: the handler only calls write(2).
        unsafe { sigaction(sig, &action) }
            .with_context(|| format!("installing a {sig} handler"))?;
    }
    // SAFETY: pidfd_open returns a new descriptor we own, or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let pidfd = (raw >= 0).then(|| {
        // SAFETY: `raw` is the new descriptor pidfd_open returned, owned by no one else.
        unsafe { OwnedFd::from_raw_fd(raw) }
    });
    let code = loop {
        let mut fds = vec![PollFd::new(rd.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        // Without a pidfd (old kernels) poll with a short timeout and try waitpid.
        let timeout = if pidfd.is_some() {
            PollTimeout::NONE
        } else {
            PollTimeout::from(50u16)
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("waiting for the container"),
        }
        let mut buf = [0u8; 32];
        while let Ok(n) = nix::unistd::read(&rd, &mut buf) {
            if n == 0 {
                break;
            }
            buf[..n].iter().for_each(|&s| forward(s as i32));
        }
        match waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).with_context(|| format!("waiting for pid {pid}")),
        }
    };
    for sig in FORWARDED {
        // SAFETY: restoring the default disposition.
        let _ = unsafe {
            sigaction(
                sig,
                &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
            )
        };
    }
    PIPE_WR.store(-1, Ordering::Relaxed);
    drop(wr);
    Ok(code)
}
