//! Legacy port-I/O devices: two 8250 UARTs and an i8042, and the dispatch of vCPU port
//! accesses to them. Everything else on the port bus reads as 0xff and ignores writes.

pub mod i8042;
pub mod serial;

use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

pub use serial::Uart;

/// The i8042 whose reset ends the VM.
pub type I8042 = i8042::I8042<super::control::ResetTrigger>;

pub const COM1_BASE: u16 = 0x3f8;
pub const COM2_BASE: u16 = 0x2f8;
pub const COM1_IRQ: u32 = 4;
pub const COM2_IRQ: u32 = 3;
pub const I8042_BASE: u16 = 0x60;
pub const I8042_IRQ: u32 = 1;
const UART_PORTS: u16 = 8;
const IER_OFFSET: u8 = 1;
const I8042_PORTS: u16 = 5;

/// The devices reachable by `in`/`out`.
pub struct PioBus {
    pub com1: Arc<Mutex<Uart>>,
    pub com2: Arc<Mutex<Uart>>,
    pub i8042: Arc<Mutex<I8042>>,
    /// Written when the guest sets COM2's interrupt enables, so that the input thread watches
    /// the line of a guest that starts to send.
    pub com2_ier: Option<EventFd>,
}

enum Target<'a> {
    Uart(&'a Mutex<Uart>, u8),
    I8042(u8),
    None,
}

impl PioBus {
    fn target(&self, port: u16) -> Target<'_> {
        if (COM1_BASE..COM1_BASE + UART_PORTS).contains(&port) {
            Target::Uart(&self.com1, (port - COM1_BASE) as u8)
        } else if (COM2_BASE..COM2_BASE + UART_PORTS).contains(&port) {
            Target::Uart(&self.com2, (port - COM2_BASE) as u8)
        } else if (I8042_BASE..I8042_BASE + I8042_PORTS).contains(&port) {
            Target::I8042((port - I8042_BASE) as u8)
        } else {
            Target::None
        }
    }

    /// An `in` from `port`: byte-wide device registers, 0xff for anything else.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        if data.len() != 1 {
            return;
        }
        data[0] = match self.target(port) {
            Target::Uart(u, off) => lock(u).read(off),
            Target::I8042(off) => lock(&self.i8042).read(off),
            Target::None => 0xff,
        };
    }

    /// An `out` to `port`. Device errors (a full or closed sink) drop the byte: a guest must
    /// never stall on its console.
    pub fn write(&self, port: u16, data: &[u8]) {
        if data.len() != 1 {
            return;
        }
        match self.target(port) {
            Target::Uart(u, off) => {
                let _ = lock(u).write(off, data[0]);
                if off == IER_OFFSET && port == COM2_BASE + u16::from(IER_OFFSET) {
                    if let Some(kick) = &self.com2_ier {
                        let _ = kick.write(1);
                    }
                }
            }
            Target::I8042(off) => lock(&self.i8042).write(off, data[0]),
            Target::None => {}
        }
    }
}

impl PioBus {
    /// The agent UART's registers and receive FIFO, for a hung VM's report.
    pub fn describe_agent_uart(&self) -> String {
        let u = lock(&self.com2);
        let st = u.state();
        format!(
            "ier={:#x} iir={:#x} lsr={:#x} fifo={} {:?}",
            st.interrupt_enable,
            st.interrupt_identification,
            st.line_status,
            st.in_buffer.len(),
            serial::Line::of(&u)
        )
    }
}

/// Locks a device even if another vCPU thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
