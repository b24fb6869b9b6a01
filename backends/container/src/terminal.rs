//! `process.terminal`: a pseudo-terminal opened inside the container (from its own devpts,
//! so the workload sees its terminal under /dev/pts), the master handed over the console
//! socket (runc's protocol, [`isobox_common::console`]), the slave made the process's
//! controlling terminal and stdin, stdout and stderr.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use oci_spec::runtime::Process;

use crate::error::{ContainerError, Result};

/// A process's terminal to make: where its master goes, and its first window size.
#[derive(Debug)]
pub struct Console {
    /// Connected to the console socket (or to the runtime, which relays it).
    pub socket: OwnedFd,
    /// process.consoleSize as (rows, columns).
    pub size: Option<(u16, u16)>,
}

impl Console {
    /// The terminal `process` asks for, its master to go to `socket`.
    pub fn of(process: &Process, socket: OwnedFd) -> Console {
        let size = process.console_size().as_ref().map(|b| {
            let clamp = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
            (clamp(b.height()), clamp(b.width()))
        });
        Console { socket, size }
    }
}

fn io(step: &str, e: std::io::Error) -> ContainerError {
    ContainerError::io(format!("process.terminal: {step}"), e)
}

fn last(step: &str) -> ContainerError {
    io(step, std::io::Error::last_os_error())
}

/// Make the calling process's terminal, inside the container's mount namespace and while
/// it may still open devices. With `bind_console` (the init of a container with its own
/// mount namespace) the slave is also bound on /dev/console, as runc does.
pub fn attach(console: &Console, bind_console: bool) -> Result<()> {
    let pty = isobox_common::pty::open().map_err(|e| io("opening /dev/ptmx", e))?;
    if let Some((rows, cols)) = console.size {
        let size = isobox_common::protocol::WindowSize { rows, cols };
        isobox_common::pty::set_window_size(pty.master.as_fd(), size)
            .map_err(|e| io("process.consoleSize: setting the window size", e))?;
    }
    if bind_console {
        bind_dev_console(&pty.master)?;
    }
    isobox_common::console::send_master(console.socket.as_fd(), pty.master.as_fd())
        .map_err(ContainerError::Common)?;
    drop(pty.master);
    // A new session, so the slave can become its controlling terminal.
    // SAFETY: setsid and ioctl with integer arguments on descriptors we own.
    unsafe {
        if libc::getsid(0) != libc::getpid() && libc::setsid() < 0 {
            return Err(last("setsid"));
        }
        if libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(last("making it the controlling terminal (TIOCSCTTY)"));
        }
        for fd in 0..3 {
            if libc::dup2(pty.slave.as_raw_fd(), fd) < 0 {
                return Err(last("making it stdin, stdout and stderr"));
            }
        }
    }
    Ok(())
}

/// Bind the slave of `master` on /dev/console (made as an empty file when missing).
fn bind_dev_console(master: &OwnedFd) -> Result<()> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty number to a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        return Err(last("reading the pty number (TIOCGPTN)"));
    }
    let slave = format!("/dev/pts/{n}");
    // O_EXCL: an existing /dev/console (a device node the bundle lists) is never opened.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open("/dev/console")
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating /dev/console", e)),
    }
    nix::mount::mount(
        Some(slave.as_str()),
        "/dev/console",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| io(&format!("binding {slave} on /dev/console"), e.into()))
}
