//! The 8250/16550A UART model of vm-superio, wired to KVM: its interrupt is an irqfd, its
//! "receive FIFO drained" event wakes the input thread, and its output goes to a `Write`.
//!
//! vm-superio raises the interrupt as one edge per event, where a real 8250 holds its line
//! asserted while an enabled condition is pending. A lost edge (seen under nested
//! virtualization) then stalls the line for good, so the input thread watches for an interrupt
//! left unserved and raises it again (`Line`).

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Signals the input thread when the guest has emptied the receive FIFO, and counts the bytes
/// the guest reads and writes, which is how the line keeper tells a busy guest from a stalled one.
pub struct RoomEvent {
    room: EventFd,
    progress: AtomicU64,
}

impl RoomEvent {
    pub fn new(room: EventFd) -> Self {
        RoomEvent {
            room,
            progress: AtomicU64::new(0),
        }
    }
}

impl SerialEvents for RoomEvent {
    fn buffer_read(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
    fn out_byte(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
    fn tx_lost_byte(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
    fn in_buffer_empty(&self) {
        let _ = self.room.write(1);
    }
}

const IER_RDA: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IIR_THRI: u8 = 0x02;

/// What the line keeper sees of a UART at one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// Received bytes wait in the FIFO with the receive interrupt enabled.
    rx_waiting: bool,
    /// The transmit interrupt was raised and the guest has not read IIR since.
    tx_waiting: bool,
    /// The guest has the transmit interrupt enabled: it has bytes to send.
    tx_enabled: bool,
    progress: u64,
}

impl Line {
    pub fn of(uart: &Uart) -> Line {
        let st = uart.state();
        let tx_enabled = st.interrupt_enable & IER_THRI != 0;
        Line {
            rx_waiting: st.interrupt_enable & IER_RDA != 0 && !st.in_buffer.is_empty(),
            tx_waiting: tx_enabled && st.interrupt_identification & IIR_THRI != 0,
            tx_enabled,
            progress: uart.events().progress.load(Ordering::Relaxed),
        }
    }

    /// Whether an interrupt may be raised and unserved, so the keeper should look again soon.
    pub fn worth_watching(&self) -> bool {
        self.rx_waiting || self.tx_enabled
    }

    /// Whether an interrupt pending at the `earlier` look is still pending now and the guest has
    /// moved no byte in between: its edge was lost and must be raised again.
    pub fn stalled_since(&self, earlier: &Line) -> bool {
        self.progress == earlier.progress
            && ((earlier.rx_waiting && self.rx_waiting) || (earlier.tx_waiting && self.tx_waiting))
    }
}

/// Raises the UART's interrupt again, as a level-triggered line would still be asserted.
pub fn reassert(uart: &Uart) -> io::Result<()> {
    uart.interrupt_evt().trigger()
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
    Serial::with_events(IrqTrigger(irq), RoomEvent::new(room), out)
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

    fn sink_uart() -> (Uart, EventFd) {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let room = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let uart = new_uart(irq.try_clone().unwrap(), room, Box::new(io::sink()));
        (uart, irq)
    }

    #[test]
    fn unread_input_with_no_guest_progress_is_a_stalled_line() {
        let (mut uart, irq) = sink_uart();
        uart.write(1, IER_RDA).unwrap();
        let idle = Line::of(&uart);
        assert!(!idle.worth_watching());
        uart.enqueue_raw_bytes(b"ab").unwrap();
        assert_eq!(irq.read().unwrap(), 1);
        let first = Line::of(&uart);
        assert!(first.worth_watching());
        // The edge was lost: nothing moved by the next look.
        let second = Line::of(&uart);
        assert!(second.stalled_since(&first));
        reassert(&uart).unwrap();
        assert_eq!(irq.read().unwrap(), 1);
        // The guest reads one byte: it is being served, not stalled.
        uart.read(0);
        let third = Line::of(&uart);
        assert!(!third.stalled_since(&second));
        uart.read(0);
        assert!(!Line::of(&uart).worth_watching());
    }

    #[test]
    fn an_unacknowledged_transmit_interrupt_is_a_stalled_line() {
        let (mut uart, irq) = sink_uart();
        // The guest enables THRI to send: the model raises the interrupt once.
        uart.write(1, IER_THRI).unwrap();
        assert_eq!(irq.read().unwrap(), 1);
        let first = Line::of(&uart);
        assert!(first.worth_watching());
        assert!(Line::of(&uart).stalled_since(&first));
        // The guest acknowledges (reads IIR) and writes: served.
        uart.read(2);
        let acked = Line::of(&uart);
        assert!(!acked.stalled_since(&first));
        uart.write(0, b'x').unwrap();
        let sent = Line::of(&uart);
        assert!(!sent.stalled_since(&acked));
        // Done sending: THRI off, nothing left to watch.
        uart.write(1, 0).unwrap();
        assert!(!Line::of(&uart).worth_watching());
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
