//! The exec socket (`exec.sock` in the state directory): how an `isobox exec`, a process of its
//! own, reaches the VM whose agent line the host process owns.
//!
//! One connection is one session, spoken in the agent protocol's frames with session id 0:
//! the client sends one Exec and attaches its stdin, stdout and stderr to it (SCM_RIGHTS); the
//! host process answers Started or Error, relays the session between those descriptors and the
//! guest itself, and sends Exit at the end. The client may send Signal meanwhile; closing the
//! connection before Exit kills the process. Handing over the descriptors, rather than relaying
//! bytes through the client, lets `exec --detach` return at once while the engine's pipes or
//! terminal stay served, and keeps the client to one job: standing for the guest process (its
//! pid is what engines wait for) until it reports the exit status.

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::SyncSender as Sender;
use std::thread;

use isobox_common::protocol::{self, ExecRequest, Message, HEADER_LEN};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::sessions::Stdio;
use super::Event;

/// The session id every frame on an exec connection carries.
pub const SESSION: u32 = 0;

/// What a connection asks of the relay.
#[derive(Debug)]
pub enum Control {
    /// Start a session: the request and the client's stdio.
    Open {
        conn: u64,
        request: Box<ExecRequest>,
        stdio: Stdio,
        reply: UnixStream,
    },
    Signal {
        conn: u64,
        signal: i32,
    },
    /// The client went away (or broke the protocol).
    Closed {
        conn: u64,
    },
}

/// Longest path a sockaddr_un takes.
const SUN_PATH_MAX: usize = 107;

