//! Foreground `run` and `exec`: wait for the process while forwarding the signals isobox
//! receives to it (and relaying isobox's terminal to its own, when it has one), then turn its
//! end into an exit code (128+N for signal N).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use isobox_common::ExecSession;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::relay::{self, Relay};

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

/// Signal handlers that write to a pipe, installed while it lives.
struct SignalPipe {
    rd: OwnedFd,
    _wr: OwnedFd,
}

impl SignalPipe {
    fn install() -> Result<SignalPipe> {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
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
        Ok(SignalPipe { rd, _wr: wr })
    }

    /// The signals received since the last call.
    fn take(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let mut buf = [0u8; 32];
        while let Ok(n) = nix::unistd::read(&self.rd, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend(buf[..n].iter().map(|&s| s as i32));
        }
        out
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
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
    }
}

/// Wait for the process of `session`, forwarding the signals isobox receives to it; with
/// `console` (the master of its terminal) relay isobox's stdin and stdout through it and
/// pass isobox's window size on. Returns the exit code to exit with.
pub fn wait_session(session: &mut dyn ExecSession, console: Option<OwnedFd>) -> Result<i32> {
    let signals = SignalPipe::install()?;
    let mut term = console.map(Relay::new).transpose()?;
    // isobox's window size, for the terminal it relays.
    let resize = |session: &mut dyn ExecSession, term: &Relay| {
        if let Some(size) = relay::own_window_size() {
            term.resize(size);
            let _ = session.resize(size.rows, size.cols);
        }
    };
    if let Some(t) = &term {
        resize(session, t);
    }
    loop {
        {
            let mut fds = vec![PollFd::new(
                std::os::fd::AsFd::as_fd(&signals.rd),
                PollFlags::POLLIN,
            )];
            if let Some(ready) = session.ready_fd() {
                fds.push(PollFd::new(ready, PollFlags::POLLIN));
            }
            if let Some(r) = &term {
                fds.extend(r.poll_fds());
            }
            // Without a descriptor that tells of the exit, poll on a short timer.
            let timeout = if session.ready_fd().is_some() {
                PollTimeout::NONE
            } else {
                PollTimeout::from(50u16)
            };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("waiting for the process"),
            }
        }
        for sig in signals.take() {
            if let (libc::SIGWINCH, Some(t)) = (sig, &term) {
                resize(session, t);
            } else {
                let _ = session.signal(sig);
            }
        }
        if let Some(r) = &mut term {
            r.pump()?;
        }
        if let Some(code) = session.try_wait()? {
            // What it wrote before it ended is still in the terminal.
            if let Some(r) = &mut term {
                r.output()?;
            }
            return Ok(code);
        }
    }
}
