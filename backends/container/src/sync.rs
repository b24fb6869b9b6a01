//! Talking to the container init while it is set up (a SOCK_SEQPACKET pair, one message per
//! step) and the exec fifo that holds it between `create` and `start`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::error::{ContainerError, Result};

/// Messages of the setup protocol. Parent → child: `Go(host pid)` (id maps written),
/// `Placed` (in the cgroup), `Continue` (runtime hooks done). Child →
/// parent: `RuntimeHooks` (mounts are done, run createRuntime/prestart now), `Created`,
/// `Error(text)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Go(i32),
    Placed,
    Continue,
    RuntimeHooks,
    Created,
    Error(String),
}

impl Msg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go(pid) => format!("G{pid}").into_bytes(),
            Msg::Placed => b"P".to_vec(),
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
            b'P' if rest.is_empty() => Msg::Placed,
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
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    // A dead peer is an error to report, not a SIGPIPE to die of.
                    libc::MSG_NOSIGNAL,
                )
            };
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

/// Make the exec fifo (root-only: only the host's root can release the container).
pub fn make_fifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| ContainerError::io(format!("creating {}", path.display()), e.into()))
}

/// Open the fifo for the init, read-write so the open does not block. The init inherits the
/// descriptor through clone, so it needs no path (nor rights) to the state directory after
/// pivot_root or in a user namespace.
pub fn open_fifo(path: &Path) -> Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ContainerError::io(format!("opening {}", path.display()), e))?;
    Ok(file.into())
}

/// Init side: block until `start` writes its byte into the fifo.
pub fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(fifo, &mut b) {
            Ok(1) => return Ok(()),
            Ok(_) => {
                return Err(ContainerError::Init(
                    "the exec fifo closed before start".into(),
                ))
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ContainerError::io("reading the exec fifo", e.into())),
        }
    }
}

/// Largest error text the init hands back through the fifo: a pipe write of at most
/// PIPE_BUF bytes is atomic, and the fifo is empty then, so it cannot block.
const MAX_START_ERROR: usize = 4000;

/// Init side, after `start` released it: leave the reason it cannot start the workload in the
/// fifo for [`release`] to read once the init is gone. False if it could not be written.
pub fn report_start_error(fifo: &OwnedFd, text: &str) -> bool {
    let mut end = text.len().min(MAX_START_ERROR);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut msg = Vec::with_capacity(end + 1);
    msg.push(b'E');
    msg.extend_from_slice(&text.as_bytes()[..end]);
    matches!(nix::unistd::write(fifo, &msg), Ok(n) if n == msg.len())
}

/// What is left in the fifo after the hang-up: the init's error, if it sent one (a start
/// byte it never took comes first).
fn start_error(watch: &OwnedFd) -> Option<String> {
    let mut buf = vec![0u8; MAX_START_ERROR + 2];
    let n = nix::unistd::read(watch, &mut buf).ok()?;
    let left = &buf[..n];
    let left = &left[left.iter().take_while(|&&b| b == b'0').count()..];
    let text = left.strip_prefix(b"E")?;
    Some(String::from_utf8_lossy(text).into_owned())
}

/// `start` side: write the byte that releases the init, remove the fifo, and wait until the
/// init has exec'd the workload (or died): its fifo descriptor is close-on-exec, so the fifo
/// hangs up then. With no init holding the fifo open (it died), opening it fails at once
/// instead of blocking. An error the init left in the fifo before it ended (a failing
/// startContainer hook) is returned.
pub fn release(path: &Path) -> Result<()> {
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
    };
    let file = match open(true) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            let _ = std::fs::remove_file(path);
            return Err(ContainerError::Init(
                "the container process exited before it was started".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ContainerError::Init(format!(
                "{} is gone: the container was already started",
                path.display()
            )));
        }
        Err(e) => return Err(ContainerError::io(format!("opening {}", path.display()), e)),
    };
    // Opened while the init still holds its end, so the hang-up is reported when it lets go.
    let watch =
        open(false).map_err(|e| ContainerError::io(format!("opening {}", path.display()), e))?;
    nix::unistd::write(&file, b"0")
        .map_err(|e| ContainerError::io(format!("writing {}", path.display()), e.into()))?;
    drop(file);
    let _ = std::fs::remove_file(path);
    let watch = OwnedFd::from(watch);
    wait_hangup(&watch, std::time::Duration::from_secs(60));
    match start_error(&watch) {
        Some(text) => Err(ContainerError::Init(text)),
        None => Ok(()),
    }
}

/// Wait (bounded) until every writer of the fifo behind `fd` is gone. POLLIN alone means the
/// init has not taken its byte yet.
fn wait_hangup(fd: &OwnedFd, limit: std::time::Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Msg::Go(4242),
            Msg::Placed,
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
    fn fifo_releases_the_waiting_init() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join(EXEC_FIFO);
        make_fifo(&fifo).unwrap();
        let fd = open_fifo(&fifo).unwrap();
        let waiter = std::thread::spawn(move || wait_for_start(&fd));
        release(&fifo).unwrap();
        waiter.join().unwrap().unwrap();
        assert!(!fifo.exists());
        let err = release(&fifo).unwrap_err();
        assert!(err.to_string().contains("already started"), "{err}");
    }

    #[test]
    fn fifo_release_returns_the_error_the_init_left() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join(EXEC_FIFO);
        make_fifo(&fifo).unwrap();
        let fd = open_fifo(&fifo).unwrap();
        let init = std::thread::spawn(move || {
            wait_for_start(&fd).unwrap();
            assert!(report_start_error(&fd, "startContainer hook /x: failed"));
            // Dropping the descriptor is the init ending.
        });
        let err = release(&fifo).unwrap_err().to_string();
        init.join().unwrap();
        assert_eq!(err, "container init: startContainer hook /x: failed");
    }

    #[test]
    fn fifo_release_fails_when_the_init_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join(EXEC_FIFO);
        make_fifo(&fifo).unwrap();
        drop(open_fifo(&fifo).unwrap());
        let err = release(&fifo).unwrap_err();
        assert!(err.to_string().contains("exited before"), "{err}");
        assert!(!fifo.exists());
    }
}
