//! One session's process on the agent side: its stdio descriptors, the Stdin not yet written,
//! the output in flight to the host, and how it ended.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use isobox_common::protocol::{ExitStatus, Message, SessionId, CHUNK, WINDOW, WORKLOAD};
use nix::errno::Errno;
use nix::unistd::Pid;

use super::init::log;
use super::workload::Spawned;

/// How long output must be quiet after the process ended before its Exit: what it wrote is
/// read, and background processes that merely hold the pipes or the terminal open do not
/// delay the Exit.
const DRAIN_GRACE: Duration = Duration::from_millis(200);
/// How long an exec'd process's output is still read after it ended while background
/// processes keep writing (a full window waiting for the host does not count). The
/// workload's session needs no limit: its end kills every other process.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Which of the process's outputs a descriptor carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub pid: Pid,
    /// Where Stdin goes: the pipe to the process's stdin, or the pty master.
    input: Option<OwnedFd>,
    /// Stdin received and not yet written (the host keeps it within a window).
    pending: VecDeque<u8>,
    input_eof: bool,
    /// The pty master, for Resize; with a terminal, output comes from it as Stdout.
    terminal: Option<OwnedFd>,
    outputs: Vec<(Stream, OwnedFd)>,
    /// Output sent and not yet reported Consumed.
    in_flight: usize,
    /// How the process ended, once reaped.
    pub status: Option<ExitStatus>,
    /// When output was last read, or the process reaped, whichever is later.
    last_activity: Instant,
    /// When the process was reaped, or a full window opened again since.
    drain_start: Instant,
}

fn nonblocking(fd: &OwnedFd) {
    if let Err(e) = nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    ) {
        log(&format!("making a session descriptor non-blocking: {e}"));
    }
}

impl Session {
    /// Take over a spawned process's stdio.
    pub fn new(id: SessionId, mut spawned: Spawned) -> Session {
        let pid = Pid::from_raw(spawned.child.id() as i32);
        let mut outputs = Vec::new();
        let (input, terminal) = match spawned.master.take() {
            Some(master) => {
                nonblocking(&master);
                match master.try_clone() {
                    Ok(out) => outputs.push((Stream::Stdout, out)),
                    Err(e) => log(&format!("session {id}: duplicating the pty master: {e}")),
                }
                (master.try_clone().ok(), Some(master))
            }
            None => {
                let c = &mut spawned.child;
                if let Some(o) = c.stdout.take() {
                    outputs.push((Stream::Stdout, o.into()));
                }
                if let Some(e) = c.stderr.take() {
                    outputs.push((Stream::Stderr, e.into()));
                }
                (c.stdin.take().map(OwnedFd::from), None)
            }
        };
        for (_, fd) in &outputs {
            nonblocking(fd);
        }
        if let Some(fd) = &input {
            nonblocking(fd);
        }
        Session {
            id,
            pid,
            input,
            pending: VecDeque::new(),
            input_eof: false,
            terminal,
            outputs,
            in_flight: 0,
            status: None,
            last_activity: Instant::now(),
            drain_start: Instant::now(),
        }
    }

