//! Minimal ACPI tables for kernels that find CPUs only through ACPI (e.g. Debian's cloud
//! kernel, built without MP-table parsing): RSDP → XSDT → FADT (hardware-reduced, pointing at
//! an empty DSDT) and MADT (one LAPIC per vCPU, the IOAPIC, the LAPIC NMI line).
//!
//! They live in the BIOS area below 1 MiB, where Linux also scans for the RSDP; the PVH start
//! info and the zero page point at it directly.

use super::layout::{ACPI_AREA_START, APIC_ADDR, HIMEM_START, IOAPIC_ADDR};
use super::mptable::ioapic_id;
use crate::error::{MicrovmError, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the RSDP (and after it the other tables) is written.
pub const RSDP_START: u64 = ACPI_AREA_START;
/// End of the area reserved for the tables.
pub const ACPI_END: u64 = HIMEM_START;

const OEM_ID: &[u8; 6] = b"ISOBOX";
const OEM_TABLE_ID: &[u8; 8] = b"MICROVM ";
const CREATOR_ID: &[u8; 4] = b"ISBX";
const HEADER_LEN: usize = 36;
const FADT_LEN: usize = 276;

const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
const FADT_PWR_BUTTON: u32 = 1 << 4;
const FADT_SLP_BUTTON: u32 = 1 << 5;
/// IAPC_BOOT_ARCH: no VGA, no MSI, no CMOS RTC.
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3) | (1 << 5);
/// MADT flag: a PC-AT 8259 pair is present (KVM's in-kernel PIC).
const MADT_PCAT_COMPAT: u32 = 1;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A system description table: the standard header followed by `body`, checksummed.
fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = (HEADER_LEN + body.len()) as u32;
    let mut t = Vec::with_capacity(len as usize);
    t.extend_from_slice(signature);
    t.extend_from_slice(&len.to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

fn dsdt() -> Vec<u8> {
    // No devices to describe: an empty definition block.
    sdt(b"DSDT", 2, &[])
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut body = vec![0u8; FADT_LEN - HEADER_LEN];
    let at = |off: usize| off - HEADER_LEN;
    body[at(40)..at(44)].copy_from_slice(&(dsdt_addr as u32).to_le_bytes());
    body[at(109)..at(111)].copy_from_slice(&IAPC_BOOT_ARCH.to_le_bytes());
    let flags = FADT_HW_REDUCED_ACPI | FADT_PWR_BUTTON | FADT_SLP_BUTTON;
    body[at(112)..at(116)].copy_from_slice(&flags.to_le_bytes());
    body[at(131)] = 5; // FADT minor version (ACPI 6.5)
    body[at(140)..at(148)].copy_from_slice(&dsdt_addr.to_le_bytes()); // X_DSDT
    body[at(268)..at(276)].copy_from_slice(&u64::from_le_bytes(*b"ISOBOXVM").to_le_bytes());
    sdt(b"FACP", 6, &body)
}

fn madt(num_cpus: u8) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&APIC_ADDR.to_le_bytes());
    body.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for cpu in 0..num_cpus {
        // Processor Local APIC: UID, APIC id, enabled.
        body.extend_from_slice(&[0, 8, cpu, cpu]);
        body.extend_from_slice(&1u32.to_le_bytes());
    }
    // I/O APIC: id, reserved, address, GSI base 0.
    body.extend_from_slice(&[1, 12, ioapic_id(num_cpus), 0]);
    body.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    // Local APIC NMI on LINT1 of every processor.
    body.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    sdt(b"APIC", 6, &body)
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"XSDT", 1, &body)
}

fn rsdp(xsdt_addr: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(36);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0); // checksum of the first 20 bytes
    r.extend_from_slice(OEM_ID);
    r.push(2); // revision: ACPI 2.0+
    r.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt_addr.to_le_bytes());
    r.push(0); // extended checksum
    r.extend_from_slice(&[0; 3]);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

fn align16(x: u64) -> u64 {
    x.next_multiple_of(16)
}

/// All tables and the addresses they go to, RSDP first.
pub fn build(num_cpus: u8) -> Result<Vec<(u64, Vec<u8>)>> {
    let xsdt_addr = RSDP_START + 0x40;
    let dsdt_addr = xsdt_addr + 0x40;
    let dsdt = dsdt();
    let fadt_addr = align16(dsdt_addr + dsdt.len() as u64);
    let fadt = fadt(dsdt_addr);
    let madt_addr = align16(fadt_addr + fadt.len() as u64);
    let madt = madt(num_cpus);
    let end = madt_addr + madt.len() as u64;
    if end > ACPI_END {
        return Err(MicrovmError::Memory(format!(
            "ACPI tables for {num_cpus} vCPUs end at {end:#x}, past {ACPI_END:#x}"
        )));
    }
    Ok(vec![
        (RSDP_START, rsdp(xsdt_addr)),
        (xsdt_addr, xsdt(&[fadt_addr, madt_addr])),
        (dsdt_addr, dsdt),
        (fadt_addr, fadt),
        (madt_addr, madt),
    ])
}

/// Writes the tables; returns the RSDP address.
pub fn write(mem: &GuestMemoryMmap, num_cpus: u8) -> Result<u64> {
    for (addr, bytes) in build(num_cpus)? {
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(|e| MicrovmError::Memory(format!("writing ACPI tables at {addr:#x}: {e}")))?;
    }
    Ok(RSDP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn tables_link_up_and_checksum() {
        let tables = build(4).unwrap();
        let find = |addr: u64| &tables.iter().find(|(a, _)| *a == addr).unwrap().1;
        let rsdp = find(RSDP_START);
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        let xsdt = find(u64_at(rsdp, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        assert_eq!(u32_at(xsdt, 4) as usize, xsdt.len());
        assert_eq!(sum(xsdt), 0);
        let fadt = find(u64_at(xsdt, 36));
        let madt = find(u64_at(xsdt, 44));
        assert_eq!(&fadt[..4], b"FACP");
        assert_eq!(fadt.len(), FADT_LEN);
        assert_eq!(sum(fadt), 0);
        assert_ne!(u32_at(fadt, 112) & FADT_HW_REDUCED_ACPI, 0);
        let dsdt = find(u64_at(fadt, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(sum(dsdt), 0);
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(sum(madt), 0);
        assert_eq!(u32_at(madt, 36), APIC_ADDR);
        // Entries: 4 LAPICs with ids 0..4, then the IOAPIC.
        let mut off = 44;
        let mut lapics = Vec::new();
        while off < madt.len() {
            let (kind, len) = (madt[off], madt[off + 1] as usize);
            if kind == 0 {
                lapics.push(madt[off + 3]);
            }
            if kind == 1 {
                assert_eq!(madt[off + 2], ioapic_id(4));
                assert_eq!(u32_at(madt, off + 4), IOAPIC_ADDR);
            }
            off += len;
        }
        assert_eq!(off, madt.len());
        assert_eq!(lapics, vec![0, 1, 2, 3]);
        // Tables do not overlap and stay below 1 MiB.
        let mut spans: Vec<(u64, u64)> = tables
            .iter()
            .map(|(a, b)| (*a, *a + b.len() as u64))
            .collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
        assert!(spans.last().unwrap().1 <= ACPI_END);
    }

    #[test]
    fn fits_for_the_largest_vm() {
        assert!(build(crate::vmm::mptable::MAX_VCPUS).is_ok());
    }
}
