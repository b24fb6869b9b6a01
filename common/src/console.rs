//! runc's console-socket protocol: the master of a container's pseudo-terminal is handed to
//! whoever listens on `--console-socket` as one SCM_RIGHTS message whose bytes are the
//! master's name, over a stream connection (what containerd's go-runc and podman's conmon
//! receive).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::error::IoContext;
use crate::{Error, Result};

/// The name sent with the master, as runc sends it (the master's own path).
pub const MASTER_NAME: &str = "/dev/ptmx";

/// The longest name a receiver takes (go-runc reads at most 4096 bytes).
const MAX_NAME: usize = 4096;

/// Connect to the `--console-socket` at `path`.
pub fn connect(path: &Path) -> Result<OwnedFd> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .ctx(|| format!("--console-socket {}: connecting", path.display()))
}

/// Send `master` over the connected `socket` with its name.
pub fn send_master(socket: BorrowedFd<'_>, master: BorrowedFd<'_>) -> Result<()> {
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(MASTER_NAME.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::sys(
                    "sending the terminal over the console socket",
                    e,
                ))
            }
        }
    }
}

/// Receive one master from the connected `socket` (the receiving side of the protocol).
pub fn receive_master(socket: BorrowedFd<'_>) -> Result<OwnedFd> {
    let mut name = vec![0u8; MAX_NAME];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (bytes, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut name)];
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg
                    .cmsgs()
                    .map_err(|e| Error::sys("reading the console message", e))?
                {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        fds.extend(list);
                    }
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::sys(
                    "receiving the terminal from the console socket",
                    e,
                ))
            }
        }
    };
    // SAFETY: descriptors just received with SCM_RIGHTS belong to this process alone.
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if owned.len() != 1 || bytes == 0 {
        return Err(Error::Protocol(format!(
            "console socket: expected one descriptor with a name, got {} descriptor(s) and {bytes} byte(s)",
            owned.len()
        )));
    }
    Ok(owned.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_master_sent_is_received_with_its_name() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_master(a.as_fd(), file.as_fd()).unwrap();
        let got = receive_master(b.as_fd()).unwrap();
        // The same open file: a write through one is seen at the other's offset.
        std::io::Write::write_all(&mut std::fs::File::from(got), b"xy").unwrap();
        assert_eq!(file.metadata().unwrap().len(), 2);
    }

    #[test]
    fn a_message_without_a_descriptor_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"/dev/ptmx").unwrap();
        let err = receive_master(b.as_fd()).unwrap_err().to_string();
        assert!(err.contains("expected one descriptor"), "{err}");
        drop(a);
        assert!(receive_master(b.as_fd()).is_err(), "EOF is an error");
    }
}