/// Run `f` on a path naming `name` in `dir` that fits a socket address: the path itself, or,
/// when too long, one through /proc/self/fd of the directory.
pub fn short_path<T>(
    dir: &Path,
    name: &str,
    f: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<T> {
    let full = dir.join(name);
    if full.as_os_str().len() <= SUN_PATH_MAX {
        return f(&full);
    }
    let d = std::fs::File::open(dir)?;
    f(&Path::new(&format!("/proc/self/fd/{}", d.as_raw_fd())).join(name))
}

/// Listen on `dir`/`name` (only root may connect) and turn connections into events.
pub fn listen(dir: &Path, name: &str, events: Sender<Event>) -> io::Result<()> {
    let _ = std::fs::remove_file(dir.join(name));
    let listener = short_path(dir, name, |p| UnixListener::bind(p))?;
    std::fs::set_permissions(
        dir.join(name),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    thread::spawn(move || {
        for (conn, stream) in (0u64..).zip(listener.incoming()) {
            let Ok(stream) = stream else { continue };
            let events = events.clone();
            thread::spawn(move || serve(conn, stream, &events));
        }
    });
    Ok(())
}

/// Read one connection: its Exec with the descriptors, then Signals until it closes.
fn serve(conn: u64, stream: UnixStream, events: &Sender<Event>) {
    let Ok(read_end) = stream.try_clone() else {
        return;
    };
    let mut reader = Reader::new(read_end);
    let open = match reader.next(3) {
        Ok(Some((Message::Exec { request, .. }, fds))) if fds.len() == 3 => {
            let mut fds = fds.into_iter().map(std::fs::File::from);
            let (Some(stdin), Some(stdout), Some(stderr)) = (fds.next(), fds.next(), fds.next())
            else {
                return;
            };
            let terminal = request.terminal.is_some();
            match stream.try_clone() {
                Ok(reply) => Control::Open {
                    conn,
                    request: Box::new(request),
                    stdio: Stdio {
                        stdin,
                        stdout,
                        stderr,
                        terminal,
                    },
                    reply,
                },
                Err(_) => return,
            }
        }
        Ok(Some((msg, fds))) => {
            let why = format!(
                "exec socket: expected Exec with 3 descriptors, got {} with {}",
                msg.name(),
                fds.len()
            );
            return refuse(&stream, why);
        }
        Ok(None) => return,
        Err(e) => return refuse(&stream, format!("exec socket: {e}")),
    };
    if events.send(Event::Control(open)).is_err() {
        return;
    }
    loop {
        let ev = match reader.next(0) {
            Ok(Some((Message::Signal { signal, .. }, _))) => Control::Signal { conn, signal },
            // Anything else ends the session: the client broke the protocol or left.
            Ok(_) | Err(_) => Control::Closed { conn },
        };
        let last = matches!(ev, Control::Closed { .. });
        if events.send(Event::Control(ev)).is_err() || last {
            return;
        }
    }
}

fn refuse(mut stream: &UnixStream, text: String) {
    let _ = protocol::write_message(
        &mut stream,
        &Message::Error {
            session: SESSION,
            text,
        },
    );
}

/// Frames from a stream that may carry descriptors.
#[derive(Debug)]
pub struct Reader {
    sock: UnixStream,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Reader {
    pub fn new(sock: UnixStream) -> Self {
        Reader {
            sock,
            buf: Vec::new(),
            fds: Vec::new(),
        }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.sock
    }

    /// The next frame and the descriptors that came with its bytes (more than `max_fds` is
    /// an error). `Ok(None)` at a clean end of stream; on a non-blocking socket, WouldBlock
    /// until a whole frame is in (what came so far is kept).
    pub fn next(&mut self, max_fds: usize) -> io::Result<Option<(Message, Vec<OwnedFd>)>> {
        loop {
            // Never more than the frame at hand: what is not read yet stays in the socket,
            // so polling it says whether another frame is there.
            let need = match protocol::decode(&self.buf) {
                Ok(Some((msg, used))) => {
                    self.buf.drain(..used);
                    return Ok(Some((msg, std::mem::take(&mut self.fds))));
                }
                Ok(None) if self.buf.len() < HEADER_LEN => HEADER_LEN - self.buf.len(),
                Ok(None) => {
                    let len =
                        u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
                    HEADER_LEN + len as usize - self.buf.len()
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            };
            let mut chunk = vec![0u8; need.min(64 * 1024)];
            let n = recv_with_fds(self.sock.as_fd(), &mut chunk, &mut self.fds)?;
            if self.fds.len() > max_fds {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} descriptors where {max_fds} were expected",
                        self.fds.len()
                    ),
                ));
            }
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// recvmsg into `buf`, adding the descriptors received (close-on-exec) to `fds`.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = nix::cmsg_space!([RawFd; 8]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(list) = c {
                            // SAFETY: descriptors just received belong to this process alone.
                            fds.extend(
                                list.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "too many descriptors in one message",
                    ));
                }
                return Ok(msg.bytes);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Write `frame` with `fds` attached to its first bytes.
pub fn send_with_fds(sock: &UnixStream, frame: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let sent = loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(frame)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut s = sock;
    s.write_all(&frame[sent..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn poll_readable(s: &UnixStream) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            s.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() > 0
    }

    #[test]
    fn frames_come_with_their_descriptors_and_no_more_is_read() {
        let (client, server) = UnixStream::pair().unwrap();
        let exec = Message::Exec {
            session: SESSION,
            request: ExecRequest {
                args: vec!["sh".into()],
                env: vec![format!("BIG={}", "x".repeat(200_000))],
                ..Default::default()
            },
        };
        let files: Vec<std::fs::File> = (0..3).map(|_| tempfile::tempfile().unwrap()).collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        let sender = {
            let client = client.try_clone().unwrap();
            let frame = exec.encode().unwrap();
            let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
            thread::spawn(move || {
                // SAFETY: the files outlive the thread, which the test joins.
                let fds: Vec<BorrowedFd<'_>> = raw
                    .iter()
                    .map(|fd| unsafe { BorrowedFd::borrow_raw(*fd) })
                    .collect();
                send_with_fds(&client, &frame, &fds).unwrap();
                let signal = Message::Signal {
                    session: SESSION,
                    signal: 15,
                };
                send_with_fds(&client, &signal.encode().unwrap(), &[]).unwrap();
            })
        };
        let mut reader = Reader::new(server);
        let (msg, got) = reader.next(3).unwrap().unwrap();
        assert_eq!(msg, exec);
        assert_eq!(got.len(), 3);
        sender.join().unwrap();
        // The Signal is still in the socket, where a poll sees it.
        assert!(poll_readable(reader.stream()));
        let (msg, got) = reader.next(0).unwrap().unwrap();
        assert_eq!(msg.name(), "Signal");
        assert!(got.is_empty());
        assert!(!poll_readable(reader.stream()));
        drop(client);
        assert!(reader.next(0).unwrap().is_none());
    }

    #[test]
    fn unexpected_descriptors_and_bad_frames_are_errors() {
        let (client, server) = UnixStream::pair().unwrap();
        let f = tempfile::tempfile().unwrap();
        let frame = Message::Signal {
            session: SESSION,
            signal: 1,
        }
        .encode()
        .unwrap();
        send_with_fds(&client, &frame, &[f.as_fd()]).unwrap();
        let err = Reader::new(server).next(0).unwrap_err();
        assert!(err.to_string().contains("1 descriptors where 0"), "{err}");
        let (client, server) = UnixStream::pair().unwrap();
        (&client).write_all(b"not a frame").unwrap();
        let err = Reader::new(server).next(0).unwrap_err();
        assert!(err.to_string().contains("bad frame magic"), "{err}");
    }
}
