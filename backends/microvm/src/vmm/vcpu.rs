//! vCPU threads: each runs KVM_RUN in a loop, hands port I/O to the device bus and turns the
//! exits that end a VM (reset, triple fault, system events, errors) into the VM's outcome.
//!
//! To stop, the owner sets the "stopping" flag and sends the kick signal until the thread is
//! gone: the signal makes a blocked KVM_RUN return EINTR, after which the flag is seen.

use super::control::Control;
use super::devices::PioBus;
use super::VmExit;
use crate::error::MicrovmError;
use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;
use vmm_sys_util::signal::{register_signal_handler, unblock_signal, Killable, SIGRTMIN};

/// Offset of the kick signal from SIGRTMIN.
const KICK_SIGNAL_OFFSET: i32 = 4;

pub fn kick_signal() -> i32 {
    SIGRTMIN() + KICK_SIGNAL_OFFSET
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) kick handler once per process; without SA_RESTART, so KVM_RUN returns.
pub fn install_kick_handler() -> Result<(), MicrovmError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        if let Err(e) = register_signal_handler(kick_signal(), on_kick) {
            result = Err(MicrovmError::io(
                "installing the vCPU kick signal handler",
                std::io::Error::from_raw_os_error(e.errno()),
            ));
        }
    });
    result
}

/// Everything a vCPU thread owns.
pub struct Vcpu {
    pub id: u8,
    pub fd: VcpuFd,
    pub bus: Arc<PioBus>,
    pub control: Arc<Control>,
    /// vCPUs that have halted for good (HLT exits reach user space only without a usable
    /// interrupt source); when all have, the VM is over.
    pub halted: Arc<AtomicUsize>,
    pub count: usize,
}

/// The local APIC's in-service and interrupt-request registers: 8 words of 32 vectors each,
/// 16 bytes apart.
const LAPIC_ISR: usize = 0x100;
const LAPIC_IRR: usize = 0x200;

/// The vectors set in the 256-bit APIC register at `base` of a KVM_GET_LAPIC page.
fn lapic_vectors(page: &[u8], base: usize) -> Vec<u32> {
    let mut set = Vec::new();
    for word in 0..8u32 {
        let at = base + word as usize * 0x10;
        let Some(b) = page.get(at..at + 4) else { break };
        let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        set.extend(
            (0..32)
                .filter(|i| bits & (1 << i) != 0)
                .map(|i| word * 32 + i),
        );
    }
    set
}

fn hv_error(reason: String) -> MicrovmError {
    MicrovmError::Hypervisor {
        hypervisor: "built-in VMM".into(),
        reason,
    }
}

impl Vcpu {
    fn rip(&self) -> String {
        match self.fd.get_regs() {
            Ok(r) => format!("rip {:#x}", r.rip),
            Err(_) => "rip unknown".into(),
        }
    }

    /// One line for the watchdog: run state, general and control registers.
    fn describe(&self) -> String {
        let mp = match self.fd.get_mp_state() {
            Ok(m) => match m.mp_state {
                kvm_bindings::KVM_MP_STATE_RUNNABLE => "runnable".to_string(),
                kvm_bindings::KVM_MP_STATE_HALTED => "halted".to_string(),
                kvm_bindings::KVM_MP_STATE_UNINITIALIZED => "waiting for INIT".to_string(),
                kvm_bindings::KVM_MP_STATE_INIT_RECEIVED => "INIT received".to_string(),
                other => format!("mp_state {other}"),
            },
            Err(e) => format!("mp_state: {e}"),
        };
        let regs = match self.fd.get_regs() {
            Ok(r) => format!(
                "rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x}",
                r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx
            ),
            Err(e) => format!("regs: {e}"),
        };
        let sregs = match self.fd.get_sregs() {
            Ok(s) => format!(
                "cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}",
                s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.selector
            ),
            Err(e) => format!("sregs: {e}"),
        };
        let apic = match self.fd.get_lapic() {
            Ok(l) => {
                let bytes: Vec<u8> = l.regs.iter().map(|b| *b as u8).collect();
                format!(
                    "lapic isr={:?} irr={:?}",
                    lapic_vectors(&bytes, LAPIC_ISR),
                    lapic_vectors(&bytes, LAPIC_IRR)
                )
            }
            Err(e) => format!("lapic: {e}"),
        };
        let events = match self.fd.get_vcpu_events() {
            Ok(ev) => format!(
                "irq injected={} nr={:#x} shadow={}",
                ev.interrupt.injected, ev.interrupt.nr, ev.interrupt.shadow
            ),
            Err(e) => format!("events: {e}"),
        };
        let mut line = format!("vCPU {}: {mp} {regs} {sregs} {apic} {events}", self.id);
        if self.id == 0 {
            line += &format!("; agent UART {}", self.bus.describe_agent_uart());
        }
        line
    }

