//! The foreground terminal of `run` and `exec` without a console socket: isobox's stdin goes
//! to the process's pty master and its output to isobox's stdout, with isobox's own terminal
//! (when stdin is one) in raw mode until the relay ends.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags};
use nix::sys::termios::{self, SetArg, Termios};

/// Input read from stdin, not yet taken by the master.
const CHUNK: usize = 16 * 1024;

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

/// isobox's own window size as (rows, columns), when its stdin is a terminal.
pub fn own_window_size() -> Option<(u16, u16)> {
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ fills it in.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize to a valid pointer.
    let ok = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
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
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin(), SetArg::TCSANOW, &raw)
                .context("putting the terminal in raw mode")?;
        }
        Ok(Relay {
            master: Some(master),
            stdin_open: true,
            pending: Vec::new(),
            saved,
        })
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
