//! The input thread: bytes the host writes to its end of the agent socket are queued into the
//! agent UART's receive FIFO (which raises the guest interrupt). When the FIFO is full the socket
//! is left alone until the guest drains it, so nothing is dropped.

use super::devices::{lock, Uart};
use nix::sys::socket::{recv, MsgFlags};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

const TOKEN_STOP: u64 = 0;
const TOKEN_SOCKET: u64 = 1;
const TOKEN_ROOM: u64 = 2;

pub struct Input {
    pub uart: Arc<Mutex<Uart>>,
    pub socket: UnixStream,
    /// Written by the UART when the guest emptied the receive FIFO.
    pub room: EventFd,
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
            || self.arm(&epoll, true).is_err()
        {
            return;
        }
        let mut armed = true;
        let mut eof = false;
        let mut events = [EpollEvent::default(); 4];
        let mut buf = [0u8; 64];
        loop {
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_STOP => return,
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
        }
    }
}
