//! The agent's one loop: it polls the host's line, SIGCHLD and every session's descriptors,
//! and relays between them. Sessions are independent (each has its own flow-control window),
//! so one process that does not read its input or a host reader that is slow to take one
//! session's output stalls only that session.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Instant;

use isobox_common::protocol::{self, ExitStatus, Message, SessionId, WORKLOAD};
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::init::log;
use super::session::Session;
use super::{network, shared};
use super::{workload, EXEC_FAILED};

/// What a polled descriptor belongs to.
#[derive(Debug, Clone, Copy)]
enum Source {
    Line,
    Child,
    Output(SessionId),
    Input(SessionId),
}

pub struct Mux {
    line: File,
    line_open: bool,
    inbuf: Vec<u8>,
    sigchld: SignalFd,
    sessions: BTreeMap<SessionId, Session>,
    /// The workload's Exec came (its end, or its failure to start, ends the guest).
    workload_started: bool,
    /// The host's Mount request was carried out (or tried).
    mounted: bool,
    /// The host's Network request was carried out (or tried).
    networked: bool,
    /// The workload's limits, which every session's process joins.
    cgroup: Option<Cgroup>,
    /// Every process in the guest has been sent SIGKILL.
    ending: bool,
    done: bool,
}

impl Mux {
    /// Take the host's line; SIGCHLD is blocked from here on and read from a signalfd (the
    /// processes started later get an empty mask).
    pub fn new(line: File) -> Result<Mux, String> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .map_err(|e| format!("blocking SIGCHLD: {e}"))?;
        let sigchld = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("creating a signalfd for SIGCHLD: {e}"))?;
        Ok(Mux {
            line,
            line_open: true,
            inbuf: Vec::new(),
            sigchld,
            sessions: BTreeMap::new(),
            workload_started: false,
            mounted: false,
            networked: false,
            cgroup: None,
            ending: false,
            done: false,
        })
    }

    /// The line, to drain it before the VM ends.
    pub fn line(&self) -> &File {
        &self.line
    }

    /// Send one frame; a failure is logged (the host is gone, nothing else to tell).
    fn send(&mut self, msg: &Message) -> bool {
        if !self.line_open {
            return false;
        }
        match protocol::write_message(&mut self.line, msg) {
            Ok(()) => true,
            Err(e) => {
                log(&format!("sending {}: {e}", msg.name()));
                false
            }
        }
    }

    /// Hello both ways, then sessions until the workload's end.
    pub fn run(&mut self) -> Result<(), String> {
        if !self.send(&Message::hello()) {
            return Err("cannot send Hello to the host".into());
        }
        let hello = protocol::read_message(&mut self.line)
            .map_err(|e| e.to_string())?
            .ok_or("host closed the line before Hello")?;
        if let Err(e) = protocol::check_hello(&hello, "host") {
            self.send(&Message::Error {
                session: WORKLOAD,
                text: e.to_string(),
            });
            return Err(e.to_string());
        }
        while !self.done {
            self.turn();
        }
        Ok(())
    }

    /// One poll and everything it reports.
    fn turn(&mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        let mut add = |fd: BorrowedFd<'_>, events: libc::c_short, src: Source| {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events,
                revents: 0,
            });
            sources.push(src);
        };
        if self.line_open {
            add(
                std::os::fd::AsFd::as_fd(&self.line),
                libc::POLLIN,
                Source::Line,
            );
        }
        add(
            std::os::fd::AsFd::as_fd(&self.sigchld),
            libc::POLLIN,
            Source::Child,
        );
        let mut deadline: Option<Instant> = None;
        for (id, s) in &self.sessions {
            for fd in s.readable() {
                add(fd, libc::POLLIN, Source::Output(*id));
            }
            if let Some(fd) = s.writable() {
                add(fd, libc::POLLOUT, Source::Input(*id));
            }
            deadline = match (deadline, s.deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let timeout = deadline.map_or(-1, |d| {
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32
                + 1
        });
        // SAFETY: `fds` is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                log(&format!("poll: {e}"));
            }
            return;
        }
        let mut frames = Vec::new();
        for (pfd, src) in fds.iter().zip(sources) {
            if pfd.revents == 0 {
                continue;
            }
            match src {
                Source::Child => self.reap(),
                Source::Output(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.read_output(pfd.fd, &mut frames);
                    }
                }
                Source::Input(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.write_input(&mut frames);
                    }
                }
                Source::Line => self.read_line(&mut frames),
            }
        }
        for f in &frames {
            if !self.send(f) {
                break;
            }
        }
        self.finish_sessions();
    }

    /// Reap every child that ended; a session's process ending is noted in its session.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.sigchld.read_signal() {}
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) => (
                    p,
                    ExitStatus {
                        code: Some(code),
                        signal: None,
                    },
                ),
                Ok(WaitStatus::Signaled(p, sig, _)) => (
                    p,
                    ExitStatus {
                        code: None,
                        signal: Some(sig as i32),
                    },
                ),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    log(&format!("waitpid: {e}"));
                    return;
                }
            };
            let Some(s) = self.sessions.values_mut().find(|s| s.pid == pid) else {
                continue; // an orphan PID 1 inherited
            };
            s.reaped(status);
            if s.id == WORKLOAD {
                // The workload's end ends every process in the guest, as a PID namespace's.
                self.kill_all();
            }
        }
    }

    /// SIGKILL every process but the agent (once).
    fn kill_all(&mut self) {
        if !self.ending {
            self.ending = true;
            // kill(-1) from PID 1 reaches every process but itself.
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        }
    }

    /// Send Exit for the sessions that are over; the workload's goes last and ends the loop.
    fn finish_sessions(&mut self) {
        let now = Instant::now();
        let over: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| **id != WORKLOAD && s.finished(now))
            .map(|(id, _)| *id)
            .collect();
        for id in over {
            if let Some(s) = self.sessions.remove(&id) {
                self.send(&s.exit_frame());
            }
        }
        if self.sessions.len() == 1 {
            if let Some(w) = self.sessions.get(&WORKLOAD).filter(|w| w.finished(now)) {
                let exit = w.exit_frame();
                self.sessions.clear();
                self.send(&exit);
                self.done = true;
            }
        }
        if !self.line_open && self.sessions.is_empty() {
            self.done = true;
        }
    }

    fn read_line(&mut self, frames: &mut Vec<Message>) {
        let mut buf = vec![0u8; 64 * 1024];
        match self.line.read(&mut buf) {
            Ok(0) => return self.host_gone("host closed the agent line"),
            Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(e) => return self.host_gone(&format!("reading the agent line: {e}")),
        }
        loop {
            match protocol::decode(&self.inbuf) {
                Ok(Some((msg, used))) => {
                    self.inbuf.drain(..used);
                    self.handle(msg, frames);
                }
                Ok(None) => return,
                Err(e) => return self.host_gone(&format!("bad frame from the host ({e})")),
            }
        }
    }

    /// The line is unusable: stop everything; the loop ends once the sessions have.
    fn host_gone(&mut self, why: &str) {
        self.line_open = false;
        if !self.sessions.is_empty() {
            log(&format!("{why}; stopping every process"));
            self.kill_all();
        }
    }

    fn handle(&mut self, msg: Message, frames: &mut Vec<Message>) {
        match msg {
            Message::Exec { session, request } => self.exec(session, request, frames),
            Message::Stdin { session, data } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.stdin(data, frames);
                }
            }
            Message::StdinEof { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.stdin_eof();
                }
            }
            Message::Consumed { session, bytes } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.consumed(bytes);
                }
            }
            Message::Resize { session, size } => {
                if let Some(s) = self.sessions.get(&session) {
                    s.resize(size);
                }
            }
            // A session that already ended has nobody to signal.
            Message::Signal { session, signal } => {
                if let Some(s) = self.sessions.get(&session) {
                    if s.status.is_none() {
                        s.signal(signal);
                    }
                }
            }
            // As PID 1, kill(-1) reaches every process in the guest but the agent.
            Message::SignalAll(n) => match Signal::try_from(n) {
                Ok(sig) => {
                    if let Err(e) = kill(Pid::from_raw(-1), sig) {
                        log(&format!("delivering signal {n} to every process: {e}"));
                    }
                }
                Err(_) => log(&format!("ignoring unknown signal number {n}")),
            },
            Message::Shutdown => match self.sessions.get(&WORKLOAD) {
                Some(w) => {
                    let _ = kill(w.pid, Signal::SIGKILL);
                }
                None if !self.workload_started => self.done = true,
                None => {}
            },
            // Once, before any session: the root changes under the agent.
            Message::Mount(req) if !self.mounted && self.sessions.is_empty() => {
                self.mounted = true;
                frames.push(match shared::mount_root(&req) {
                    Ok(()) => Message::Mounted,
                    Err(text) => Message::Error {
                        session: WORKLOAD,
                        text,
                    },
                });
            }
            // Once, before the workload: its interfaces are in place when it starts.
            Message::Network(req) if !self.networked && !self.workload_started => {
                self.networked = true;
                frames.push(match network::configure(&req) {
                    Ok(()) => Message::Networked,
                    Err(text) => Message::Error {
                        session: WORKLOAD,
                        text: format!("setting up the network: {text}"),
                    },
                });
            }
            other => log(&format!("ignoring unexpected {} frame", other.name())),
        }
    }

    fn exec(&mut self, id: SessionId, req: protocol::ExecRequest, frames: &mut Vec<Message>) {
        if self.sessions.contains_key(&id) || (id == WORKLOAD && self.workload_started) {
            log(&format!("ignoring a second Exec for session {id}"));
            return;
        }
        let failed = |frames: &mut Vec<Message>, text: String| {
            log(&text);
            frames.push(Message::Error { session: id, text });
            frames.push(Message::Exit {
                session: id,
                status: ExitStatus {
                    code: Some(EXEC_FAILED),
                    signal: None,
                },
            });
        };
        if self.ending {
            return failed(frames, "the container's process has ended".into());
        }
        if id == WORKLOAD {
            self.workload_started = true;
            if let Some(limits) = &req.limits {
                match Cgroup::create(limits) {
                    Ok(cg) => self.cgroup = Some(cg),
                    Err(e) => {
                        self.done = true;
                        return failed(frames, format!("linux.resources: {e}"));
                    }
                }
            }
        }
        match workload::spawn(&req, self.cgroup.as_ref().map(Cgroup::procs_fd)) {
            Ok(spawned) => {
                frames.push(Message::Started {
                    session: id,
                    pid: spawned.child.id(),
                });
                self.sessions.insert(id, Session::new(id, spawned));
            }
            Err(e) => {
                failed(frames, e);
                if id == WORKLOAD {
                    self.done = true;
                }
            }
        }
    }
}
