//! A minimal i8042 keyboard controller: enough for Linux to probe it without timeouts, and a
//! CPU reset (command 0xfe on port 0x64, what `reboot=k` does) that ends the VM. The reset
//! itself goes through vm-superio's i8042 model.

use std::collections::VecDeque;
use vm_superio::{I8042Device, Trigger};
use vmm_sys_util::eventfd::EventFd;

const DATA: u8 = 0;
const COMMAND: u8 = 4;

const SB_OUT_FULL: u8 = 0x01;
const SB_SYS_FLAG: u8 = 0x04;
const SB_CMD_DATA: u8 = 0x08;
const SB_KBD_ENABLED: u8 = 0x10;

const CB_KBD_INT: u8 = 0x01;
const CB_POST_OK: u8 = 0x04;
const CB_TRANSLATE: u8 = 0x40;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_READ_OUTP: u8 = 0xd0;
const CMD_WRITE_OUTP: u8 = 0xd1;
const CMD_WRITE_AUX: u8 = 0xd4;
pub const CMD_RESET_CPU: u8 = 0xfe;

const KBD_ACK: u8 = 0xfa;
const KBD_RESET: u8 = 0xff;
const KBD_SELF_TEST_OK: u8 = 0xaa;
const KBD_GET_ID: u8 = 0xf2;

/// The controller. `reset` runs when the guest asks for a CPU reset; `irq` raises IRQ1 when
/// the keyboard answers a command.
pub struct I8042<R: Trigger> {
    reset: I8042Device<R>,
    irq: EventFd,
    status: u8,
    ctr: u8,
    outp: u8,
    out: VecDeque<u8>,
    pending: Option<u8>,
}

impl<R: Trigger> I8042<R> {
    pub fn new(reset: R, irq: EventFd) -> Self {
        I8042 {
            reset: I8042Device::new(reset),
            irq,
            status: SB_SYS_FLAG | SB_KBD_ENABLED,
            ctr: CB_KBD_INT | CB_POST_OK | CB_TRANSLATE,
            outp: 0x01,
            out: VecDeque::new(),
            pending: None,
        }
    }

    fn push(&mut self, byte: u8) {
        self.out.push_back(byte);
    }

    fn push_kbd(&mut self, bytes: &[u8]) {
        self.out.extend(bytes);
        if self.ctr & CB_KBD_INT != 0 {
            let _ = self.irq.write(1);
        }
    }

    pub fn read(&mut self, offset: u8) -> u8 {
        match offset {
            DATA => {
                let b = self.out.pop_front().unwrap_or(0);
                if !self.out.is_empty() && self.ctr & CB_KBD_INT != 0 {
                    let _ = self.irq.write(1);
                }
                b
            }
            COMMAND => {
                let full = if self.out.is_empty() { 0 } else { SB_OUT_FULL };
                self.status | full
            }
            _ => 0xff,
        }
    }

    pub fn write(&mut self, offset: u8, value: u8) {
        match offset {
            COMMAND => {
                self.status |= SB_CMD_DATA;
                match value {
                    CMD_READ_CTR => self.push(self.ctr),
                    CMD_WRITE_CTR | CMD_WRITE_OUTP | CMD_WRITE_AUX => self.pending = Some(value),
                    CMD_SELF_TEST => self.push(0x55),
                    CMD_KBD_TEST => self.push(0x00),
                    // No mouse behind this controller.
                    CMD_AUX_TEST => self.push(0xff),
                    CMD_READ_OUTP => self.push(self.outp),
                    CMD_RESET_CPU => {
                        let _ = self.reset.write(COMMAND, CMD_RESET_CPU);
                    }
                    _ => {}
                }
            }
            DATA => {
                self.status &= !SB_CMD_DATA;
                match self.pending.take() {
                    Some(CMD_WRITE_CTR) => self.ctr = value,
                    Some(CMD_WRITE_OUTP) => self.outp = value,
                    Some(_) => {}
                    // A byte for the keyboard: acknowledge it like an AT keyboard would.
                    None => match value {
                        KBD_RESET => self.push_kbd(&[KBD_ACK, KBD_SELF_TEST_OK]),
                        KBD_GET_ID => self.push_kbd(&[KBD_ACK, 0xab, 0x83]),
                        _ => self.push_kbd(&[KBD_ACK]),
                    },
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Flag<'a>(&'a Cell<u32>);
    impl Trigger for Flag<'_> {
        type E = ();
        fn trigger(&self) -> Result<(), ()> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    #[test]
    fn probe_sequence_and_reset() {
        let resets = Cell::new(0);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut k = I8042::new(Flag(&resets), irq.try_clone().unwrap());
        assert_eq!(k.read(COMMAND) & SB_OUT_FULL, 0);
        k.write(COMMAND, CMD_SELF_TEST);
        assert_eq!(k.read(COMMAND) & SB_OUT_FULL, SB_OUT_FULL);
        assert_eq!(k.read(DATA), 0x55);
        k.write(COMMAND, CMD_READ_CTR);
        let ctr = k.read(DATA);
        assert_eq!(ctr & CB_KBD_INT, CB_KBD_INT);
        k.write(COMMAND, CMD_WRITE_CTR);
        k.write(DATA, 0x30);
        k.write(COMMAND, CMD_READ_CTR);
        assert_eq!(k.read(DATA), 0x30);
        // Keyboard interrupt disabled now: an ACK arrives without IRQ.
        k.write(DATA, 0xf4);
        assert_eq!(k.read(DATA), KBD_ACK);
        assert!(irq.read().is_err());
        assert_eq!(resets.get(), 0);
        k.write(COMMAND, CMD_RESET_CPU);
        assert_eq!(resets.get(), 1);
        assert_eq!(k.read(2), 0xff);
    }
}
