//! Boot state of a vCPU: GDT, identity page tables, segment/control registers for the PVH
//! (32-bit protected mode, paging off) or the Linux 64-bit entry, FPU, boot MSRs and the LAPIC
//! local interrupt lines.

use super::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
    PVH_INFO_START, ZERO_PAGE_START,
};
use crate::error::{MicrovmError, Result};
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// How the kernel is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootEntry {
    /// PVH: 32-bit protected mode, paging off, `%ebx` = `hvm_start_info`.
    Pvh(u64),
    /// Linux 64-bit boot protocol: long mode, identity-mapped, `%rsi` = zero page.
    Linux64(u64),
    /// Linux 32-bit boot protocol (a bzImage's `code32_start`): protected mode, paging off,
    /// `%esi` = zero page. The kernel's own 32-bit code builds its page tables, which avoids
    /// relying on page faults early on.
    Linux32(u64),
}

impl BootEntry {
    pub fn address(&self) -> u64 {
        match *self {
            BootEntry::Pvh(a) | BootEntry::Linux64(a) | BootEntry::Linux32(a) => a,
        }
    }
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// GDT flag words (access byte + flags nibble), as in the kernel's GDT_ENTRY macros.
const CODE64: u16 = 0xa09b;
const CODE32: u16 = 0xc09b;
const DATA: u16 = 0xc093;
const TSS64: u16 = 0x808b;
const TSS32: u16 = 0x008b;

/// A GDT descriptor from flags, base and limit.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

/// The KVM segment register a descriptor loads.
pub fn segment_from_gdt(entry: u64, index: u16) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit,
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// GDT slots: the Linux boot protocol wants code at selector 0x10 and data at 0x18.
pub const GDT_CODE: u16 = 2;
pub const GDT_DATA: u16 = 3;
pub const GDT_TSS: u16 = 4;
pub const GDT_ENTRIES: usize = 5;

/// The boot GDT for an entry mode: two null slots, code, data, TSS.
pub fn boot_gdt(entry: BootEntry) -> [u64; GDT_ENTRIES] {
    match entry {
        BootEntry::Pvh(_) | BootEntry::Linux32(_) => [
            0,
            0,
            gdt_entry(CODE32, 0, 0xfffff),
            gdt_entry(DATA, 0, 0xfffff),
            gdt_entry(TSS32, 0, 0x67),
        ],
        BootEntry::Linux64(_) => [
            0,
            0,
            gdt_entry(CODE64, 0, 0xfffff),
            gdt_entry(DATA, 0, 0xfffff),
            gdt_entry(TSS64, 0, 0xfffff),
        ],
    }
}

fn mem_err(what: &str, e: impl std::fmt::Display) -> MicrovmError {
    MicrovmError::Memory(format!("writing {what}: {e}"))
}

/// Writes the GDT and an empty IDT, and (for the 64-bit entry) the identity page tables
/// mapping the first GiB with 2 MiB pages.
pub fn write_boot_tables(mem: &GuestMemoryMmap, entry: BootEntry) -> Result<()> {
    for (i, d) in boot_gdt(entry).iter().enumerate() {
        mem.write_obj(*d, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(|e| mem_err("the GDT", e))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|e| mem_err("the IDT", e))?;
    if let BootEntry::Linux64(_) = entry {
        mem.write_obj(PDPTE_START | 0x03, GuestAddress(PML4_START))
            .map_err(|e| mem_err("the PML4", e))?;
        mem.write_obj(PDE_START | 0x03, GuestAddress(PDPTE_START))
            .map_err(|e| mem_err("the PDPT", e))?;
        let mut pd = [0u8; 4096];
        for (i, chunk) in pd.chunks_exact_mut(8).enumerate() {
            // Present, writable, 2 MiB page.
            chunk.copy_from_slice(&(((i as u64) << 21) | 0x83).to_le_bytes());
        }
        mem.write_slice(&pd, GuestAddress(PDE_START))
            .map_err(|e| mem_err("the page directory", e))?;
    }
    Ok(())
}

fn kvm_err(what: &str, cpu: u8, e: kvm_ioctls::Error) -> MicrovmError {
    MicrovmError::Kvm {
        what: format!("{what} (vCPU {cpu})"),
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// The special registers for the entry mode, on top of what KVM reports.
pub fn boot_sregs(mut sregs: kvm_sregs, entry: BootEntry) -> kvm_sregs {
    let gdt = boot_gdt(entry);
    let code = segment_from_gdt(gdt[GDT_CODE as usize], GDT_CODE);
    let data = segment_from_gdt(gdt[GDT_DATA as usize], GDT_DATA);
    let tss = segment_from_gdt(gdt[GDT_TSS as usize], GDT_TSS);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    match entry {
        BootEntry::Pvh(_) | BootEntry::Linux32(_) => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
        BootEntry::Linux64(_) => {
            sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.cr3 = PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
    }
    sregs
}

/// The general registers at the kernel entry.
pub fn boot_regs(entry: BootEntry) -> kvm_regs {
    let mut regs = kvm_regs {
        rflags: 0x2,
        rip: entry.address(),
        ..Default::default()
    };
    match entry {
        BootEntry::Pvh(_) => regs.rbx = PVH_INFO_START,
        BootEntry::Linux32(_) => regs.rsi = ZERO_PAGE_START,
        BootEntry::Linux64(_) => {
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = ZERO_PAGE_START;
        }
    }
    regs
}

/// Loads the boot state into a vCPU: registers, segments, FPU.
pub fn setup_vcpu_regs(vcpu: &VcpuFd, cpu: u8, entry: BootEntry) -> Result<()> {
    let sregs = vcpu
        .get_sregs()
        .map_err(|e| kvm_err("KVM_GET_SREGS", cpu, e))?;
    vcpu.set_sregs(&boot_sregs(sregs, entry))
        .map_err(|e| kvm_err("KVM_SET_SREGS", cpu, e))?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(|e| kvm_err("KVM_SET_REGS", cpu, e))?;
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu)
        .map_err(|e| kvm_err("KVM_SET_FPU", cpu, e))?;
    Ok(())
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_IA32_MISC_ENABLE_FAST_STRING: u64 = 1;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
/// MTRRs enabled, default type write-back.
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

/// The MSRs every vCPU starts with: syscall MSRs cleared, TSC at 0, fast strings, WB MTRRs.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MSR_IA32_MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

/// Sets the boot MSRs; names the first one KVM refused.
pub fn setup_msrs(vcpu: &VcpuFd, cpu: u8) -> Result<()> {
    let entries = boot_msrs();
    let msrs = Msrs::from_entries(&entries).map_err(|e| MicrovmError::Hypervisor {
        hypervisor: "built-in VMM".into(),
        reason: format!("building the MSR list: {e:?}"),
    })?;
    let written = vcpu
        .set_msrs(&msrs)
        .map_err(|e| kvm_err("KVM_SET_MSRS", cpu, e))?;
    if written != entries.len() {
        return Err(MicrovmError::Kvm {
            what: format!(
                "KVM_SET_MSRS (vCPU {cpu}) refused MSR {:#x}",
                entries[written].index
            ),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    Ok(())
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(regs: &[std::os::raw::c_char], offset: usize) -> u32 {
    let b = |i: usize| regs[offset + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn set_lapic_reg(regs: &mut [std::os::raw::c_char], offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *b as std::os::raw::c_char;
    }
}

fn delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// LINT0 receives the 8259's ExtINT, LINT1 the NMI, as on a PC.
pub fn setup_lint(vcpu: &VcpuFd, cpu: u8) -> Result<()> {
    let mut lapic = vcpu
        .get_lapic()
        .map_err(|e| kvm_err("KVM_GET_LAPIC", cpu, e))?;
    let lvt0 = lapic_reg(&lapic.regs, APIC_LVT0);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT0,
        delivery_mode(lvt0, APIC_MODE_EXTINT),
    );
    let lvt1 = lapic_reg(&lapic.regs, APIC_LVT1);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT1,
        delivery_mode(lvt1, APIC_MODE_NMI),
    );
    vcpu.set_lapic(&lapic)
        .map_err(|e| kvm_err("KVM_SET_LAPIC", cpu, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_round_trip_into_segments() {
        let code = segment_from_gdt(gdt_entry(CODE64, 0, 0xfffff), 1);
        assert_eq!(
            (code.selector, code.type_, code.l, code.db, code.g),
            (8, 0xb, 1, 0, 1)
        );
        assert_eq!((code.present, code.s, code.limit), (1, 1, 0xffff_ffff));
        let s = boot_sregs(kvm_sregs::default(), BootEntry::Linux32(0x10_0000));
        assert_eq!(
            (s.cs.selector, s.ds.selector, s.ss.selector),
            (0x10, 0x18, 0x18)
        );
        assert_eq!(s.cr0 & X86_CR0_PG, 0);
        assert_eq!(
            boot_regs(BootEntry::Linux32(0x10_0000)).rsi,
            ZERO_PAGE_START
        );
        let code32 = segment_from_gdt(gdt_entry(CODE32, 0, 0xfffff), 1);
        assert_eq!((code32.l, code32.db), (0, 1));
        let data = segment_from_gdt(gdt_entry(DATA, 0, 0xfffff), 2);
        assert_eq!((data.selector, data.type_, data.db), (16, 3, 1));
        let tss = segment_from_gdt(gdt_entry(TSS32, 0, 0x67), 3);
        assert_eq!(
            (tss.selector, tss.type_, tss.s, tss.limit),
            (24, 0xb, 0, 0x67)
        );
        assert_eq!(segment_from_gdt(0, 0).unusable, 1);
    }

    #[test]
    fn pvh_starts_in_protected_mode_without_paging() {
        let s = boot_sregs(kvm_sregs::default(), BootEntry::Pvh(0x1000));
        assert_eq!(s.cr0 & X86_CR0_PG, 0);
        assert_ne!(s.cr0 & X86_CR0_PE, 0);
        assert_eq!(s.efer & EFER_LME, 0);
        assert_eq!(s.cs.db, 1);
        let r = boot_regs(BootEntry::Pvh(0x1000));
        assert_eq!((r.rip, r.rbx, r.rflags), (0x1000, PVH_INFO_START, 2));
    }

    #[test]
    fn linux64_starts_in_long_mode() {
        let s = boot_sregs(kvm_sregs::default(), BootEntry::Linux64(0x100_0000));
        assert_ne!(s.cr0 & X86_CR0_PG, 0);
        assert_eq!(s.cr3, PML4_START);
        assert_ne!(s.efer & (EFER_LME | EFER_LMA), 0);
        assert_eq!(s.cs.l, 1);
        let r = boot_regs(BootEntry::Linux64(0x100_0000));
        assert_eq!((r.rip, r.rsi), (0x100_0000, ZERO_PAGE_START));
    }

    #[test]
    fn page_tables_identity_map_the_first_gib() {
        let mem = super::super::layout::create_guest_memory(16).unwrap();
        write_boot_tables(&mem, BootEntry::Linux64(0)).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 3);
        let last: u64 = mem.read_obj(GuestAddress(PDE_START + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
    }

    #[test]
    fn lint_delivery_modes() {
        let mut regs = vec![0 as std::os::raw::c_char; 1024];
        set_lapic_reg(&mut regs, APIC_LVT0, 0x0001_0700);
        let v = delivery_mode(lapic_reg(&regs, APIC_LVT0), APIC_MODE_NMI);
        assert_eq!(v, 0x0001_0400);
    }
}
