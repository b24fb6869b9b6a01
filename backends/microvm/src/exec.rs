//! `exec` in a microVM: the process runs in the guest, started by the agent as another
//! session; isobox asks the VM's host process for it over the exec socket (see
//! [`crate::host_process::control`]) and hands it its stdio. With a terminal, the host side
//! is a new pty whose master goes to the console socket and whose slave the host process
//! relays to the guest's pty, window size included.
//!
//! The guest process has no host pid, so a host process stands for it: `isobox exec` itself
//! in the foreground, or with `--detach` a small process forked off that lives exactly as
//! long as the guest process (it relays the signals it gets and exits with the guest
//! process's status; if it is killed, the host process kills the guest process).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use isobox_common::protocol::{Message, WindowSize};
use isobox_common::{Error, ExecOptions, ExecSession, Execed, State, Status};

use crate::error::MicrovmError;
use crate::host_process::config::EXEC_SOCKET;
use crate::host_process::control::{self, Reader};
use crate::vmspec;

/// The exit code of a process that was killed with its VM (SIGKILL, as a PID namespace's
/// processes die with its init).
const KILLED_WITH_THE_VM: i32 = 128 + libc::SIGKILL;

fn bad_state(state: &State, reason: String) -> Error {
    Error::BadState {
        id: state.id.clone(),
        reason,
    }
}

fn io(context: impl Into<String>, e: std::io::Error) -> Error {
    MicrovmError::io(context, e).into()
}

/// Start `opts.process` in the running VM of `state`.
pub fn exec(state: &State, opts: &ExecOptions) -> isobox_common::Result<Execed> {
    if state.status != Status::Running {
        return Err(bad_state(
            state,
            format!(
                "a microVM's exec sessions run beside its workload: the container must be running, it is {}",
                state.status
            ),
        ));
    }
    vmspec::validate_process(&opts.process, "").map_err(|(field, reason)| Error::Config {
        file: opts.process_file.clone(),
        field,
        reason,
    })?;
    let request = vmspec::process_request(&opts.process);
    // The host side of the process's stdio, and (with a terminal) the master kept to resize.
    let (stdio, master): ([OwnedFd; 3], Option<OwnedFd>) = match request.terminal {
        Some(size) => {
            let socket = opts
                .console_socket
                .as_deref()
                .ok_or_else(|| Error::Config {
                    file: opts.process_file.clone(),
                    field: "process.terminal".into(),
                    reason: "a terminal needs a console socket to send its master to".into(),
                })?;
            let (slave, master) = crate::terminal::host_side(size, socket)?;
            let dup = |fd: &OwnedFd| {
                fd.try_clone()
                    .map_err(|e| io("duplicating the terminal", e))
            };
            ([dup(&slave)?, dup(&slave)?, slave], Some(master))
        }
        None => {
            let own = |fd: i32| {
                // SAFETY: descriptors 0-2 stay open for the life of the process.
                unsafe { BorrowedFd::borrow_raw(fd) }
                    .try_clone_to_owned()
                    .map_err(|e| io(format!("duplicating descriptor {fd}"), e))
            };
            ([own(0)?, own(1)?, own(2)?], None)
        }
    };
    let conn = control::short_path(&state.state_dir, EXEC_SOCKET, |p| UnixStream::connect(p))
        .map_err(|e| {
            bad_state(
                state,
                format!(
                    "the VM host process does not take exec sessions ({}: {e})",
                    state.state_dir.join(EXEC_SOCKET).display()
                ),
            )
        })?;
    let frame = Message::Exec {
        session: control::SESSION,
        request,
    }
    .encode()?;
    let fds: Vec<BorrowedFd<'_>> = stdio.iter().map(|f| f.as_fd()).collect();
    control::send_with_fds(&conn, &frame, &fds)
        .map_err(|e| io("sending the exec request to the VM host process", e))?;
    // The host process has its own copies now.
    drop(stdio);
    let mut reader = Reader::new(conn);
    match reader.next(0) {
        Ok(Some((Message::Started { .. }, _))) => {}
        Ok(Some((Message::Error { text, .. }, _))) => return Err(MicrovmError::Agent(text).into()),
        Ok(Some((other, _))) => {
            return Err(MicrovmError::Agent(format!(
                "exec socket: unexpected {} before Started",
                other.name()
            ))
            .into())
        }
        Ok(None) => {
            return Err(bad_state(
                state,
                "the VM host process closed the exec socket before the process started".into(),
            ))
        }
        Err(e) => return Err(io("reading the exec socket", e)),
    }
    let mut session = VmExec {
        reader,
        master,
        exited: None,
    };
    if opts.detach {
        let pid = stand_in(&mut session)?;
        return Ok(Execed {
            pid,
            console: None,
            session: Box::new(session),
        });
    }
    session
        .reader
        .stream()
        .set_nonblocking(true)
        .map_err(|e| io("making the exec socket non-blocking", e))?;
    Ok(Execed {
        pid: std::process::id() as i32,
        console: None,
        session: Box::new(session),
    })
}

