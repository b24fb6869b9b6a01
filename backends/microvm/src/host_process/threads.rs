//! The host process's helper threads; each turns one source into [`Event`]s.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender as Sender;
use std::sync::{Arc, Mutex};
use std::thread;

use isobox_common::protocol::{self, Message};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use super::Event;

/// Signals the host process relays to the workload.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGPWR,
];

/// Signals that stop a VM whose workload has not started yet.
pub fn terminates_before_start(sig: i32) -> bool {
    [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGPWR,
    ]
    .contains(&sig)
}

/// The value `isobox kill --all` queues with its signal (sigqueue), so the host process can
/// tell "every process in the guest" from a plain signal for the workload.
pub(crate) const SIGNAL_ALL_VALUE: usize = 0x150b_0a11;

/// The value `isobox resume` queues with its SIGCONT: the VM continuing is not a signal for
/// the workload, so it is not relayed.
pub(crate) const RESUME_VALUE: usize = 0x150b_c047;

/// Block the forwarded signals in the calling thread (call before any other thread exists, so
/// all inherit the mask) and receive them in a dedicated thread.
pub fn signals(events: Sender<Event>) -> nix::Result<()> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    thread::spawn(move || loop {
        // SAFETY: an all-zero siginfo_t is valid; sigwaitinfo fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid set and a valid out-pointer.
        let sig = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
        if sig < 0 {
            continue;
        }
        let value = (info.si_code == libc::SI_QUEUE).then(|| {
            // SAFETY: si_value is meaningful for SI_QUEUE, checked first.
            let ptr = unsafe { info.si_value().sival_ptr };
            ptr as usize
        });
        if sig == libc::SIGCONT && value == Some(RESUME_VALUE) {
            continue;
        }
        let ev = if value == Some(SIGNAL_ALL_VALUE) {
            Event::SignalAll(sig)
        } else {
            Event::Signal(sig)
        };
        if events.send(ev).is_err() {
            return;
        }
    });
    Ok(())
}

/// Read the agent's frames.
pub fn agent_reader(mut line: UnixStream, events: Sender<Event>) {
    thread::spawn(move || loop {
        let ev = match protocol::read_message(&mut line) {
            Ok(Some(msg)) => Event::Agent(msg),
            Ok(None) => Event::AgentClosed,
            // A broken line (ECONNRESET when the hypervisor dies) is a closed line; only
            // malformed frames are protocol errors.
            Err(isobox_common::Error::Io { .. }) => Event::AgentClosed,
            Err(e) => Event::AgentError(e.to_string()),
        };
        let last = !matches!(ev, Event::Agent(_));
        if events.send(ev).is_err() || last {
            return;
        }
    });
}

/// Open the start fifo for reading without blocking, so `start` (which opens it for writing
/// without blocking) finds a reader as soon as `create` has returned.
pub fn open_start_fifo(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Wait for a byte on the start fifo (written by `isobox start`).
pub fn start_fifo(mut fifo: File, path: PathBuf, events: Sender<Event>) {
    thread::spawn(move || loop {
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
            continue;
        }
        let mut b = [0u8; 1];
        match fifo.read(&mut b) {
            Ok(1) => {
                let _ = events.send(Event::Start);
                return;
            }
            // A writer came and went without a byte: reopen to clear the hang-up.
            Ok(_) => match open_start_fifo(&path) {
                Ok(f) => fifo = f,
                Err(e) => {
                    let _ = events.send(Event::StartFailed(format!(
                        "reopening {}: {e}",
                        path.display()
                    )));
                    return;
                }
            },
            Err(_) => continue,
        }
    });
}

/// The agent line's sending half, shared by the main loop and the stdin thread.
#[derive(Clone)]
pub struct AgentWriter(Arc<Mutex<UnixStream>>);

impl AgentWriter {
    pub fn new(line: UnixStream) -> Self {
        AgentWriter(Arc::new(Mutex::new(line)))
    }

    pub fn send(&self, msg: &Message) -> Result<(), String> {
        let mut line = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        protocol::write_message(&mut *line, msg).map_err(|e| e.to_string())
    }
}
