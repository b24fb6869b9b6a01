//! The input thread: bytes the host writes to its end of the agent socket are queued into the
//! agent UART's receive FIFO (which raises the guest interrupt). When the FIFO is full the socket
//! is left alone until the guest drains it, so nothing is dropped.
//!
//! The thread also keeps the UART's interrupt line: while an interrupt may be pending it looks
//! every `LOOK` and raises again one the guest has left unserved since the previous look.

use super::devices::serial::{self, Line};
use super::devices::{lock, Uart};
use nix::sys::socket::{recv, MsgFlags};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

const TOKEN_STOP: u64 = 0;
const TOKEN_SOCKET: u64 = 1;
const TOKEN_ROOM: u64 = 2;
const TOKEN_IER: u64 = 3;

/// How long an interrupt may stay unserved, with the guest moving no byte, before it is raised
/// again. A guest busy elsewhere for longer gets one spurious interrupt, which 8250 drivers
/// ignore.
const LOOK: Duration = Duration::from_millis(50);

pub struct Input {
    pub uart: Arc<Mutex<Uart>>,
    pub socket: UnixStream,
    /// Written by the UART when the guest emptied the receive FIFO.
    pub room: EventFd,
    /// Written by the vCPU when the guest set the UART's interrupt enables.
    pub ier: EventFd,
    /// Written by the owner to end the thread.
    pub stop: EventFd,
}

impl Input {
    fn arm(&self, epoll: &Epoll, on: bool) -> std::io::Result<()> {
        let fd = self.socket.as_raw_fd();
        if on {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, TOKEN_SOCKET),
            )
        } else {
            epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default())
        }
    }

    /// Runs until `stop` is written. Errors end only the input direction, never the VM.
    pub fn run(self) {
        let Ok(epoll) = Epoll::new() else { return };
        let add = |fd, token| {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )
        };
        if add(self.stop.as_raw_fd(), TOKEN_STOP).is_err()
            || add(self.room.as_raw_fd(), TOKEN_ROOM).is_err()
            || add(self.ier.as_raw_fd(), TOKEN_IER).is_err()
            || self.arm(&epoll, true).is_err()
        {
            return;
        }
        let mut armed = true;
        let mut eof = false;
        let mut events = [EpollEvent::default(); 4];
        let mut buf = [0u8; 64];
        // The last look at the line, and when the next is due.
        let mut looked: Option<(Line, Instant)> = None;
        loop {
            let timeout = match looked {
                Some((_, at)) => {
                    let due = (at + LOOK).saturating_duration_since(Instant::now());
                    i32::try_from(due.as_millis()).unwrap_or(i32::MAX)
                }
                None => -1,
            };
            let n = match epoll.wait(timeout, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_STOP => return,
                    TOKEN_IER => {
                        let _ = self.ier.read();
                    }
                    TOKEN_ROOM => {
                        let _ = self.room.read();
                        if !armed && !eof && self.arm(&epoll, true).is_ok() {
                            armed = true;
                        }
                    }
                    TOKEN_SOCKET => {
                        let mut uart = lock(&self.uart);
                        let room = uart.fifo_capacity().min(buf.len());
                        if room == 0 {
                            drop(uart);
                            if self.arm(&epoll, false).is_ok() {
                                armed = false;
                            }
                            continue;
                        }
                        match recv(
                            self.socket.as_raw_fd(),
                            &mut buf[..room],
                            MsgFlags::MSG_DONTWAIT,
                        ) {
                            Ok(0) | Err(nix::errno::Errno::ECONNRESET) => {
                                drop(uart);
                                eof = true;
                                if self.arm(&epoll, false).is_ok() {
                                    armed = false;
                                }
                            }
                            Ok(n) => {
                                let _ = uart.enqueue_raw_bytes(&buf[..n]);
                            }
                            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                            Err(_) => {
                                drop(uart);
                                eof = true;
                                if self.arm(&epoll, false).is_ok() {
                                    armed = false;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            looked = self.look(looked);
        }
    }

    /// Looks at the line when a look is due (or none is scheduled), raises an interrupt left
    /// unserved since the previous look, and schedules the next look while one may be pending.
    fn look(&self, looked: Option<(Line, Instant)>) -> Option<(Line, Instant)> {
        let now = Instant::now();
        if let Some((_, at)) = looked {
            if now < at + LOOK {
                return looked;
            }
        }
        let uart = lock(&self.uart);
        let line = Line::of(&uart);
        if let Some((earlier, _)) = looked {
            if line.stalled_since(&earlier) {
                let _ = serial::reassert(&uart);
            }
        }
        line.worth_watching().then_some((line, now))
    }
}
