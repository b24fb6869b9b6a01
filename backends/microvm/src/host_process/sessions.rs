//! The host's side of each session: a writer thread that puts the guest's output where it
//! goes (and reports it Consumed), a pump that turns the session's input into Stdin frames
//! within the window, and, for a terminal on the host, its window size to relay.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use isobox_common::protocol::session::{Opened, Window};
use isobox_common::protocol::{self, ExitStatus, Message, SessionId, WindowSize, CHUNK};

use super::threads::AgentWriter;

/// Where a session's stdio is on the host.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
    /// The three are a terminal (the slave of a host pty, or isobox's own terminal) whose
    /// window size the guest's pty follows.
    pub terminal: bool,
}

enum Out {
    Data {
        stderr: bool,
        data: Vec<u8>,
    },
    /// The session ended: tell the client once its output is written.
    End(ExitStatus),
}

/// One open session, as the relay holds it.
pub struct HostSession {
    out: mpsc::Sender<Out>,
    writer: Option<JoinHandle<()>>,
    /// The exec client to tell about Started and Error (Exit goes through the writer).
    client: Option<UnixStream>,
    /// Dropped to stop the input pump (the read end polls hung up).
    _stop: OwnedFd,
    windows: Opened,
    /// A duplicate of the terminal, to read its window size from.
    terminal: Option<File>,
    size: Option<WindowSize>,
}

impl HostSession {
    /// Start relaying `stdio` for the session the windows belong to.
    pub fn start(
        windows: Opened,
        stdio: Stdio,
        agent: AgentWriter,
        client: Option<UnixStream>,
    ) -> std::io::Result<HostSession> {
        let id = windows.id;
        let terminal = if stdio.terminal {
            Some(stdio.stdin.try_clone()?)
        } else {
            None
        };
        let (stop_r, stop_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let reply = client.as_ref().map(|c| c.try_clone()).transpose()?;
        let (tx, rx) = mpsc::channel();
        let writer = {
            let (agent, window) = (agent.clone(), windows.output.clone());
            let (stdout, stderr) = (stdio.stdout, stdio.stderr);
            thread::spawn(move || write_out(id, rx, stdout, stderr, &window, &agent, reply))
        };
        {
            let window = windows.input.clone();
            let stdin = stdio.stdin;
            thread::spawn(move || pump_in(id, stdin, &window, &agent, stop_r));
        }
        let size = terminal
            .as_ref()
            .and_then(|t| isobox_common::pty::window_size(t.as_fd()).ok());
        Ok(HostSession {
            out: tx,
            writer: Some(writer),
            client,
            _stop: stop_w,
            windows,
            terminal,
            size,
        })
    }

    /// Output from the guest, already checked against the window.
    pub fn output(&self, stderr: bool, data: Vec<u8>) {
        // A writer gone (it never goes before End) leaves the bytes charged: the guest's
        // session stalls, nothing else.
        let _ = self.out.send(Out::Data { stderr, data });
    }

    /// Tell the exec client (if any) something about its session.
    pub fn reply(&mut self, msg: &Message) {
        if let Some(c) = &mut self.client {
            if protocol::write_message(c, msg).is_err() {
                self.client = None;
            }
        }
    }

    /// The session's Exit: the writer tells the client after the output. Returns the writer
    /// to join when the caller must wait for the output to be out (the workload).
    pub fn end(mut self, status: ExitStatus) -> Option<JoinHandle<()>> {
        self.windows.input.close();
        let _ = self.out.send(Out::End(status));
        self.writer.take()
    }

    /// The terminal's new size, if it changed since last asked.
    pub fn resized(&mut self) -> Option<WindowSize> {
        let t = self.terminal.as_ref()?;
        let now = isobox_common::pty::window_size(t.as_fd()).ok()?;
        if self.size == Some(now) {
            return None;
        }
        self.size = Some(now);
        Some(now)
    }

    pub fn has_terminal(&self) -> bool {
        self.terminal.is_some()
    }
}

impl Drop for HostSession {
    fn drop(&mut self) {
        self.windows.input.close();
        self.windows.output.close();
    }
}

/// The writer thread: output to its file, then Consumed; at End the client hears the exit.
fn write_out(
    id: SessionId,
    rx: mpsc::Receiver<Out>,
    mut stdout: File,
    mut stderr: File,
    window: &Window,
    agent: &AgentWriter,
    mut client: Option<UnixStream>,
) {
    for out in rx {
        match out {
            Out::Data { stderr: e, data } => {
                let f = if e { &mut stderr } else { &mut stdout };
                // A reader that went away is not the guest's problem: the bytes are dropped
                // and still reported consumed, so the session runs on.
                let _ = f.write_all(&data).and_then(|()| f.flush());
                let n = data.len();
                let _ = window.release(n);
                let _ = agent.send(&Message::Consumed {
                    session: id,
                    bytes: n as u32,
                });
            }
            Out::End(status) => {
                if let Some(c) = &mut client {
                    let _ = protocol::write_message(c, &Message::Exit { session: 0, status });
                }
                return;
            }
        }
    }
}

/// The input pump: Stdin frames within the window until end of input, then StdinEof; it
/// stops without a word once `stop` hangs up (the session ended) or the window closes.
fn pump_in(id: SessionId, mut stdin: File, window: &Window, agent: &AgentWriter, stop: OwnedFd) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let room = window.reserve(CHUNK);
        if room == 0 {
            return;
        }
        let mut fds = [
            libc::pollfd {
                fd: stdin.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of two pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            window.unreserve(room);
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        let got = match stdin.read(&mut buf[..room]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                window.unreserve(room);
                continue;
            }
            // EIO: a terminal hung up; like any other error, the end of the input.
            Err(_) => 0,
        };
        window.unreserve(room - got);
        if got == 0 {
            let _ = agent.send(&Message::StdinEof { session: id });
            return;
        }
        let msg = Message::Stdin {
            session: id,
            data: buf[..got].to_vec(),
        };
        if agent.send(&msg).is_err() {
            return;
        }
    }
}