    /// The output descriptors to poll for reading: none while the window is full.
    pub fn readable(&self) -> Vec<BorrowedFd<'_>> {
        if self.in_flight >= WINDOW {
            return Vec::new();
        }
        self.outputs.iter().map(|(_, fd)| fd.as_fd()).collect()
    }

    /// The input descriptor to poll for writing, when there is Stdin to write.
    pub fn writable(&self) -> Option<BorrowedFd<'_>> {
        self.input
            .as_ref()
            .filter(|_| !self.pending.is_empty())
            .map(|fd| fd.as_fd())
    }

    /// Read what output is ready on `raw_fd` into frames; closes it at its end.
    pub fn read_output(&mut self, raw_fd: i32, frames: &mut Vec<Message>) {
        let Some(i) = self
            .outputs
            .iter()
            .position(|(_, fd)| fd.as_raw_fd() == raw_fd)
        else {
            return;
        };
        let room = WINDOW.saturating_sub(self.in_flight).min(CHUNK);
        if room == 0 {
            return;
        }
        let mut buf = vec![0u8; room];
        match nix::unistd::read(&self.outputs[i].1, &mut buf) {
            Ok(0) => {
                self.outputs.remove(i);
            }
            Ok(n) => {
                buf.truncate(n);
                self.in_flight += n;
                self.last_activity = Instant::now();
                let session = self.id;
                frames.push(match self.outputs[i].0 {
                    Stream::Stdout => Message::Stdout { session, data: buf },
                    Stream::Stderr => Message::Stderr { session, data: buf },
                });
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            // EIO: a pty master whose slave is closed everywhere, its normal end.
            Err(Errno::EIO) => {
                self.outputs.remove(i);
            }
            Err(e) => {
                log(&format!("session {}: reading output: {e}", self.id));
                self.outputs.remove(i);
            }
        }
    }

    /// Write pending Stdin; reports what was written with a Consumed frame.
    pub fn write_input(&mut self, frames: &mut Vec<Message>) {
        let Some(fd) = &self.input else { return };
        let (a, _) = self.pending.as_slices();
        match nix::unistd::write(fd, a) {
            Ok(n) => {
                self.pending.drain(..n);
                frames.push(Message::Consumed {
                    session: self.id,
                    bytes: n as u32,
                });
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(e) => {
                // The process closed its stdin: drop what it will never read.
                if e != Errno::EPIPE {
                    log(&format!("session {}: writing input: {e}", self.id));
                }
                let bytes = self.pending.len() as u32;
                self.pending.clear();
                self.input = None;
                frames.push(Message::Consumed {
                    session: self.id,
                    bytes,
                });
            }
        }
        self.close_input_at_eof();
    }

    /// Stdin from the host.
    pub fn stdin(&mut self, data: Vec<u8>, frames: &mut Vec<Message>) {
        if self.input.is_none() || self.input_eof {
            // Nobody to give it to: consumed all the same, so the host's window stays open.
            frames.push(Message::Consumed {
                session: self.id,
                bytes: data.len() as u32,
            });
            return;
        }
        if self.pending.len() + data.len() > 2 * WINDOW {
            log(&format!(
                "session {}: dropping {} bytes of stdin past the window",
                self.id,
                data.len()
            ));
            return;
        }
        self.pending.extend(data);
    }

    /// The host's end of Stdin: the pipe closes once what is pending is written. A terminal
    /// stays open (as on a terminal that is not hung up, end of input is a key, ^D).
    pub fn stdin_eof(&mut self) {
        if self.terminal.is_none() {
            self.input_eof = true;
            self.close_input_at_eof();
        }
    }

    fn close_input_at_eof(&mut self) {
        if self.input_eof && self.pending.is_empty() {
            self.input = None;
        }
    }

    pub fn consumed(&mut self, bytes: u32) {
        let was_full = self.in_flight >= WINDOW;
        self.in_flight = self.in_flight.saturating_sub(bytes as usize);
        // The grace and the limit for draining start again once a full window opened.
        if self.status.is_some() {
            self.last_activity = Instant::now();
            if was_full {
                self.drain_start = Instant::now();
            }
        }
    }

    pub fn resize(&self, size: isobox_common::protocol::WindowSize) {
        if let Some(master) = &self.terminal {
            if let Err(e) = isobox_common::pty::set_window_size(master.as_fd(), size) {
                log(&format!("session {}: resizing the terminal: {e}", self.id));
            }
        }
    }

    pub fn signal(&self, n: i32) {
        match nix::sys::signal::Signal::try_from(n) {
            Ok(sig) => {
                if let Err(e) = nix::sys::signal::kill(self.pid, sig) {
                    log(&format!("delivering signal {n} to {}: {e}", self.pid));
                }
            }
            Err(_) => log(&format!("ignoring unknown signal number {n}")),
        }
    }

    /// The process was reaped.
    pub fn reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        self.input = None;
        self.pending.clear();
        self.last_activity = Instant::now();
        self.drain_start = Instant::now();
    }

    /// Reaped, and its output read to the end, or quiet for the grace period, or (an exec'd
    /// process) read for the drain limit. A full window waits for the host.
    pub fn finished(&self, now: Instant) -> bool {
        self.status.is_some()
            && (self.outputs.is_empty()
                || (self.in_flight < WINDOW
                    && self.deadline().is_some_and(|d| now >= d)
                    && (self.drain_over(now) || !self.output_pending())))
    }

    /// An exec'd process's output has been read for the drain limit.
    fn drain_over(&self, now: Instant) -> bool {
        self.id != WORKLOAD && now >= self.drain_start + DRAIN_LIMIT
    }

    /// Output is waiting in a pipe (or the pty): time without reading it is not quiet. A
    /// slow host (Consumed late, the guest descheduled) can let the grace run out while the
    /// process's last bytes are still unread.
    fn output_pending(&self) -> bool {
        self.outputs.iter().any(|(_, fd)| {
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int to the pointer we own, on a descriptor we own.
            unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) == 0 && n > 0 }
        })
    }

    /// When [`Session::finished`] may change by time alone.
    pub fn deadline(&self) -> Option<Instant> {
        if self.status.is_none() || self.outputs.is_empty() || self.in_flight >= WINDOW {
            return None;
        }
        let quiet = self.last_activity + DRAIN_GRACE;
        Some(match self.id {
            WORKLOAD => quiet,
            _ => quiet.min(self.drain_start + DRAIN_LIMIT),
        })
    }

    /// The session's last frame.
    pub fn exit_frame(&self) -> Message {
        Message::Exit {
            session: self.id,
            status: self.status.unwrap_or(ExitStatus {
                code: Some(255),
                signal: None,
            }),
        }
    }
}
