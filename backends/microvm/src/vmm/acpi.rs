//! Minimal ACPI tables for kernels that find CPUs only through ACPI (e.g. Debian's cloud
//! kernel, built without MP-table parsing): RSDP → XSDT → FADT (hardware-reduced, pointing at
//! the DSDT) and MADT (one LAPIC per vCPU, the IOAPIC, the LAPIC NMI line). The DSDT describes
//! the two 8250 UARTs: a hardware-reduced ACPI kernel probes no legacy ISA ports, so a UART it
//! is not told about does not exist for it (writes to /dev/ttyS1 fail with EIO).
//!
//! They live in the BIOS area below 1 MiB, where Linux also scans for the RSDP; the PVH start
//! info and the zero page point at it directly.

use super::devices;
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

/// The UARTs the DSDT describes: name, I/O base, GSI (the VMM's serial devices).
const UARTS: [(&[u8; 4], u16, u32); 2] = [
    (b"COM1", devices::COM1_BASE, devices::COM1_IRQ),
    (b"COM2", devices::COM2_BASE, devices::COM2_IRQ),
];

/// AML PkgLength: the length of what follows the opcode, counting the PkgLength bytes.
fn pkg_length(content_len: usize) -> Vec<u8> {
    // One byte holds up to 63; otherwise a lead byte (count of extra bytes in bits 6-7,
    // the low 4 bits of the length) and up to three more bytes.
    if content_len + 1 < 64 {
        return vec![(content_len + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = content_len + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut out = vec![((extra as u8) << 6) | (total & 0xf) as u8];
            out.extend((0..extra).map(|i| (total >> (4 + 8 * i)) as u8));
            return out;
        }
    }
    unreachable!("AML objects here are far smaller than 256 MiB")
}

/// `opcode PkgLength body`.
fn aml_pkg(opcode: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = opcode.to_vec();
    out.extend(pkg_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// `Name(seg, value)` with `value` already encoded.
fn aml_name(seg: &[u8; 4], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x08];
    out.extend_from_slice(seg);
    out.extend_from_slice(value);
    out
}

/// EisaId("PNP0501"): three 5-bit letters and four hex digits, stored big-endian.
fn eisa_id(id: &[u8; 7]) -> u32 {
    let l = |c: u8| u32::from(c - b'@') & 0x1f;
    let hex = std::str::from_utf8(&id[3..]).expect("ascii");
    let product = u32::from_str_radix(hex, 16).expect("hex digits");
    let be = (l(id[0]) << 26) | (l(id[1]) << 21) | (l(id[2]) << 16) | product;
    be.swap_bytes()
}

/// One 16550-compatible UART: `Device(NAME) { _HID PNP0501, _UID, _CRS { IO, Interrupt } }`.
fn uart_device(name: &[u8; 4], uid: u8, base: u16, irq: u32) -> Vec<u8> {
    let mut hid = vec![0x0c]; // DWordConst
    hid.extend_from_slice(&eisa_id(b"PNP0501").to_le_bytes());
    let mut crs = Vec::new();
    // I/O port descriptor: 16-bit decode, min = max = base, alignment 0, 8 ports.
    crs.extend_from_slice(&[0x47, 0x01]);
    crs.extend_from_slice(&base.to_le_bytes());
    crs.extend_from_slice(&base.to_le_bytes());
    crs.extend_from_slice(&[0x00, 0x08]);
    // Extended interrupt descriptor: consumer, edge, active-high, exclusive; one GSI.
    crs.extend_from_slice(&[0x89, 0x06, 0x00, 0x03, 0x01]);
    crs.extend_from_slice(&irq.to_le_bytes());
    crs.extend_from_slice(&[0x79, 0x00]); // end tag
    let mut buffer = vec![0x0a, crs.len() as u8]; // BufferSize as ByteConst
    buffer.extend(crs);
    let mut body = name.to_vec();
    body.extend(aml_name(b"_HID", &hid));
    body.extend(aml_name(b"_UID", &[0x0a, uid]));
    body.extend(aml_name(b"_CRS", &aml_pkg(&[0x11], &buffer)));
    aml_pkg(&[0x5b, 0x82], &body)
}

fn dsdt() -> Vec<u8> {
    // Scope(\_SB) { COM1, COM2 }
    let mut scope = b"\\_SB_".to_vec();
    for (uid, (name, base, irq)) in UARTS.iter().enumerate() {
        scope.extend(uart_device(name, uid as u8 + 1, *base, *irq));
    }
    sdt(b"DSDT", 2, &aml_pkg(&[0x10], &scope))
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

    /// Walk the DSDT's AML: Scope(\_SB) holding one Device per UART, each with
    /// _HID PNP0501 and a _CRS naming its port and interrupt.
    #[test]
    fn dsdt_describes_both_uarts() {
        let d = dsdt();
        assert_eq!(u32_at(&d, 4) as usize, d.len());
        let aml = &d[HEADER_LEN..];
        // PkgLength decoding, the inverse of pkg_length.
        let pkg = |b: &[u8]| -> (usize, usize) {
            let extra = (b[0] >> 6) as usize;
            if extra == 0 {
                return ((b[0] & 0x3f) as usize, 1);
            }
            let mut len = (b[0] & 0xf) as usize;
            for i in 0..extra {
                len |= (b[1 + i] as usize) << (4 + 8 * i);
            }
            (len, 1 + extra)
        };
        assert_eq!(aml[0], 0x10, "ScopeOp");
        let (len, n) = pkg(&aml[1..]);
        assert_eq!(1 + len, aml.len(), "the scope spans the whole table");
        assert_eq!(&aml[1 + n..1 + n + 5], b"\\_SB_");
        let mut off = 1 + n + 5;
        let mut found = Vec::new();
        while off < aml.len() {
            assert_eq!(&aml[off..off + 2], &[0x5b, 0x82], "DeviceOp at {off}");
            let (len, n) = pkg(&aml[off + 2..]);
            let dev = &aml[off + 2..off + 2 + len];
            let name = &dev[n..n + 4];
            let hid = dev.windows(5).position(|w| w == b"_HID\x0c").unwrap();
            assert_eq!(&dev[hid + 5..hid + 9], &[0x41, 0xd0, 0x05, 0x01], "PNP0501");
            let io = dev.windows(2).position(|w| w == [0x47, 0x01]).unwrap();
            let base = u16::from_le_bytes([dev[io + 2], dev[io + 3]]);
            let irq = dev
                .windows(3)
                .position(|w| w == [0x89, 0x06, 0x00])
                .unwrap();
            let gsi = u32_at(dev, irq + 5);
            found.push((name.to_vec(), base, gsi));
            off += 2 + len;
        }
        assert_eq!(off, aml.len());
        assert_eq!(
            found,
            vec![(b"COM1".to_vec(), 0x3f8, 4), (b"COM2".to_vec(), 0x2f8, 3)]
        );
    }

    #[test]
    fn pkg_length_encodings() {
        assert_eq!(pkg_length(0), vec![1]);
        assert_eq!(pkg_length(62), vec![63]);
        // 63 bytes of content + 2 length bytes = 65 = 0x41: lead 0x41, then 0x04.
        assert_eq!(pkg_length(63), vec![0x41, 0x04]);
        // 4000 + 2 = 4002 = 0xfa2: lead 0x40 | 0x2, then 0xfa.
        assert_eq!(pkg_length(4000), vec![0x42, 0xfa]);
    }

    /// The table decodes with ACPICA's disassembler where it is installed (acpica-tools).
    #[test]
    fn dsdt_disassembles_with_iasl() {
        let Ok(out) = std::process::Command::new("iasl").arg("-v").output() else {
            isobox_common::skip::skip("iasl (acpica-tools) is not installed");
            return;
        };
        assert!(out.status.success());
        let dir = tempfile::tempdir().unwrap();
        let dat = dir.path().join("dsdt.dat");
        std::fs::write(&dat, dsdt()).unwrap();
        let out = std::process::Command::new("iasl")
            .arg("-d")
            .arg(&dat)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "iasl -d: {log}");
        let dsl = std::fs::read_to_string(dir.path().join("dsdt.dsl")).unwrap();
        for want in [
            "Device (COM1)",
            "Device (COM2)",
            "EisaId (\"PNP0501\")",
            "0x03F8",
            "0x02F8",
        ] {
            assert!(dsl.contains(want), "{want} missing from:\n{dsl}");
        }
        assert!(!log.contains("Error"), "{log}");
    }

    #[test]
    fn fits_for_the_largest_vm() {
        assert!(build(crate::vmm::mptable::MAX_VCPUS).is_ok());
    }
}
