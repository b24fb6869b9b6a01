//! The per-VM host process (`isobox vm-host --state-dir DIR`): it boots the guest, waits for
//! the agent's Hello and reports readiness to `create`, waits for `start`, sends Exec, relays
//! the workload's stdio and the signals it receives, serves `exec` sessions over the exec
//! socket ([`control`]), and exits with the workload's exit code (128+N when signal N killed
//! it) once the VM is gone. Exit code 255 means the VM or the agent failed (or broke the
//! protocol); the reason is on stderr.

pub mod config;
pub mod control;
pub(crate) mod ready;
mod sessions;
pub(crate) mod threads;

pub(crate) use threads::{RESUME_VALUE, SIGNAL_ALL_VALUE};
mod vm;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use isobox_common::protocol::session::GuestSessions;
use isobox_common::protocol::{self, ExitStatus, Message, SessionId, WORKLOAD};

use config::{console_tail, VmHostConfig, EXEC_SOCKET, START_FIFO};
use control::Control;
use ready::Ready;
use sessions::{HostSession, Stdio};
use threads::AgentWriter;
use vm::RunningVm;

use crate::network;

/// Exit code of the host process when the VM or the agent failed.
pub const VM_FAILED: i32 = 255;
/// Events queued before the agent reader waits for the relay.
const EVENT_QUEUE: usize = 64;
/// How long a VM may take to end after the workload's Exit before it is killed.
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);
/// How often a terminal's window size on the host is checked for changes: nothing signals a
/// change to the holder of a slave that is not its controlling terminal.
const RESIZE_POLL: Duration = Duration::from_millis(200);
/// How long after the VM's end the agent's last frames may still be on their way.
const LAST_FRAMES: Duration = Duration::from_secs(2);

/// What the host process reacts to.
#[derive(Debug)]
pub enum Event {
    Agent(Message),
    AgentClosed,
    AgentError(String),
    Signal(i32),
    /// A signal for every process in the guest (`isobox kill --all`).
    SignalAll(i32),
    Start,
    StartFailed(String),
    VmExited(String),
    /// From the exec socket.
    Control(Control),
}

/// Entry point of the hidden `vm-host` subcommand; returns the process exit code.
pub fn vm_host_main(state_dir: &Path) -> i32 {
    let mut ready = Ready::from_env();
    match run(state_dir, &mut ready) {
        Ok(code) => code,
        Err(msg) => {
            if !matches!(ready.report(Err(&msg)), Ok(true)) {
                eprintln!("isobox: microvm: {msg}");
            }
            VM_FAILED
        }
    }
}

struct Host {
    cfg: VmHostConfig,
    /// How the VM ended, once seen.
    vm_end: RefCell<Option<String>>,
    events: Receiver<Event>,
    vm: RunningVm,
    writer: AgentWriter,
    /// The guest's sessions as the protocol allows them (every guest frame is checked here).
    guest: RefCell<GuestSessions>,
    /// The open sessions' relays.
    open: RefCell<BTreeMap<SessionId, HostSession>>,
    /// Exec connections and their sessions.
    conns: RefCell<BTreeMap<u64, SessionId>>,
    /// Exec requests that came between `start` and the workload's Exec.
    early: RefCell<Vec<Control>>,
}

