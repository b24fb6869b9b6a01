//! One workload's life on the agent side: relay its stdio over the serial line, deliver
//! signals, reap every child as PID 1, and report how it ended.

use std::fs::File;
use std::io::{Read, Write};
use std::process::{ChildStdin, ChildStdout};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use isobox_common::protocol::{self, ExitStatus, Message, MAX_PAYLOAD};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::init::log;

/// The serial line's sending half, shared by the threads that produce frames.
#[derive(Clone)]
pub struct Sender(Arc<Mutex<File>>);

impl Sender {
    pub fn new(tty: File) -> Self {
        Sender(Arc::new(Mutex::new(tty)))
    }

    /// Send one message; a failure is logged (the host is gone, nothing else to tell).
    pub fn send(&self, msg: &Message) -> bool {
        let mut tty = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match protocol::write_message(&mut *tty, msg) {
            Ok(()) => true,
            Err(e) => {
                log(&format!("sending {}: {e}", msg.name()));
                false
            }
        }
    }

    /// Wait until the UART has sent every byte written: a reset right after the last frame
    /// would otherwise drop what is still in the line discipline's buffer.
    pub fn drain(&self) {
        let tty = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = nix::sys::termios::tcdrain(&*tty) {
            log(&format!("draining the agent line: {e}"));
        }
    }
}

/// Copy one of the workload's output pipes into Stdout or Stderr frames until EOF.
fn pump_output(
    mut pipe: impl Read + Send + 'static,
    tx: Sender,
    wrap: fn(Vec<u8>) -> Message,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        debug_assert!(buf.len() <= MAX_PAYLOAD);
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !tx.send(&wrap(buf[..n].to_vec())) {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log(&format!("reading workload output: {e}"));
                    break;
                }
            }
        }
    })
}

/// Write Stdin chunks to the workload; dropping the channel's sender closes its stdin.
fn feed_stdin(mut stdin: ChildStdin, rx: mpsc::Receiver<Vec<u8>>) {
    thread::spawn(move || {
        for chunk in rx {
            if stdin.write_all(&chunk).is_err() {
                // The workload closed its stdin: drop further input.
                break;
            }
        }
    });
}

/// Read host frames after Exec: Stdin, StdinEof, Signal, Shutdown.
fn control_loop(mut tty: File, pid: Pid, stdin_tx: mpsc::Sender<Vec<u8>>) {
    thread::spawn(move || {
        let mut stdin_tx = Some(stdin_tx);
        loop {
            match protocol::read_message(&mut tty) {
                Ok(Some(Message::Stdin(data))) => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(data);
                    }
                }
                Ok(Some(Message::StdinEof)) => stdin_tx = None,
                Ok(Some(Message::Signal(n))) => match Signal::try_from(n) {
                    Ok(sig) => {
                        if let Err(e) = kill(pid, sig) {
                            log(&format!("delivering signal {n} to {pid}: {e}"));
                        }
                    }
                    Err(_) => log(&format!("ignoring unknown signal number {n}")),
                },
                // As PID 1, kill(-1) reaches every process in the guest but the agent.
                Ok(Some(Message::SignalAll(n))) => match Signal::try_from(n) {
                    Ok(sig) => {
                        if let Err(e) = kill(Pid::from_raw(-1), sig) {
                            log(&format!("delivering signal {n} to every process: {e}"));
                        }
                    }
                    Err(_) => log(&format!("ignoring unknown signal number {n}")),
                },
                Ok(Some(Message::Shutdown)) => {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                Ok(Some(other)) => log(&format!("ignoring unexpected {} frame", other.name())),
                Ok(None) => {
                    log("host closed the agent line; stopping the workload");
                    let _ = kill(pid, Signal::SIGKILL);
                    return;
                }
                Err(e) => {
                    log(&format!(
                        "bad frame from the host ({e}); stopping the workload"
                    ));
                    let _ = kill(pid, Signal::SIGKILL);
                    return;
                }
            }
        }
    });
}

/// Reap children until `pid` ends; then kill and reap everything left (the workload's end
/// ends the VM's whole process tree, as a PID namespace does).
fn reap_until(pid: Pid) -> ExitStatus {
    let mut status = None;
    while status.is_none() {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => {
                status = Some(ExitStatus {
                    code: Some(code),
                    signal: None,
                })
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                status = Some(ExitStatus {
                    code: None,
                    signal: Some(sig as i32),
                })
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                log(&format!("waiting for the workload: {e}"));
                status = Some(ExitStatus {
                    code: Some(255),
                    signal: None,
                });
            }
        }
    }
    // kill(-1) from PID 1 reaches every process but itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while let Ok(_) | Err(Errno::EINTR) = waitpid(None, None) {}
    status.unwrap_or(ExitStatus {
        code: Some(255),
        signal: None,
    })
}

/// Run a spawned workload to its end and report it; returns how it ended.
pub fn supervise(mut child: std::process::Child, tty: File, tx: &Sender) -> ExitStatus {
    let pid = Pid::from_raw(child.id() as i32);
    tx.send(&Message::Started { pid: child.id() });
    let (stdin_tx, stdin_rx) = mpsc::channel();
    if let Some(stdin) = child.stdin.take() {
        feed_stdin(stdin, stdin_rx);
    }
    control_loop(tty, pid, stdin_tx);
    let outs: Vec<thread::JoinHandle<()>> = [
        child
            .stdout
            .take()
            .map(|o: ChildStdout| pump_output(o, tx.clone(), Message::Stdout)),
        child
            .stderr
            .take()
            .map(|e| pump_output(e, tx.clone(), Message::Stderr)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let status = reap_until(pid);
    // Every writer of the pipes is dead now, so the pumps reach EOF.
    for h in outs {
        let _ = h.join();
    }
    tx.send(&Message::Exit(status));
    status
}
