//! The per-VM host process (`isobox vm-host --state-dir DIR`): it boots the guest, waits for
//! the agent's Hello and reports readiness to `create`, waits for `start`, sends Exec, relays
//! the workload's stdio and the signals it receives, and exits with the workload's exit code
//! (128+N when signal N killed it) once the VM is gone. Exit code 255 means the VM or the
//! agent failed; the reason is on stderr.

pub mod config;
pub(crate) mod ready;
mod threads;

pub(crate) use threads::SIGNAL_ALL_VALUE;
mod vm;

use std::cell::RefCell;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use isobox_common::protocol::{self, ExitStatus, Message};

use config::{console_tail, VmHostConfig, START_FIFO};
use ready::Ready;
use threads::AgentWriter;
use vm::RunningVm;

/// Exit code of the host process when the VM or the agent failed.
pub const VM_FAILED: i32 = 255;
/// Events queued before the agent reader waits for the relay.
const EVENT_QUEUE: usize = 64;
/// How long a VM may take to end after the workload's Exit before it is killed.
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);

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
}

fn run(state_dir: &Path, ready: &mut Ready) -> Result<i32, String> {
    let cfg = VmHostConfig::load(state_dir).map_err(|e| e.to_string())?;
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
    };
    if let Some(code) = host.await_hello()? {
        return Ok(code);
    }
    // The hypervisor has read the initramfs into guest memory: it takes no disk space now.
    let _ = std::fs::remove_file(&host.cfg.initramfs);
    let fifo_path = state_dir.join(START_FIFO);
    let fifo = threads::open_start_fifo(&fifo_path)
        .map_err(|e| host.fail(&format!("opening {}: {e}", fifo_path.display())))?;
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
    host.send(&Message::Exec(exec))?;
    threads::stdin_pump(host.writer.clone());
    host.relay()
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

    /// Wait for the agent's Hello and answer it. `Some(code)` when a signal ended the wait.
    fn await_hello(&self) -> Result<Option<i32>, String> {
        let limit = Duration::from_secs(self.cfg.hello_timeout_secs);
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = match self.events.recv_timeout(left) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.fail(&format!(
                        "guest agent: no Hello within {} s of boot ({} under {})",
                        limit.as_secs(),
                        self.cfg.hypervisor.as_str(),
                        self.cfg.accelerator.as_str()
                    )))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.fail("guest agent: event channel closed"))
                }
            };
            match ev {
                Event::Agent(msg @ Message::Hello { .. }) => {
                    protocol::check_hello(&msg, "guest agent")
                        .map_err(|e| self.fail(&e.to_string()))?;
                    self.send(&Message::hello())?;
                    return Ok(None);
                }
                Event::Agent(other) => {
                    return Err(
                        self.fail(&format!("guest agent: sent {} before Hello", other.name()))
                    )
                }
                Event::AgentError(e) => return Err(self.fail(&format!("guest agent: {e}"))),
                Event::AgentClosed => {
                    // Usually the VM ended and took the line with it: say so when it did.
                    let what = if self.wait_vm_exit(Duration::from_secs(2)) {
                        format!(
                            "the VM stopped before the guest agent said Hello ({})",
                            self.vm_end()
                        )
                    } else {
                        "guest agent: line closed before Hello".to_string()
                    };
                    return Err(self.fail(&what));
                }
                Event::VmExited(how) => {
                    *self.vm_end.borrow_mut() = Some(how.clone());
                    return Err(self.fail(&format!(
                        "the VM stopped before the guest agent said Hello ({how})"
                    )));
                }
                Event::Signal(sig) | Event::SignalAll(sig) => {
                    if let Some(code) = self.stopped_by(sig) {
                        return Ok(Some(code));
                    }
                }
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
                Event::Agent(msg) => {
                    return Err(self.fail(&format!(
                        "guest agent: unexpected {} before Exec",
                        msg.name()
                    )))
                }
            }
        }
    }

    /// Relay until the workload's Exit and the VM's end; returns the exit code.
    fn relay(&self) -> Result<i32, String> {
        let mut exit: Option<ExitStatus> = None;
        loop {
            let ev = match exit {
                // After Exit the guest powers off; give it a bounded time.
                Some(_) => match self.events.recv_timeout(POWER_OFF_GRACE) {
                    Ok(ev) => ev,
                    Err(_) => {
                        self.vm.kill();
                        self.wait_vm_exit(Duration::from_secs(5));
                        break;
                    }
                },
                None => self
                    .events
                    .recv()
                    .map_err(|_| self.fail("event channel closed"))?,
            };
            match ev {
                Event::Agent(Message::Stdout(b)) => threads::emit(std::io::stdout().lock(), &b),
                Event::Agent(Message::Stderr(b)) => threads::emit(std::io::stderr().lock(), &b),
                Event::Agent(Message::Started { .. }) => {}
                Event::Agent(Message::Error(text)) => eprintln!("isobox: guest agent: {text}"),
                Event::Agent(Message::Exit(st)) => exit = Some(st),
                Event::Agent(other) => {
                    return Err(
                        self.fail(&format!("guest agent: unexpected {} frame", other.name()))
                    )
                }
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
                Event::Signal(sig) => {
                    if exit.is_none() {
                        let _ = self.writer.send(&Message::Signal(sig));
                    }
                }
                Event::SignalAll(sig) => {
                    if exit.is_none() {
                        let _ = self.writer.send(&Message::SignalAll(sig));
                    }
                }
                Event::VmExited(how) => {
                    *self.vm_end.borrow_mut() = Some(how.clone());
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
        Ok(exit.map(|s| s.shell_code()).unwrap_or(VM_FAILED))
    }
}
