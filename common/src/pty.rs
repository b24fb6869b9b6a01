//! Pseudo-terminals: a new master/slave pair, its window size, raw mode.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::protocol::WindowSize;

/// Both ends of a new pseudo-terminal, close-on-exec.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Open a new pseudo-terminal from /dev/ptmx. The slave comes from the master itself
/// (TIOCGPTPEER), so no /dev/pts path is looked up that another devpts could shadow.
pub fn open() -> io::Result<Pty> {
    let master: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/ptmx")?
        .into();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor we then own.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Pty { master, slave })
}

/// The terminal's window size.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<WindowSize> {
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ fills it in.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize to a valid pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Set the terminal's window size (the kernel signals SIGWINCH to its foreground group).
pub fn set_window_size(fd: BorrowedFd<'_>, size: WindowSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Put a terminal in raw mode: bytes pass through unchanged, no echo, no signals from keys.
pub fn make_raw(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut t = nix::sys::termios::tcgetattr(fd)?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &t)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_new_pty_relays_bytes_and_keeps_its_size() {
        let pty = match open() {
            Ok(p) => p,
            Err(e) => {
                crate::skip::skip(&format!("no /dev/ptmx here: {e}"));
                return;
            }
        };
        let size = WindowSize {
            rows: 33,
            cols: 101,
        };
        set_window_size(pty.master.as_fd(), size).unwrap();
        // Set on one side, seen on the other.
        assert_eq!(window_size(pty.slave.as_fd()).unwrap(), size);
        make_raw(pty.slave.as_fd()).unwrap();
        let mut master = std::fs::File::from(pty.master);
        let mut slave = std::fs::File::from(pty.slave);
        master.write_all(b"a\rb\x03").unwrap();
        let mut buf = [0u8; 4];
        slave.read_exact(&mut buf).unwrap();
        // Raw: no CR translation, ^C is a byte.
        assert_eq!(&buf, b"a\rb\x03");
        slave.write_all(b"x\n").unwrap();
        let mut buf = [0u8; 2];
        master.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"x\n");
    }
}
