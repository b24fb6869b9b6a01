//! Talking to the container init while it is set up (a SOCK_SEQPACKET pair, one message per
//! step) and the exec fifo that holds it between `create` and `start`.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::error::{ContainerError, Result};

/// Messages of the setup protocol. Parent → child: `Go(host pid)`, `Continue`. Child →
/// parent: `RuntimeHooks` (mounts are done, run createRuntime/prestart now), `Created`,
/// `Error(text)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Go(i32),
    Continue,
    RuntimeHooks,
    Created,
    Error(String),
}

impl Msg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go(pid) => format!("G{pid}").into_bytes(),
            Msg::Continue => b"K".to_vec(),
            Msg::RuntimeHooks => b"H".to_vec(),
            Msg::Created => b"C".to_vec(),
            Msg::Error(text) => format!("E{text}").into_bytes(),
        }
    }

    pub fn decode(b: &[u8]) -> Option<Msg> {
        let (&tag, rest) = b.split_first()?;
        let text = std::str::from_utf8(rest).ok()?;
        Some(match tag {
            b'G' => Msg::Go(text.parse().ok()?),
            b'K' if rest.is_empty() => Msg::Continue,
            b'H' if rest.is_empty() => Msg::RuntimeHooks,
            b'C' if rest.is_empty() => Msg::Created,
            b'E' => Msg::Error(text.to_string()),
            _ => return None,
        })
    }
}

/// One end of the setup channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Largest message (an error text) that is read in one piece.
const MAX_MSG: usize = 64 * 1024;

impl Channel {
    /// A connected pair (parent end, child end), close-on-exec.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ContainerError::io("creating the setup socket pair", e.into()))?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn send(&self, msg: &Msg) -> Result<()> {
        let bytes = msg.encode();
        let bytes = &bytes[..bytes.len().min(MAX_MSG)];
        loop {
            // SAFETY: writing from a valid buffer to a descriptor we own.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            if n >= 0 {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(ContainerError::io("sending to the container init", err));
            }
        }
    }

    /// The next message; None when the other end closed (the process died).
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; MAX_MSG];
        let n = loop {
            // SAFETY: reading into a buffer of the given length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                break n as usize;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(ContainerError::io("reading from the container init", err));
            }
        };
        if n == 0 {
            return Ok(None);
        }
        Msg::decode(&buf[..n]).map(Some).ok_or_else(|| {
            ContainerError::Init(format!(
                "unexpected setup message {:?}",
                String::from_utf8_lossy(&buf[..n])
            ))
        })
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Name of the exec fifo in the state directory.
pub const EXEC_FIFO: &str = "exec.fifo";

/// Make the exec fifo (owner-writable only, so only root in the host can release it).
pub fn make_fifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| ContainerError::io(format!("creating {}", path.display()), e.into()))
}

/// Child side: block until `start` opens the fifo, then write one byte. `dir` is an O_PATH
/// descriptor of the state directory opened before pivot_root, so the fifo is reachable
/// after the host's tree is gone.
pub fn wait_for_start(dir: RawFd) -> Result<()> {
    let name = std::ffi::CString::new(EXEC_FIFO).expect("no NUL");
    let fd = loop {
        // SAFETY: openat with a valid directory descriptor and C string.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            break fd;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(ContainerError::io("opening the exec fifo", err));
        }
    };
    // SAFETY: fd was just opened and is owned here.
    let file = unsafe { File::from_raw_fd(fd) };
    nix::unistd::write(&file, b"0")
        .map_err(|e| ContainerError::io("writing the exec fifo", e.into()))?;
    Ok(())
}

/// `start` side: open the fifo, wait for the init's byte while the init is alive, then remove
/// the fifo. `alive` is asked between waits so a dead init does not block `start` forever.
pub fn release(path: &Path, alive: impl Fn() -> bool) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ContainerError::io(format!("opening {}", path.display()), e))?;
    loop {
        let mut fds = [libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: polling one valid descriptor.
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                1,
                Duration::from_millis(100).as_millis() as i32,
            )
        };
        if n > 0 && fds[0].revents & libc::POLLIN != 0 {
            let mut b = [0u8; 1];
            match file.read(&mut b) {
                Ok(1) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(ContainerError::io(format!("reading {}", path.display()), e)),
            }
        }
        if n > 0 && fds[0].revents & libc::POLLHUP != 0 && !alive() {
            return Err(ContainerError::Init(
                "the container process exited before it was started".into(),
            ));
        }
        if n == 0 && !alive() {
            return Err(ContainerError::Init(
                "the container process exited before it was started".into(),
            ));
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Msg::Go(4242),
            Msg::Continue,
            Msg::RuntimeHooks,
            Msg::Created,
            Msg::Error("mount /proc: EPERM".into()),
        ] {
            assert_eq!(Msg::decode(&m.encode()), Some(m));
        }
        assert_eq!(Msg::decode(b"Gx"), None);
        assert_eq!(Msg::decode(b""), None);
    }

    #[test]
    fn channel_carries_messages_and_reports_close() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Msg::Go(7)).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Msg::Go(7)));
        b.send(&Msg::Error("bad".into())).unwrap();
        assert_eq!(a.recv().unwrap(), Some(Msg::Error("bad".into())));
        drop(b);
        assert_eq!(a.recv().unwrap(), None);
    }

    #[test]
    fn fifo_releases_a_waiting_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join(EXEC_FIFO);
        make_fifo(&fifo).unwrap();
        let dir = File::open(tmp.path()).unwrap();
        let fd = dir.as_raw_fd();
        let writer = std::thread::spawn(move || wait_for_start(fd));
        release(&fifo, || true).unwrap();
        writer.join().unwrap().unwrap();
        assert!(!fifo.exists());
        drop(dir);
    }

    #[test]
    fn fifo_release_fails_when_the_process_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join(EXEC_FIFO);
        make_fifo(&fifo).unwrap();
        let err = release(&fifo, || false).unwrap_err();
        assert!(err.to_string().contains("exited before"), "{err}");
    }
}
