//! A child process of the caller as an [`ExecSession`]: waited for through a pidfd and
//! waitpid, signalled with kill(2). Its terminal, if any, is resized by whoever holds the
//! master.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::{Error, ExecSession, Result};

/// A child of this process, until it has been reaped.
#[derive(Debug)]
pub struct ChildSession {
    pid: i32,
    /// None on kernels without pidfd_open (before 5.3): the caller polls on a timer.
    pidfd: Option<OwnedFd>,
    /// The exit code once reaped; the pid may name another process from then on.
    exited: Option<i32>,
}

impl ChildSession {
    /// `pid` must be a child of the calling process.
    pub fn new(pid: i32) -> ChildSession {
        // SAFETY: pidfd_open returns a new descriptor we own, or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        let pidfd = (raw >= 0).then(|| {
            // SAFETY: `raw` is the new descriptor pidfd_open returned, owned by no one else.
            unsafe { OwnedFd::from_raw_fd(raw) }
        });
        ChildSession {
            pid,
            pidfd,
            exited: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

/// The exit code a shell would report for a wait status: the code, or 128+N for signal N.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

impl ExecSession for ChildSession {
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|p| p.as_fd())
    }

    fn try_wait(&mut self) -> Result<Option<i32>> {
        if self.exited.is_some() {
            return Ok(self.exited);
        }
        loop {
            match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(status) => {
                    self.exited = exit_code(status);
                    return Ok(self.exited);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(format!("waiting for pid {}", self.pid), e)),
            }
        }
    }

    fn signal(&mut self, signal: i32) -> Result<()> {
        if self.exited.is_some() {
            return Ok(());
        }
        // libc::kill rather than nix's Signal: real-time signals are valid too.
        // SAFETY: kill with integer arguments, on our unreaped child.
        if unsafe { libc::kill(self.pid, signal) } != 0 {
            return Err(Error::io(
                format!("sending signal {signal} to pid {}", self.pid),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn resize(&mut self, _rows: u16, _cols: u16) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The children are reaped through the session, which is what is tested.
    #[allow(clippy::zombie_processes)]
    fn the_exit_code_and_a_signal_are_reported() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let mut s = ChildSession::new(child.id() as i32);
        let code = loop {
            if let Some(c) = s.try_wait().unwrap() {
                break c;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(code, 7);
        assert_eq!(s.try_wait().unwrap(), Some(7), "stays reported once reaped");

        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut s = ChildSession::new(child.id() as i32);
        assert_eq!(s.try_wait().unwrap(), None);
        s.signal(libc::SIGKILL).unwrap();
        while s.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(s.try_wait().unwrap(), Some(128 + 9));
    }
}