    /// Runs until the VM stops; records the outcome if this vCPU ends the VM.
    pub fn run(self) {
        /// Deregisters the thread however `run_loop` ends, unwinding included.
        struct Registered<'a>(&'a Control, u8);
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                self.0.deregister_vcpu(self.1);
            }
        }
        let control = self.control.clone();
        control.register_vcpu(self.id);
        let _registered = Registered(&control, self.id);
        self.run_loop();
    }

    fn run_loop(mut self) {
        let _ = unblock_signal(kick_signal());
        let mut dumped = self.control.dump_generation();
        while !self.control.is_stopping() {
            // A dump request kicks the thread out of KVM_RUN; answer it before going back.
            let wanted = self.control.dump_generation();
            if wanted != dumped {
                dumped = wanted;
                self.control.record_dump(wanted, self.id, self.describe());
            }
            let exit = match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.control.io_exits.fetch_add(1, Ordering::Relaxed);
                    self.bus.read(port, data);
                    continue;
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    self.control.io_exits.fetch_add(1, Ordering::Relaxed);
                    self.bus.write(port, data);
                    continue;
                }
                Ok(VcpuExit::MmioRead(_, data)) => {
                    data.fill(0xff);
                    continue;
                }
                Ok(VcpuExit::MmioWrite(..)) | Ok(VcpuExit::Intr) | Ok(VcpuExit::IrqWindowOpen) => {
                    continue
                }
                Ok(VcpuExit::Hlt) => {
                    if self.halted.fetch_add(1, Ordering::AcqRel) + 1 == self.count {
                        Some(Ok(VmExit::Halted))
                    } else {
                        return;
                    }
                }
                Ok(VcpuExit::Shutdown) => Some(Ok(VmExit::TripleFault)),
                Ok(VcpuExit::SystemEvent(kind, _)) => Some(match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => Ok(VmExit::PowerOff),
                    KVM_SYSTEM_EVENT_RESET => Ok(VmExit::Reset),
                    KVM_SYSTEM_EVENT_CRASH => Ok(VmExit::Crashed),
                    other => Err(hv_error(format!(
                        "vCPU {}: unexpected system event {other}",
                        self.id
                    ))),
                }),
                Ok(VcpuExit::InternalError) => {
                    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the
                    // active member of the union.
                    let suberror =
                        unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    Some(Err(hv_error(format!(
                        "vCPU {}: KVM internal error, suberror {suberror}{} at {}",
                        self.id,
                        if suberror == 1 {
                            " (instruction emulation failed)"
                        } else {
                            ""
                        },
                        self.rip()
                    ))))
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => Some(Err(hv_error(format!(
                    "vCPU {}: VM entry failed, hardware reason {reason:#x} on host CPU {cpu}",
                    self.id
                )))),
                Ok(other) => {
                    let what = format!("{other:?}");
                    Some(Err(hv_error(format!(
                        "vCPU {}: unhandled exit {what} at {}",
                        self.id,
                        self.rip()
                    ))))
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => Some(Err(MicrovmError::Kvm {
                    what: format!("KVM_RUN (vCPU {})", self.id),
                    source: std::io::Error::from_raw_os_error(e.errno()),
                })),
            };
            if let Some(outcome) = exit {
                self.control.finish(outcome);
                return;
            }
        }
    }
}

/// Kicks a vCPU thread until it has left KVM_RUN and ended, then joins it.
pub fn stop_and_join(handle: JoinHandle<()>) -> std::thread::Result<()> {
    while !handle.is_finished() {
        let _ = handle.kill(kick_signal());
        std::thread::sleep(Duration::from_micros(500));
    }
    handle.join()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_vectors_reads_each_word_of_the_register() {
        let mut page = vec![0u8; 1024];
        // Vector 0x24 (IRQ 4 under Linux's legacy map): word 1, bit 4.
        page[LAPIC_ISR + 0x10] = 1 << 4;
        // Vectors 0xec and 0xef: word 7, bits 12 and 15.
        page[LAPIC_IRR + 0x70 + 1] = (1 << 4) | (1 << 7);
        assert_eq!(lapic_vectors(&page, LAPIC_ISR), [0x24]);
        assert_eq!(lapic_vectors(&page, LAPIC_IRR), [0xec, 0xef]);
        assert!(lapic_vectors(&page[..0x180], LAPIC_IRR).is_empty());
    }
}