fn run(state_dir: &Path, ready: &mut Ready) -> Result<i32, String> {
    let cfg = VmHostConfig::load(state_dir).map_err(|e| e.to_string())?;
    // First, while this process has one thread: every thread, the hypervisor and the hooks
    // that read the state's pid find the container's network namespace.
    if let Some(ns) = &cfg.network {
        network::enter(ns).map_err(|e| e.to_string())?;
    }
    // Bounded: when our stdout is slow, the agent reader stops reading, and the back-pressure
    // travels through the serial line to the workload's pipes instead of filling our memory.
    let (tx, events) = mpsc::sync_channel(EVENT_QUEUE);
    threads::signals(tx.clone()).map_err(|e| format!("blocking signals: {e}"))?;
    let (host_end, guest_end) =
        UnixStream::pair().map_err(|e| format!("creating the agent socket pair: {e}"))?;
    let reader = host_end
        .try_clone()
        .map_err(|e| format!("duplicating the agent socket: {e}"))?;
    let vm = vm::launch(&cfg, state_dir, guest_end, tx.clone()).map_err(|e| e.to_string())?;
    threads::agent_reader(reader, tx.clone());
    let host = Host {
        cfg,
        vm_end: RefCell::new(None),
        events,
        vm,
        writer: AgentWriter::new(host_end),
        guest: RefCell::new(GuestSessions::new()),
        open: RefCell::new(BTreeMap::new()),
        conns: RefCell::new(BTreeMap::new()),
        early: RefCell::new(Vec::new()),
    };
    if let Some(code) = host.await_hello()? {
        return Ok(code);
    }
    // The hypervisor has read the initramfs into guest memory: it takes no disk space now
    // (a shared root's initramfs is the agent's, cached for every VM, and stays).
    if host.cfg.shares.is_empty() {
        let _ = std::fs::remove_file(&host.cfg.initramfs);
    }
    let fifo_path = state_dir.join(START_FIFO);
    let fifo = threads::open_start_fifo(&fifo_path)
        .map_err(|e| host.fail(&format!("opening {}: {e}", fifo_path.display())))?;
    // Listening before `create` returns: an exec right after `start` finds the socket.
    control::listen(state_dir, EXEC_SOCKET, tx.clone())
        .map_err(|e| host.fail(&format!("listening on {EXEC_SOCKET}: {e}")))?;
    // The VM now outlives `create` (a detached container): no more parent-death signal.
    // Cleared before the report, since `create` returns (and may exit) as soon as it reads it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    if let Err(e) = ready.report(Ok(())) {
        // Nobody reads the report: the creating isobox died before create completed.
        return Err(host.fail(&format!(
            "the creating isobox went away before the VM was ready: {e}"
        )));
    }
    threads::start_fifo(fifo, fifo_path, tx);
    if let Some(code) = host.await_start()? {
        return Ok(code);
    }
    let Some(exec) = host.cfg.exec.clone() else {
        // `start` refuses this before it writes the fifo.
        return Err(host.fail(
            "config.json: process: missing; a container without a process cannot be started",
        ));
    };
    // Held until the host process ends: the redirects go with it.
    let (_connected, stopped) = host.connect_network()?;
    if let Some(code) = stopped {
        return Ok(code);
    }
    let stdio = own_stdio(exec.terminal.is_some())
        .map_err(|e| host.fail(&format!("taking over stdio for the workload: {e}")))?;
    host.open_session(None, exec, stdio, None)?;
    for c in host.early.take() {
        host.control(c, false)?;
    }
    host.relay()
}

/// The host process's own stdin, stdout and stderr, for the workload.
fn own_stdio(terminal: bool) -> std::io::Result<Stdio> {
    let dup = |fd: i32| {
        // SAFETY: descriptors 0-2 stay open for the life of the process.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        b.try_clone_to_owned().map(File::from)
    };
    Ok(Stdio {
        stdin: dup(0)?,
        stdout: dup(1)?,
        stderr: dup(2)?,
        terminal,
    })
}

impl Host {
    fn send(&self, msg: &Message) -> Result<(), String> {
        self.writer.send(msg).map_err(|e| {
            // A line broken by the hypervisor's death: report the death, not the EPIPE.
            let what = if self.wait_vm_exit(Duration::from_secs(2)) {
                format!(
                    "the VM stopped before the workload's exit was reported ({})",
                    self.vm_end()
                )
            } else {
                e
            };
            self.fail(&what)
        })
    }

    /// Kill the VM, wait for it to be gone, and word `what` with the console's last lines.
    fn fail(&self, what: &str) -> String {
        self.vm.kill();
        self.wait_vm_exit(Duration::from_secs(5));
        format!("{what}\n{}", console_tail(&self.cfg.console_log, 15))
    }

    /// How the VM ended, as far as known.
    fn vm_end(&self) -> String {
        self.vm_end
            .borrow()
            .clone()
            .unwrap_or_else(|| "it ended".to_string())
    }

