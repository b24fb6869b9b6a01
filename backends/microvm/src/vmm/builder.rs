//! Assembling a VM: KVM objects, guest memory, kernel and boot structures, devices, vCPUs, and
//! the threads that run them.

use super::bootparams::{self, Initrd};
use super::control::{Control, ResetTrigger};
use super::cpuid::{self, CpuidPolicy};
use super::devices::{self, serial, PioBus};
use super::input::Input;
use super::layout::{self, KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS};
use super::loader::{self, LoadedKernel};
use super::regs::{self, BootEntry};
use super::vcpu::{self, Vcpu};
use super::{acpi, mptable, RunningVm, VmConfig};
use crate::error::{MicrovmError, Result};
use crate::host::{self, HostKind};
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use std::io::Write;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};
use vmm_sys_util::eventfd::EventFd;

/// The KVM objects and memory that must outlive the vCPU threads.
pub struct BuiltVm {
    // Field order is drop order: the VM goes before its memory is unmapped.
    _vm: VmFd,
    _kvm: Kvm,
    _memory: GuestMemoryMmap,
}

fn kvm_err(what: &str, e: kvm_ioctls::Error) -> MicrovmError {
    MicrovmError::Kvm {
        what: what.to_string(),
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> MicrovmError + '_ {
    move |e| MicrovmError::io(what, e)
}

fn open_kvm() -> Result<Kvm> {
    let kvm = Kvm::new()
        .map_err(|e| host::kvm_unavailable(&std::io::Error::from_raw_os_error(e.errno())))?;
    let version = kvm.get_api_version();
    if version != host::KVM_API_VERSION {
        return Err(MicrovmError::KvmUnavailable(format!(
            "/dev/kvm reports API version {version}, expected {}",
            host::KVM_API_VERSION
        )));
    }
    for (cap, name) in [
        (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
        (Cap::Pit2, "KVM_CAP_PIT2"),
        (Cap::Irqfd, "KVM_CAP_IRQFD"),
        (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(MicrovmError::KvmUnavailable(format!(
                "/dev/kvm lacks {name}"
            )));
        }
    }
    Ok(kvm)
}

fn create_vm(kvm: &Kvm, memory: &GuestMemoryMmap) -> Result<VmFd> {
    let vm = kvm.create_vm().map_err(|e| match e.errno() {
        libc::EBUSY | libc::EACCES | libc::ENOENT => {
            host::kvm_unavailable(&std::io::Error::from_raw_os_error(e.errno()))
        }
        _ => kvm_err("KVM_CREATE_VM", e),
    })?;
    for (slot, region) in memory.iter().enumerate() {
        let host_addr = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|e| {
                MicrovmError::Memory(format!("host address of guest region {slot}: {e}"))
            })?;
        let mem_region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host_addr as u64,
        };
        // SAFETY: the region is a live mapping of exactly `memory_size` bytes that outlives the
        // VM (BuiltVm drops the VM first).
        unsafe { vm.set_user_memory_region(mem_region) }
            .map_err(|e| kvm_err("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
        .map_err(|e| kvm_err("KVM_SET_IDENTITY_MAP_ADDR", e))?;
    vm.set_tss_address(KVM_TSS_ADDRESS as usize)
        .map_err(|e| kvm_err("KVM_SET_TSS_ADDR", e))?;
    vm.create_irq_chip()
        .map_err(|e| kvm_err("KVM_CREATE_IRQCHIP", e))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit)
        .map_err(|e| kvm_err("KVM_CREATE_PIT2", e))?;
    Ok(vm)
}

/// Kernel, initramfs, command line, zero page or PVH info, MP table, boot GDT/page tables.
fn load_guest(memory: &GuestMemoryMmap, cfg: &VmConfig) -> Result<BootEntry> {
    let mem_bytes = cfg.mem_mib << 20;
    let kernel: LoadedKernel = loader::load_kernel(memory, &cfg.kernel)?;
    let initrd: Option<Initrd> = match &cfg.initramfs {
        Some(p) => Some(loader::load_initramfs(memory, p, mem_bytes, &kernel)?),
        None => None,
    };
    let cmdline_len = loader::write_cmdline(memory, &cfg.cmdline)?;
    mptable::write(memory, cfg.vcpus)?;
    let rsdp = acpi::write(memory, cfg.vcpus)?;
    match kernel.entry {
        BootEntry::Pvh(_) => bootparams::write_pvh(memory, mem_bytes, initrd, rsdp)?,
        BootEntry::Linux64(_) | BootEntry::Linux32(_) => {
            let mut params =
                bootparams::zero_page(kernel.setup_header, mem_bytes, cmdline_len, initrd)?;
            params.acpi_rsdp_addr = rsdp;
            bootparams::write_zero_page(memory, &params)?;
        }
    }
    regs::write_boot_tables(memory, kernel.entry)?;
    Ok(kernel.entry)
}

fn cpuid_policy(kvm: &Kvm) -> CpuidPolicy {
    let mut policy = CpuidPolicy {
        tsc_deadline: kvm.check_extension(Cap::TscDeadlineTimer),
        hidden: Vec::new(),
    };
    // A nested PVM hypervisor fails to emulate these when a stock kernel uses them.
    if host::detect() == HostKind::NestedPvm {
        policy.hidden = vec![cpuid::CX16, cpuid::XSAVE];
    }
    policy
}

fn irqfd(vm: &VmFd, gsi: u32) -> Result<EventFd> {
    let evt = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
        .map_err(io_err("creating an irq eventfd"))?;
    vm.register_irqfd(&evt, gsi)
        .map_err(|e| kvm_err(&format!("KVM_IRQFD (GSI {gsi})"), e))?;
    Ok(evt)
}

fn clone_evt(e: &EventFd) -> Result<EventFd> {
    e.try_clone().map_err(io_err("duplicating an eventfd"))
}

pub fn start(cfg: VmConfig) -> Result<RunningVm> {
    if cfg.vcpus == 0 || cfg.vcpus > mptable::MAX_VCPUS {
        return Err(MicrovmError::Hypervisor {
            hypervisor: "built-in VMM".into(),
            reason: format!("vcpus {} is outside 1..={}", cfg.vcpus, mptable::MAX_VCPUS),
        });
    }
    let kvm = open_kvm()?;
    let memory = layout::create_guest_memory(cfg.mem_mib)?;
    let vm = create_vm(&kvm, &memory)?;
    let entry = load_guest(&memory, &cfg)?;

    let control = Arc::new(Control::new().map_err(io_err("creating the exit eventfd"))?);
    let stopping = control.stopping_flag();

    // Devices.
    let room1 = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
        .map_err(io_err("creating an eventfd"))?;
    let room2 = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
        .map_err(io_err("creating an eventfd"))?;
    let com1 = serial::new_uart(irqfd(&vm, devices::COM1_IRQ)?, room1, cfg.console);
    let (agent_out, agent_in): (Box<dyn Write + Send>, _) = match cfg.agent {
        Some(sock) => {
            let reader = sock
                .try_clone()
                .map_err(io_err("duplicating the agent socket"))?;
            (
                Box::new(serial::SocketWriter::new(sock, stopping)),
                Some(reader),
            )
        }
        None => (Box::new(std::io::sink()), None),
    };
    let com2 = Arc::new(Mutex::new(serial::new_uart(
        irqfd(&vm, devices::COM2_IRQ)?,
        clone_evt(&room2)?,
        agent_out,
    )));
    let i8042 = devices::I8042::new(
        ResetTrigger(control.clone()),
        irqfd(&vm, devices::I8042_IRQ)?,
    );
    let com2_ier = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
        .map_err(io_err("creating an eventfd"))?;
    let bus = Arc::new(PioBus {
        com1: Arc::new(Mutex::new(com1)),
        com2: com2.clone(),
        i8042: Arc::new(Mutex::new(i8042)),
        com2_ier: Some(clone_evt(&com2_ier)?),
    });

    // vCPUs.
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| kvm_err("KVM_GET_SUPPORTED_CPUID", e))?;
    let policy = cpuid_policy(&kvm);
    let halted = Arc::new(AtomicUsize::new(0));
    let mut vcpus = Vec::with_capacity(cfg.vcpus as usize);
    for id in 0..cfg.vcpus {
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(|e| kvm_err(&format!("KVM_CREATE_VCPU {id}"), e))?;
        let entries = cpuid::for_vcpu(supported.as_slice(), id, cfg.vcpus, &policy);
        let cpuid = CpuId::from_entries(&entries).map_err(|e| MicrovmError::Hypervisor {
            hypervisor: "built-in VMM".into(),
            reason: format!("CPUID for vCPU {id}: {e:?}"),
        })?;
        fd.set_cpuid2(&cpuid)
            .map_err(|e| kvm_err(&format!("KVM_SET_CPUID2 (vCPU {id})"), e))?;
        regs::setup_msrs(&fd, id)?;
        regs::setup_vcpu_regs(&fd, id, entry)?;
        regs::setup_lint(&fd, id)?;
        vcpus.push(Vcpu {
            id,
            fd,
            bus: bus.clone(),
            control: control.clone(),
            halted: halted.clone(),
            count: cfg.vcpus as usize,
        });
    }

    vcpu::install_kick_handler()?;
    let mut running = RunningVm {
        control: control.clone(),
        vcpus: Vec::new(),
        input: None,
        _vm: BuiltVm {
            _vm: vm,
            _kvm: kvm,
            _memory: memory,
        },
    };
    if let Some(socket) = agent_in {
        let stop = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
            .map_err(io_err("creating an eventfd"))?;
        let input = Input {
            uart: com2,
            socket,
            room: room2,
            ier: com2_ier,
            stop: clone_evt(&stop)?,
        };
        let h = std::thread::Builder::new()
            .name("isobox-vm-input".into())
            .spawn(move || input.run())
            .map_err(io_err("spawning the input thread"))?;
        running.input = Some((h, stop));
    }
    for v in vcpus {
        let control = control.clone();
        let id = v.id;
        let h = std::thread::Builder::new()
            .name(format!("isobox-vcpu{id}"))
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.run()));
                if r.is_err() {
                    control.finish(Err(MicrovmError::Hypervisor {
                        hypervisor: "built-in VMM".into(),
                        reason: format!("vCPU {id} thread panicked"),
                    }));
                }
            })
            .map_err(io_err("spawning a vCPU thread"))?;
        // On a spawn error `running` is dropped, which stops the threads already started.
        running.vcpus.push(h);
    }
    Ok(running)
}
