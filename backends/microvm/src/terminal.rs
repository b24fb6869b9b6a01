//! The host side of a guest's terminal (`process.terminal`): a host pty whose master goes to
//! the console socket (runc's protocol, as the container backend sends its own) and whose
//! slave, raw, the VM's host process relays to the guest's pty, window size included. The
//! line discipline (echo, ^C, cooked lines) is the guest pty's.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use isobox_common::protocol::WindowSize;

use crate::error::MicrovmError;

fn io(context: &str, e: std::io::Error) -> isobox_common::Error {
    MicrovmError::io(context, e).into()
}

/// Make the host pty, send its master over the console socket at `socket`, and return
/// (slave, master). Its size is `size`, or without one (0 rows) isobox's own terminal's,
/// which isobox relays in the foreground.
pub fn host_side(size: WindowSize, socket: &Path) -> isobox_common::Result<(OwnedFd, OwnedFd)> {
    let pty = isobox_common::pty::open().map_err(|e| io("opening a pseudo-terminal", e))?;
    isobox_common::pty::make_raw(pty.slave.as_fd())
        .map_err(|e| io("putting the host side of the terminal in raw mode", e))?;
    let size = Some(size).filter(|s| s.rows > 0).or_else(|| {
        // SAFETY: descriptor 0 stays open for the life of the process.
        let stdin = unsafe { BorrowedFd::borrow_raw(0) };
        isobox_common::pty::window_size(stdin).ok()
    });
    if let Some(size) = size {
        isobox_common::pty::set_window_size(pty.master.as_fd(), size)
            .map_err(|e| io("process.consoleSize: setting the window size", e))?;
    }
    let conn = isobox_common::console::connect(socket)?;
    isobox_common::console::send_master(conn.as_fd(), pty.master.as_fd())?;
    Ok((pty.slave, pty.master))
}
