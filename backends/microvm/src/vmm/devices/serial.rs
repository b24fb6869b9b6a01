//! The 8250/16550A UART model of vm-superio, wired to KVM: its interrupt is an irqfd, its
//! "receive FIFO drained" event wakes the input thread, and its output goes to a `Write`.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Raises the UART's interrupt line through an irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Signals the input thread when the guest has emptied the receive FIFO.
pub struct RoomEvent(pub EventFd);

impl SerialEvents for RoomEvent {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        let _ = self.0.write(1);
    }
}

pub type Uart = Serial<IrqTrigger, RoomEvent, Box<dyn Write + Send>>;

/// Bytes the guest writes to the agent UART, sent to the VMM's end of the socket pair.
///
/// It never blocks indefinitely: when the peer does not read, it waits in short polls and gives
/// up once the VM is stopping, so a stop always reaches the vCPU thread.
pub struct SocketWriter {
    stream: UnixStream,
    stopping: Arc<AtomicBool>,
}

impl SocketWriter {
    pub fn new(stream: UnixStream, stopping: Arc<AtomicBool>) -> Self {
        SocketWriter { stream, stopping }
    }
}

impl Write for SocketWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use nix::sys::socket::{send, MsgFlags};
        let fd = self.stream.as_raw_fd();
        loop {
            match send(fd, buf, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {
                    if self.stopping.load(Ordering::Acquire) {
                        // Not `Interrupted`: `write_all` would retry that forever.
                        return Err(io::Error::other("VM stopping"));
                    }
                    let mut pfd = [nix::poll::PollFd::new(
                        std::os::fd::AsFd::as_fd(&self.stream),
                        nix::poll::PollFlags::POLLOUT,
                    )];
                    let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(50u16));
                }
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Creates a UART whose interrupt fires `irq` and whose output goes to `out`.
pub fn new_uart(irq: EventFd, room: EventFd, out: Box<dyn Write + Send>) -> Uart {
    Serial::with_events(IrqTrigger(irq), RoomEvent(room), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn guest_bytes_reach_the_socket_and_irq_fires() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let room = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut uart = new_uart(
            irq.try_clone().unwrap(),
            room.try_clone().unwrap(),
            Box::new(SocketWriter::new(ours, stop)),
        );
        uart.write(1, 0x02).unwrap(); // IER: THR empty interrupt
        uart.write(0, b'A').unwrap();
        let mut b = [0u8; 1];
        theirs.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"A");
        assert!(irq.read().unwrap() >= 1);
        // Input: enqueue, the guest reads it, the FIFO drains and signals room.
        uart.enqueue_raw_bytes(b"xy").unwrap();
        assert_eq!(uart.read(0), b'x');
        assert_eq!(uart.read(0), b'y');
        assert_eq!(room.read().unwrap(), 1);
    }

    #[test]
    fn writer_gives_up_when_stopping_and_peer_does_not_read() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = SocketWriter::new(ours, stop.clone());
        let chunk = vec![0u8; 65536];
        // Fill the socket buffer.
        while let Ok(n) = nix::sys::socket::send(
            w.stream.as_raw_fd(),
            &chunk,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            assert!(n > 0);
        }
        stop.store(true, Ordering::Release);
        assert!(w.write(b"z").is_err());
    }
}
