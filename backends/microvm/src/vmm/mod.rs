//! The built-in VMM on rust-vmm crates: a Firecracker-like x86_64 microVM with no firmware and
//! no PCI. It loads a kernel (ELF vmlinux with a PVH note, entered in 32-bit mode; other ELF
//! kernels through the Linux 64-bit boot protocol; bzImage through the 32-bit one), an optional
//! initramfs and a command line, and offers the guest two 8250 UARTs and an i8042:
//!
//! - ttyS0 (0x3f8, IRQ 4): the kernel console, written to [`VmConfig::console`];
//! - ttyS1 (0x2f8, IRQ 3): the agent channel, bridged to [`VmConfig::agent`];
//! - i8042 (0x60/0x64): `reboot=k` resets through it, which ends the VM.
//!
//! Interrupts come from KVM's in-kernel PIC/IOAPIC/LAPIC and PIT; an MP table and ACPI tables
//! (MADT) describe the vCPUs to the guest.
//!
//! On a nested PVM host (see [`crate::host`]) the VMM hides `cx16` and `xsave` in CPUID; that
//! host forces the XSAVE bit back on, so kernels there also need `noxsave` on their command
//! line.
//!
//! ```no_run
//! # fn main() -> isobox_microvm::error::Result<()> {
//! use isobox_microvm::vmm::{run, VmConfig};
//! let cfg = VmConfig::new("/boot/vmlinux", "console=ttyS0 reboot=k panic=-1", Box::new(std::io::stderr()));
//! let exit = run(cfg)?;
//! println!("guest ended: {exit:?}");
//! # Ok(()) }
//! ```

pub mod acpi;
pub mod bootparams;
mod builder;
mod control;
pub mod cpuid;
pub mod devices;
mod input;
pub mod layout;
pub mod loader;
pub mod mptable;
pub mod regs;
pub mod testguest;
mod vcpu;

pub use testguest::test_guest_elf;

use crate::error::{MicrovmError, Result};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use vmm_sys_util::eventfd::EventFd;

/// A command line that suits this VMM: console on ttyS0, reset through the i8042 on reboot or
/// panic, and an i8042 probe that does not look for a mouse.
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd";

/// Default guest memory.
pub const DEFAULT_MEM_MIB: u64 = 256;

/// What to boot and where its serial ports go.
pub struct VmConfig {
    /// Kernel image: ELF vmlinux (PVH note preferred) or bzImage.
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
    /// 1 ..= [`mptable::MAX_VCPUS`].
    pub vcpus: u8,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Receives everything the guest writes to ttyS0.
    pub console: Box<dyn Write + Send>,
    /// The VMM's end of a socket pair for ttyS1: guest output is written to it, bytes read from
    /// it become guest input. `None` leaves ttyS1 unconnected (output dropped).
    pub agent: Option<UnixStream>,
}

impl VmConfig {
    /// One vCPU, [`DEFAULT_MEM_MIB`], no initramfs, no agent channel.
    pub fn new(
        kernel: impl Into<PathBuf>,
        cmdline: impl Into<String>,
        console: Box<dyn Write + Send>,
    ) -> Self {
        VmConfig {
            kernel: kernel.into(),
            initramfs: None,
            cmdline: cmdline.into(),
            vcpus: 1,
            mem_mib: DEFAULT_MEM_MIB,
            console,
            agent: None,
        }
    }
}

impl std::fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmConfig")
            .field("kernel", &self.kernel)
            .field("initramfs", &self.initramfs)
            .field("cmdline", &self.cmdline)
            .field("vcpus", &self.vcpus)
            .field("mem_mib", &self.mem_mib)
            .field("agent", &self.agent.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine (i8042 command 0xfe, e.g. Linux `reboot=k`; or a KVM reset
    /// event). A microVM does not reboot: this is how a guest says "done".
    Reset,
    /// A triple fault (KVM_EXIT_SHUTDOWN), e.g. Linux `reboot=t`.
    TripleFault,
    /// The guest powered off (KVM system event).
    PowerOff,
    /// KVM reported a guest crash event.
    Crashed,
    /// Every vCPU halted with nothing left to wake it.
    Halted,
    /// The host stopped it through [`VmHandle::stop`].
    Stopped,
}

/// Stops a running VM from any thread.
#[derive(Clone)]
pub struct VmHandle(Arc<control::Control>);

impl VmHandle {
    /// Ends the VM; [`RunningVm::wait`] then returns [`VmExit::Stopped`] (unless the guest
    /// ended first).
    pub fn stop(&self) {
        self.0.finish(Ok(VmExit::Stopped));
    }

    /// How many port I/O exits the vCPUs have made: it stays still while the guest neither
    /// prints nor talks to the agent (a hang, or an idle guest).
    pub fn progress(&self) -> u64 {
        self.0.io_exits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One line per running vCPU: run state and registers, taken by the vCPU thread itself
    /// after a kick (waits up to a second for the answers).
    pub fn dump_vcpus(&self) -> Vec<String> {
        self.0
            .dump_vcpus(vcpu::kick_signal(), std::time::Duration::from_secs(1))
    }
}

/// A started VM: its vCPU threads run until the guest ends or the VM is stopped. Dropping it
/// stops it.
pub struct RunningVm {
    control: Arc<control::Control>,
    vcpus: Vec<JoinHandle<()>>,
    input: Option<(JoinHandle<()>, EventFd)>,
    // Kept alive (and dropped last) while vCPUs run.
    _vm: builder::BuiltVm,
}

impl RunningVm {
    pub fn handle(&self) -> VmHandle {
        VmHandle(self.control.clone())
    }

    /// Blocks until the VM ends, then stops and joins every thread.
    pub fn wait(mut self) -> Result<VmExit> {
        loop {
            match self.control.exit_evt.read() {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.control
                        .finish(Err(MicrovmError::io("waiting for the VM to end", e)));
                    break;
                }
            }
        }
        let panicked = self.shutdown();
        match self.control.take_outcome() {
            Some(outcome) => outcome,
            None if panicked => Err(MicrovmError::Hypervisor {
                hypervisor: "built-in VMM".into(),
                reason: "a vCPU thread panicked".into(),
            }),
            None => Ok(VmExit::Stopped),
        }
    }

    /// Stops all threads; true if one of them had panicked.
    fn shutdown(&mut self) -> bool {
        self.control.finish(Ok(VmExit::Stopped));
        let mut panicked = false;
        for h in self.vcpus.drain(..) {
            panicked |= vcpu::stop_and_join(h).is_err();
        }
        if let Some((h, stop)) = self.input.take() {
            let _ = stop.write(1);
            panicked |= h.join().is_err();
        }
        panicked
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Builds the VM and starts its vCPUs. Every setup error is returned here, before any guest
/// code runs; nothing is left behind on error.
pub fn start(cfg: VmConfig) -> Result<RunningVm> {
    builder::start(cfg)
}

/// Boots the VM and blocks until the guest resets, shuts down, or fails.
pub fn run(cfg: VmConfig) -> Result<VmExit> {
    start(cfg)?.wait()
}
