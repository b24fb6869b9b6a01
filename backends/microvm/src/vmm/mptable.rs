//! The Intel MultiProcessor table: how a kernel without ACPI finds the vCPUs, the IOAPIC and
//! the ISA interrupt routing. Linux scans the last KiB of base memory, where it is written.

use super::layout::{APIC_ADDR, IOAPIC_ADDR, MPTABLE_START};
use crate::error::{MicrovmError, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The table must fit the KiB between the EBDA start and 640 KiB.
const MPTABLE_SPACE: usize = 0x400;
/// Largest vCPU count whose table fits that KiB.
pub const MAX_VCPUS: u8 = 32;

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6 signature and the FPU+APIC feature bits, as the spec's processor entry wants.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
const MP_INT: u8 = 0;
const MP_NMI: u8 = 1;
const MP_EXTINT: u8 = 3;
const ISA_IRQS: u8 = 16;

/// The IOAPIC's id: after the vCPUs' APIC ids `0..num_cpus`.
pub fn ioapic_id(num_cpus: u8) -> u8 {
    num_cpus + 1
}

fn checksum(bytes: &[u8]) -> u8 {
    let sum = bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    0u8.wrapping_sub(sum)
}

/// Builds the floating pointer followed by the configuration table, as laid out at
/// [`MPTABLE_START`].
pub fn build(num_cpus: u8) -> Result<Vec<u8>> {
    if num_cpus == 0 || num_cpus > MAX_VCPUS {
        return Err(MicrovmError::Hypervisor {
            hypervisor: "built-in VMM".into(),
            reason: format!("MP table: vcpus {num_cpus} is outside 1..={MAX_VCPUS}"),
        });
    }
    let ioapic = ioapic_id(num_cpus);
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;

    for cpu in 0..num_cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BSP } else { 0 };
        entries.extend_from_slice(&[0, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    // Bus 0 is ISA.
    entries.extend_from_slice(&[1, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    // The IOAPIC, enabled.
    entries.extend_from_slice(&[2, ioapic, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    // ISA IRQ n goes to IOAPIC pin n, matching KVM's default GSI routing.
    for irq in 0..ISA_IRQS {
        entries.extend_from_slice(&[3, MP_INT, 0, 0, 0, irq, ioapic, irq]);
        count += 1;
    }
    // LINT0 is the 8259's ExtINT, LINT1 the NMI line of every LAPIC.
    entries.extend_from_slice(&[4, MP_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend_from_slice(&[4, MP_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_len = HEADER_LEN + entries.len();
    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"ISOBOX  ");
    table.extend_from_slice(b"MICROVM     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_ADDR.to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes()); // extended table length/checksum
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(FLOATING_LEN);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&((MPTABLE_START as u32) + FLOATING_LEN as u32).to_le_bytes());
    floating.push(1); // length in 16-byte units
    floating.push(4); // spec revision 1.4
    floating.push(0); // checksum, below
    floating.extend_from_slice(&[0; 5]); // features: 0 = a configuration table is present
    floating[10] = checksum(&floating);

    let mut out = floating;
    out.extend_from_slice(&table);
    if out.len() > MPTABLE_SPACE {
        return Err(MicrovmError::Hypervisor {
            hypervisor: "built-in VMM".into(),
            reason: format!(
                "MP table of {} bytes does not fit {MPTABLE_SPACE}",
                out.len()
            ),
        });
    }
    Ok(out)
}

/// Writes the MP table for `num_cpus` vCPUs into guest memory.
pub fn write(mem: &GuestMemoryMmap, num_cpus: u8) -> Result<()> {
    let bytes = build(num_cpus)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(|e| MicrovmError::Memory(format!("writing the MP table: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn checksums_and_layout_are_valid() {
        for cpus in [1u8, 2, 8, MAX_VCPUS] {
            let t = build(cpus).unwrap();
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[0..16]), 0, "floating pointer checksum");
            let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
            assert_eq!(ptr, MPTABLE_START + 16);
            let table = &t[16..];
            assert_eq!(&table[0..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(sum(table), 0, "configuration table checksum");
            let count = u16::from_le_bytes([table[34], table[35]]);
            assert_eq!(count as usize, cpus as usize + 1 + 1 + 16 + 2);
            // Processor entries: APIC ids 0..n, only the first is the BSP.
            for cpu in 0..cpus as usize {
                let e = &table[HEADER_LEN + cpu * 20..];
                assert_eq!(e[0], 0);
                assert_eq!(e[1] as usize, cpu);
                assert_eq!(e[3] & CPU_BSP != 0, cpu == 0);
            }
        }
    }

    #[test]
    fn vcpu_count_is_bounded() {
        assert!(build(0).is_err());
        assert!(build(MAX_VCPUS + 1).is_err());
        assert!(build(MAX_VCPUS).unwrap().len() <= MPTABLE_SPACE);
    }
}
