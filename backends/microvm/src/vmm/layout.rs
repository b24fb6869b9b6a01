//! Guest physical memory layout: where the VMM puts boot structures and which ranges are RAM.
//!
//! The layout follows the usual microVM convention (no firmware, no PCI): low memory up to the
//! EBDA, the legacy hole, then RAM from 1 MiB up, with a gap below 4 GiB for the LAPIC/IOAPIC.

use crate::error::{MicrovmError, Result};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// GDT for the boot vCPU state.
pub const BOOT_GDT_START: u64 = 0x500;
/// An empty IDT: the kernel installs its own before enabling interrupts.
pub const BOOT_IDT_START: u64 = 0x528;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initramfs), right after the start info.
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map; it shares the page with the zero page since only one protocol is used.
pub const PVH_MEMMAP_START: u64 = 0x7000;
/// Linux boot protocol zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapping page tables for the 64-bit entry (PML4, PDPT, PD).
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line accepted (the x86 kernel's COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the extended BIOS data area; the MP table lives in its last KiB before 640 KiB.
pub const EBDA_START: u64 = 0x9fc00;
/// The MP table: Linux scans the last KiB of base memory for it.
pub const MPTABLE_START: u64 = EBDA_START;
/// The BIOS area holding the ACPI tables (RSDP first), up to 1 MiB.
pub const ACPI_AREA_START: u64 = 0xe_0000;
/// First address above the legacy hole; the kernel is loaded above it.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap (LAPIC, IOAPIC); RAM beyond it continues at 4 GiB.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// IOAPIC and LAPIC MMIO bases (also written into the MP table).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const APIC_ADDR: u32 = 0xfee0_0000;
/// KVM needs three pages for the real-mode TSS and one for the identity map, below 4 GiB and
/// outside RAM.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

/// Smallest guest that can hold the boot structures, a kernel and an initramfs.
pub const MIN_MEM_MIB: u64 = 16;
/// Largest guest accepted (a sanity bound, not a KVM limit).
pub const MAX_MEM_MIB: u64 = 64 * 1024;

/// e820 / PVH memory map entry types used here.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// One entry of the guest's physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemMapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The RAM ranges backing a guest of `mem_bytes` bytes: one range, or two when the memory
/// reaches into the MMIO gap below 4 GiB.
pub fn ram_ranges(mem_bytes: u64) -> Vec<(u64, u64)> {
    if mem_bytes <= MMIO_GAP_START {
        vec![(0, mem_bytes)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_bytes - MMIO_GAP_START),
        ]
    }
}

/// The memory map the guest sees (e820 for the Linux protocol, the PVH memmap likewise):
/// base memory up to the EBDA, the EBDA reserved (it holds the MP table), then RAM from 1 MiB.
pub fn memory_map(mem_bytes: u64) -> Vec<MemMapEntry> {
    let mut map = vec![
        MemMapEntry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        MemMapEntry {
            addr: EBDA_START,
            size: 0xa0000 - EBDA_START,
            kind: E820_RESERVED,
        },
        MemMapEntry {
            addr: ACPI_AREA_START,
            size: HIMEM_START - ACPI_AREA_START,
            kind: E820_RESERVED,
        },
    ];
    for (start, len) in ram_ranges(mem_bytes) {
        let end = start + len;
        let start = start.max(HIMEM_START);
        if end > start {
            map.push(MemMapEntry {
                addr: start,
                size: end - start,
                kind: E820_RAM,
            });
        }
    }
    map
}

/// Validates the memory size and maps the guest memory.
pub fn create_guest_memory(mem_mib: u64) -> Result<GuestMemoryMmap> {
    if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mem_mib) {
        return Err(MicrovmError::Memory(format!(
            "mem_mib {mem_mib} is outside {MIN_MEM_MIB}..={MAX_MEM_MIB}"
        )));
    }
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(mem_mib << 20)
        .into_iter()
        .map(|(start, len)| (GuestAddress(start), len as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges)
        .map_err(|e| MicrovmError::Memory(format!("mapping {mem_mib} MiB of guest memory: {e}")))
}

/// The highest RAM address below 4 GiB plus one: where the initramfs is placed under.
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_GAP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_range_and_three_map_entries() {
        let mem = 256 << 20;
        assert_eq!(ram_ranges(mem), vec![(0, mem)]);
        let map = memory_map(mem);
        assert_eq!(map.len(), 4);
        assert_eq!(
            map[0],
            MemMapEntry {
                addr: 0,
                size: 0x9fc00,
                kind: E820_RAM
            }
        );
        assert_eq!(map[1].kind, E820_RESERVED);
        assert_eq!(map[2].kind, E820_RESERVED);
        assert_eq!(
            map[3],
            MemMapEntry {
                addr: HIMEM_START,
                size: mem - HIMEM_START,
                kind: E820_RAM
            }
        );
    }

    #[test]
    fn large_guest_skips_the_mmio_gap() {
        let mem = 4u64 << 30;
        let ranges = ram_ranges(mem);
        assert_eq!(
            ranges,
            vec![(0, MMIO_GAP_START), (MMIO_GAP_END, mem - MMIO_GAP_START)]
        );
        let map = memory_map(mem);
        assert_eq!(map.len(), 5);
        assert_eq!(map[3].addr + map[3].size, MMIO_GAP_START);
        assert_eq!(map[4].addr, MMIO_GAP_END);
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, mem - (HIMEM_START - EBDA_START));
    }

    #[test]
    fn memory_size_is_validated() {
        assert!(create_guest_memory(1).is_err());
        assert!(create_guest_memory(MAX_MEM_MIB + 1).is_err());
        assert!(create_guest_memory(32).is_ok());
    }

    #[test]
    fn boot_structures_do_not_overlap() {
        let mut areas = [
            (BOOT_GDT_START, 0x28),
            (BOOT_IDT_START, 8),
            (PVH_INFO_START, 0x40),
            (PVH_MODLIST_START, 0x20),
            (ZERO_PAGE_START, 0x1000),
            (PML4_START, 0x1000),
            (PDPTE_START, 0x1000),
            (PDE_START, 0x1000),
            (CMDLINE_START, CMDLINE_MAX_SIZE as u64),
            (MPTABLE_START, 0x400),
        ];
        areas.sort();
        for w in areas.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "{:#x} overlaps {:#x}",
                w[0].0,
                w[1].0
            );
        }
        const {
            assert!(
                BOOT_STACK_POINTER < PML4_START && BOOT_STACK_POINTER > ZERO_PAGE_START + 0x1000
            )
        };
    }
}