    fn wait_vm_exit(&self, limit: Duration) -> bool {
        if self.vm_end.borrow().is_some() {
            return true;
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::VmExited(how)) => {
                    *self.vm_end.borrow_mut() = Some(how);
                    return true;
                }
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    /// A terminating signal before the workload runs: stop the VM, exit 128+N.
    fn stopped_by(&self, sig: i32) -> Option<i32> {
        if threads::terminates_before_start(sig) {
            let _ = self.writer.send(&Message::Shutdown);
            self.vm.kill();
            self.wait_vm_exit(Duration::from_secs(5));
            Some(128 + sig)
        } else {
            None
        }
    }

    /// Wait for the agent's Hello and answer it; then, with shared files, have the agent
    /// mount them. `Some(code)` when a signal ended the wait.
    fn await_hello(&self) -> Result<Option<i32>, String> {
        let hello = self.await_agent("Hello", |msg| match msg {
            Message::Hello { .. } => {
                Some(protocol::check_hello(msg, "guest agent").map_err(|e| e.to_string()))
            }
            _ => None,
        })?;
        if hello.is_some() {
            return Ok(hello);
        }
        self.send(&Message::hello())?;
        let Some(mounts) = &self.cfg.mounts else {
            return Ok(None);
        };
        self.send(&Message::Mount(mounts.clone()))?;
        self.await_agent("Mounted", |msg| match msg {
            Message::Mounted => Some(Ok(())),
            Message::Error { session, text } if *session == WORKLOAD => {
                Some(Err(format!("guest agent: {text}")))
            }
            _ => None,
        })
    }

    /// Join the namespace's interfaces to the VM and have the agent take them over, before
    /// the workload runs (an engine's hooks may have put them there after create).
    /// `Some(code)` when a signal ended the wait.
    fn connect_network(&self) -> Result<(Option<network::Connected>, Option<i32>), String> {
        if self.cfg.network.is_none() {
            return Ok((None, None));
        }
        let (req, connected) =
            network::connect(self.vm.tap.as_deref(), self.cfg.hypervisor.as_str())
                .map_err(|e| self.fail(&e.to_string()))?;
        // The built-in VMM's guest has no network device and nothing to take over.
        if self.vm.tap.is_none() {
            return Ok((Some(connected), None));
        }
        self.send(&Message::Network(req))?;
        let stopped = self.await_agent("Networked", |msg| match msg {
            Message::Networked => Some(Ok(())),
            Message::Error { session, text } if *session == WORKLOAD => {
                Some(Err(format!("guest agent: {text}")))
            }
            _ => None,
        })?;
        Ok((Some(connected), stopped))
    }

    /// Wait, for at most the Hello timeout, for the agent message `want` that `accept` takes
    /// (it says whether the message is good); any other message first is an error.
    fn await_agent(
        &self,
        want: &str,
        accept: impl Fn(&Message) -> Option<Result<(), String>>,
    ) -> Result<Option<i32>, String> {
        let limit = Duration::from_secs(self.cfg.hello_timeout_secs);
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = match self.events.recv_timeout(left) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => {
                    let mut what = format!(
                        "guest agent: no {want} within {} s of boot ({} under {})",
                        limit.as_secs(),
                        self.cfg.hypervisor.as_str(),
                        self.cfg.accelerator.as_str()
                    );
                    for line in self.vm.state_lines() {
                        what += &format!("\n  {line}");
                    }
                    return Err(self.fail(&what));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.fail("guest agent: event channel closed"))
                }
            };
            match ev {
                Event::Agent(msg) => {
                    return match accept(&msg) {
                        Some(Ok(())) => Ok(None),
                        Some(Err(e)) => Err(self.fail(&e)),
                        None => {
                            Err(self
                                .fail(&format!("guest agent: sent {} before {want}", msg.name())))
                        }
                    }
                }
                Event::AgentError(e) => return Err(self.fail(&format!("guest agent: {e}"))),
                Event::AgentClosed => {
                    // Usually the VM ended and took the line with it: say so when it did.
                    let what = if self.wait_vm_exit(Duration::from_secs(2)) {
                        format!(
                            "the VM stopped before the guest agent said {want} ({})",
                            self.vm_end()
                        )
                    } else {
                        format!("guest agent: line closed before {want}")
                    };
                    return Err(self.fail(&what));
                }
                Event::VmExited(how) => {
                    *self.vm_end.borrow_mut() = Some(how.clone());
                    return Err(self.fail(&format!(
                        "the VM stopped before the guest agent said {want} ({how})"
                    )));
                }
                Event::Signal(sig) | Event::SignalAll(sig) => {
                    if let Some(code) = self.stopped_by(sig) {
                        return Ok(Some(code));
                    }
                }
                // An exec after `start`: served once the workload runs.
                Event::Control(c) => self.early.borrow_mut().push(c),
                Event::Start | Event::StartFailed(_) => {}
            }
        }
    }

    /// Wait for `isobox start`. `Some(code)` when a signal or the VM's end came first.
    fn await_start(&self) -> Result<Option<i32>, String> {
        loop {
            let ev = self
                .events
                .recv()
                .map_err(|_| self.fail("event channel closed"))?;
            match ev {
                Event::Start => return Ok(None),
                Event::StartFailed(e) => return Err(self.fail(&e)),
                Event::Signal(sig) | Event::SignalAll(sig) => {
                    if let Some(code) = self.stopped_by(sig) {
                        return Ok(Some(code));
                    }
                }
                Event::VmExited(how) => {
                    *self.vm_end.borrow_mut() = Some(how.clone());
                    return Err(self.fail(&format!("the VM stopped before start ({how})")));
                }
                Event::AgentError(e) => return Err(self.fail(&format!("guest agent: {e}"))),
                Event::AgentClosed => {
                    return Err(self.fail("guest agent: line closed before start"))
                }
                // `exec` refuses a container that is not running, so this came between
                // `start` and its Start here: served once the workload runs.
                Event::Control(c) => self.early.borrow_mut().push(c),
                Event::Agent(msg) => {
                    return Err(self.fail(&format!(
                        "guest agent: unexpected {} before Exec",
                        msg.name()
                    )))
                }
            }
        }
    }

    /// Open a session: the workload's (no `conn`) or an exec's, whose client hears how it
    /// goes through `reply`. Errors end the host process (the agent line broke).
    fn open_session(
        &self,
        conn: Option<u64>,
        mut request: protocol::ExecRequest,
        stdio: Stdio,
        reply: Option<UnixStream>,
    ) -> Result<(), String> {
        let opened = match conn {
            None => self.guest.borrow_mut().open_workload(),
            Some(_) => self.guest.borrow_mut().open(),
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                refuse(reply, &format!("cannot open another session: {e}"));
                return Ok(());
            }
        };
        let id = opened.id;
        if conn.is_some() {
            // Every process in the guest runs under the container's profile; the hostname
            // is the workload's to set.
            request.seccomp = self.cfg.exec.as_ref().and_then(|e| e.seccomp.clone());
            request.hostname = None;
        }
        if stdio.terminal {
            // The guest's pty starts at the host terminal's size, when it has one.
            let size = isobox_common::pty::window_size(stdio.stdin.as_fd()).ok();
            request.terminal = size.filter(|s| s.rows > 0).or(request.terminal);
        }
        // Exec first: Stdin from the pump must find the session open in the guest.
        self.send(&Message::Exec {
            session: id,
            request,
        })?;
        match HostSession::start(opened, stdio, self.writer.clone(), reply) {
            Ok(session) => {
                self.open.borrow_mut().insert(id, session);
                if let Some(c) = conn {
                    self.conns.borrow_mut().insert(c, id);
                }
                Ok(())
            }
            Err(e) => Err(self.fail(&format!("starting the relay of session {id}: {e}"))),
        }
    }

    /// One frame from the agent, checked against the protocol; `Some` with the workload's
    /// exit status when it ended, and then the writer that still puts its output out.
    fn agent_frame(&self, msg: Message) -> Result<Option<(ExitStatus, JoinHandle<()>)>, String> {
        self.guest
            .borrow_mut()
            .accept(&msg)
            .map_err(|e| self.fail(&e))?;
        let mut open = self.open.borrow_mut();
        let Some(id) = msg.session() else {
            return Ok(None);
        };
        let Some(session) = open.get_mut(&id) else {
            return Ok(None);
        };
        match msg {
            Message::Stdout { data, .. } => session.output(false, data),
            Message::Stderr { data, .. } => session.output(true, data),
            Message::Started { pid, .. } => session.reply(&Message::Started {
                session: control::SESSION,
                pid,
            }),
            Message::Error { text, .. } if id == WORKLOAD => {
                eprintln!("isobox: guest agent: {text}")
            }
            Message::Error { text, .. } => session.reply(&Message::Error {
                session: control::SESSION,
                text,
            }),
            Message::Exit { status, .. } => {
                let writer = open.remove(&id).and_then(|s| s.end(status));
                self.conns.borrow_mut().retain(|_, s| *s != id);
                if id == WORKLOAD {
                    return Ok(writer.map(|w| (status, w)));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// A request from the exec socket; `ended` when the workload is over.
    fn control(&self, c: Control, ended: bool) -> Result<(), String> {
        match c {
            Control::Open {
                conn,
                request,
                stdio,
                reply,
            } => {
                if ended {
                    refuse(Some(reply), "the container's process has exited");
                    return Ok(());
                }
                self.open_session(Some(conn), *request, stdio, Some(reply))
            }
            Control::Signal { conn, signal } => {
                if let Some(id) = self.conns.borrow().get(&conn) {
                    let _ = self.writer.send(&Message::Signal {
                        session: *id,
                        signal,
                    });
                }
                Ok(())
            }
            // Whoever stood for the process is gone: so is the process.
            Control::Closed { conn } => {
                if let Some(id) = self.conns.borrow_mut().remove(&conn) {
                    let _ = self.writer.send(&Message::Signal {
                        session: id,
                        signal: libc::SIGKILL,
                    });
                }
                Ok(())
            }
        }
    }

    /// Relay a terminal's new window size to its session's pty in the guest.
    fn relay_sizes(&self) {
        for (id, s) in self.open.borrow_mut().iter_mut() {
            if let Some(size) = s.resized() {
                let _ = self.writer.send(&Message::Resize { session: *id, size });
            }
        }
    }

    /// Relay until the workload's Exit and the VM's end; returns the exit code.
    fn relay(&self) -> Result<i32, String> {
        let mut exit: Option<ExitStatus> = None;
        let mut output: Option<JoinHandle<()>> = None;
        let mut sized = Instant::now();
        loop {
            let terminals = self.open.borrow().values().any(|s| s.has_terminal());
            let wait = match exit {
                // After Exit the guest powers off; give it a bounded time.
                Some(_) => POWER_OFF_GRACE,
                None if terminals => RESIZE_POLL,
                None => Duration::from_secs(3600),
            };
            let ev = match self.events.recv_timeout(wait) {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) if exit.is_some() => {
                    self.vm.kill();
                    self.wait_vm_exit(Duration::from_secs(5));
                    break;
                }
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.fail("event channel closed"))
                }
            };
            if terminals && sized.elapsed() >= RESIZE_POLL {
                self.relay_sizes();
                sized = Instant::now();
            }
            let Some(ev) = ev else { continue };
            match ev {
                Event::Agent(msg) => {
                    if let Some((st, w)) = self.agent_frame(msg)? {
                        exit = Some(st);
                        output = Some(w);
                    }
                }
                Event::Control(c) => self.control(c, exit.is_some())?,
                Event::AgentError(e) => return Err(self.fail(&format!("guest agent: {e}"))),
                Event::AgentClosed => {
                    if exit.is_none() {
                        let what = if self.wait_vm_exit(Duration::from_secs(2)) {
                            format!(
                                "the VM stopped before the workload's exit was reported ({})",
                                self.vm_end()
                            )
                        } else {
                            "guest agent: line closed before the workload's exit was reported"
                                .to_string()
                        };
                        return Err(self.fail(&what));
                    }
                }
                // A terminal's size changed (on a terminal isobox relays): the guest's pty
                // follows; the signal itself is the kernel's business there.
                Event::Signal(libc::SIGWINCH) if terminals => self.relay_sizes(),
                Event::Signal(sig) => {
                    if exit.is_none() {
                        let _ = self.writer.send(&Message::Signal {
                            session: WORKLOAD,
                            signal: sig,
                        });
                    }
                }
                Event::SignalAll(sig) => {
                    if exit.is_none() {
                        let _ = self.writer.send(&Message::SignalAll(sig));
                    }
                }
                Event::VmExited(how) => {
                    *self.vm_end.borrow_mut() = Some(how.clone());
                    if exit.is_none() {
                        if let Some((st, w)) = self.last_frames()? {
                            exit = Some(st);
                            output = Some(w);
                        }
                    }
                    if exit.is_some() {
                        break;
                    }
                    return Err(format!(
                        "the VM stopped before the workload's exit was reported ({how})\n{}",
                        console_tail(&self.cfg.console_log, 15)
                    ));
                }
                Event::Start | Event::StartFailed(_) => {}
            }
        }
        // The workload's last output is written before its exit code is.
        if let Some(w) = output {
            let _ = w.join();
        }
        Ok(exit.map(|s| s.shell_code()).unwrap_or(VM_FAILED))
    }

    /// After the VM's end: the frames the agent sent before it, which the reader thread may
    /// not have passed on yet (the agent resets the VM right after its Exit frame). The line's
    /// end comes after the last of them. `Some` with the workload's exit if one was among them.
    fn last_frames(&self) -> Result<Option<(ExitStatus, JoinHandle<()>)>, String> {
        let deadline = Instant::now() + LAST_FRAMES;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Agent(msg)) => {
                    if let Some(exit) = self.agent_frame(msg)? {
                        return Ok(Some(exit));
                    }
                }
                Ok(Event::AgentClosed) | Ok(Event::AgentError(_)) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }
}

/// Tell an exec client its session cannot open.
fn refuse(reply: Option<UnixStream>, text: &str) {
    if let Some(mut r) = reply {
        let _ = protocol::write_message(
            &mut r,
            &Message::Error {
                session: control::SESSION,
                text: text.to_string(),
            },
        );
    }
}