/// The caller's view of the guest process: the exec connection.
#[derive(Debug)]
pub struct VmExec {
    reader: Reader,
    /// The host pty's master (a terminal only): a size set on it reaches the guest's pty.
    master: Option<OwnedFd>,
    exited: Option<i32>,
}

impl VmExec {
    fn send(&self, msg: &Message) -> std::io::Result<()> {
        let frame = msg
            .encode()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        control::send_with_fds(self.reader.stream(), &frame, &[])
    }

    /// Read what the host process says; the exit code once it is known.
    fn poll_exit(&mut self) -> std::io::Result<Option<i32>> {
        if self.exited.is_some() {
            return Ok(self.exited);
        }
        loop {
            match self.reader.next(0) {
                Ok(Some((Message::Exit { status, .. }, _))) => {
                    self.exited = Some(status.shell_code());
                    return Ok(self.exited);
                }
                Ok(Some(_)) => continue,
                // The host process is gone, and the VM with it.
                Ok(None) => {
                    self.exited = Some(KILLED_WITH_THE_VM);
                    return Ok(self.exited);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    self.exited = Some(KILLED_WITH_THE_VM);
                    return Ok(self.exited);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl ExecSession for VmExec {
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.reader.stream().as_fd())
    }

    fn try_wait(&mut self) -> isobox_common::Result<Option<i32>> {
        self.poll_exit()
            .map_err(|e| io("reading the exec socket", e))
    }

    fn signal(&mut self, signal: i32) -> isobox_common::Result<()> {
        if self.exited.is_some() {
            return Ok(());
        }
        self.send(&Message::Signal {
            session: control::SESSION,
            signal,
        })
        .map_err(|e| io(format!("relaying signal {signal} to the guest process"), e))
    }

    fn resize(&mut self, rows: u16, cols: u16) -> isobox_common::Result<()> {
        // The host process follows the host pty's size into the guest.
        if let Some(m) = &self.master {
            isobox_common::pty::set_window_size(m.as_fd(), WindowSize { rows, cols })
                .map_err(|e| io("setting the terminal's window size", e))?;
        }
        Ok(())
    }
}

/// Fork the process that stands for a detached guest process: it keeps the exec connection
/// (and what was read from it), relays the signals it gets, and exits with the guest
/// process's status. Returns its pid.
fn stand_in(session: &mut VmExec) -> isobox_common::Result<i32> {
    // SAFETY: the child only makes system calls and runs `stand_in_main`, which allocates
    // through the fork-safe allocator and takes no lock another thread could hold.
    match unsafe { libc::fork() } {
        -1 => Err(io(
            "forking the process that stands for the guest process",
            std::io::Error::last_os_error(),
        )),
        0 => stand_in_main(session),
        pid => Ok(pid),
    }
}

/// The stand-in's life: its own session, no descriptor but the connection (stdio on
/// /dev/null), the forwarded signals read from a signalfd.
fn stand_in_main(s: &mut VmExec) -> ! {
    use nix::sys::signal::{SigSet, SigmaskHow};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let conn = s.reader.stream().as_raw_fd();
    // Closed below with every other descriptor.
    std::mem::forget(s.master.take());
    // SAFETY: plain system calls on descriptors this process owns; the connection is above
    // stdio (which was open when it was made) and stays open.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if conn > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, conn as u32 - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, conn as u32 + 1, u32::MAX, 0u32);
    }
    let mut set = SigSet::empty();
    for sig in crate::host_process::threads::FORWARDED {
        set.add(*sig);
    }
    let code = (|| -> Option<i32> {
        s.reader.stream().set_nonblocking(true).ok()?;
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&set), None).ok()?;
        let sigfd =
            SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok()?;
        loop {
            // First what the parent had read already.
            if let Some(code) = s.poll_exit().ok()? {
                return Some(code);
            }
            let mut fds = [
                libc::pollfd {
                    fd: conn,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sigfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: a valid array of two pollfd.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                continue;
            }
            while let Ok(Some(info)) = sigfd.read_signal() {
                let _ = s.signal(info.ssi_signo as i32);
            }
        }
    })();
    // SAFETY: leaves the process without running the parent's exit handlers.
    unsafe { libc::_exit(code.unwrap_or(KILLED_WITH_THE_VM)) }
}
