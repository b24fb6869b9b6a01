//! The foreground terminal of `run` and `exec` without a console socket: isobox's stdin goes
//! to the process's pty master and its output to isobox's stdout, with isobox's own terminal
//! (when stdin is one) in raw mode until the relay ends.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use anyhow::{Context, Result};
use isobox_common::protocol::WindowSize;
use isobox_common::pty;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags};
use nix::sys::termios::{self, SetArg, Termios};

/// Input read from stdin, not yet taken by the master.
const CHUNK: usize = 16 * 1024;

/// A console socket isobox listens on itself, for a terminal it relays in the foreground:
/// backends only ever send a master to a console socket.
pub struct OwnConsole {
    dir: PathBuf,
    listener: UnixListener,
}

impl OwnConsole {
    pub fn new() -> Result<OwnConsole> {
        // A short private directory: a socket path must fit in sun_path (108 bytes).
        let dir = nix::unistd::mkdtemp("/tmp/isobox-console-XXXXXX")
            .context("making a directory for the terminal's socket")?;
        let listener = UnixListener::bind(dir.join("sock"))
            .with_context(|| format!("listening on {}", dir.join("sock").display()))?;
        listener
            .set_nonblocking(true)
            .context("making the terminal's socket non-blocking")?;
        Ok(OwnConsole { dir, listener })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The master a backend sent while it created the process (it is waiting by now).
    pub fn receive(&self) -> Result<Option<OwnedFd>> {
        let conn = match self.listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e).context("accepting the terminal's connection"),
        };
        conn.set_nonblocking(false)
            .context("the terminal's connection")?;
        Ok(Some(isobox_common::console::receive_master(conn.as_fd())?))
    }
}

impl Drop for OwnConsole {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Relay {
    /// None once the terminal hung up (every slave closed).
    master: Option<OwnedFd>,
    stdin_open: bool,
    pending: Vec<u8>,
    /// isobox's terminal settings before raw mode, restored on drop.
    saved: Option<Termios>,
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: descriptor 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) }
}

/// isobox's own window size, when its stdin is a terminal.
pub fn own_window_size() -> Option<WindowSize> {
    pty::window_size(stdin()).ok().filter(|s| s.rows > 0)
}

impl Relay {
    /// Relay `master`; a terminal on stdin goes raw.
    pub fn new(master: OwnedFd) -> Result<Relay> {
        let flags = fcntl(&master, FcntlArg::F_GETFL).context("the terminal's flags")?;
        fcntl(
            &master,
            FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
        )
        .context("making the terminal non-blocking")?;
        let saved = termios::tcgetattr(stdin()).ok();
        if saved.is_some() {
            pty::make_raw(stdin()).context("putting the terminal in raw mode")?;
        }
        Ok(Relay {
            master: Some(master),
            stdin_open: true,
            pending: Vec::new(),
            saved,
        })
    }

    /// Give the process's terminal this size (the kernel tells its foreground group).
    pub fn resize(&self, size: WindowSize) {
        if let Some(m) = &self.master {
            let _ = pty::set_window_size(m.as_fd(), size);
        }
    }

    /// What to poll: stdin (while there is room for its input) and the master.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds = Vec::new();
        if let Some(m) = &self.master {
            let mut ev = PollFlags::POLLIN;
            if !self.pending.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(m.as_fd(), ev));
            if self.stdin_open && self.pending.is_empty() {
                fds.push(PollFd::new(stdin(), PollFlags::POLLIN));
            }
        }
        fds
    }

    /// Move what is ready: output to stdout, stdin to the master.
    pub fn pump(&mut self) -> Result<()> {
        self.output()?;
        let Some(master) = &self.master else {
            return Ok(());
        };
        if self.stdin_open && self.pending.is_empty() {
            let mut buf = vec![0u8; CHUNK];
            let mut fds = [PollFd::new(stdin(), PollFlags::POLLIN)];
            let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap_or(0);
            if ready > 0 {
                match nix::unistd::read(stdin(), &mut buf) {
                    // EOF: the process keeps its terminal; only our input ends.
                    Ok(0) | Err(Errno::EIO) => self.stdin_open = false,
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                    Err(Errno::EINTR | Errno::EAGAIN) => {}
                    Err(e) => return Err(e).context("reading standard input"),
                }
            }
        }
        while !self.pending.is_empty() {
            match nix::unistd::write(master, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EAGAIN | Errno::EINTR) => break,
                Err(_) => {
                    // The terminal is gone: nothing can take the input any more.
                    self.pending.clear();
                    self.stdin_open = false;
                }
            }
        }
        Ok(())
    }

    /// Copy what the process wrote so far to stdout.
    pub fn output(&mut self) -> Result<()> {
        let Some(master) = &self.master else {
            return Ok(());
        };
        let mut buf = vec![0u8; CHUNK];
        loop {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(Errno::EIO) => {
                    // Hung up: every slave is closed.
                    self.master = None;
                    return Ok(());
                }
                Ok(n) => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&buf[..n])
                        .context("writing standard output")?;
                    out.flush().context("writing standard output")?;
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("reading the terminal"),
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(stdin(), SetArg::TCSADRAIN, t);
        }
        let _ = std::io::stdout().flush();
    }
}
