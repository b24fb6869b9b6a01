//! Loading the kernel (ELF vmlinux with or without a PVH note, or bzImage), the initramfs and
//! the command line into guest memory.

use super::bootparams::Initrd;
use super::layout::{low_ram_end, CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START};
use super::regs::BootEntry;
use crate::error::{MicrovmError, Result};
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, Cmdline, KernelLoader};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const PAGE: u64 = 4096;

/// What loading the kernel produced.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    pub entry: BootEntry,
    /// The bzImage setup header, to seed the zero page.
    pub setup_header: Option<setup_header>,
    /// First guest address past the kernel image.
    pub kernel_end: u64,
}

fn kernel_err(path: &Path, reason: impl Into<String>) -> MicrovmError {
    MicrovmError::Kernel {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Loads an ELF (preferring its PVH entry) or a bzImage.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel> {
    let mut file = File::open(path).map_err(|e| kernel_err(path, format!("open: {e}")))?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .map_err(|e| kernel_err(path, format!("reading the header: {e}")))?;
    if &magic == b"\x7fELF" {
        let r = Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
            .map_err(|e| kernel_err(path, format!("loading the ELF image: {e}")))?;
        let entry = match r.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(a) => BootEntry::Pvh(a.0),
            _ => BootEntry::Linux64(r.kernel_load.0),
        };
        Ok(LoadedKernel {
            entry,
            setup_header: None,
            kernel_end: r.kernel_end,
        })
    } else {
        let r = BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
            .map_err(|e| kernel_err(path, format!("neither ELF nor a loadable bzImage: {e}")))?;
        let header = r
            .setup_header
            .ok_or_else(|| kernel_err(path, "bzImage without a setup header"))?;
        Ok(LoadedKernel {
            entry: BootEntry::Linux32(r.kernel_load.0),
            setup_header: Some(header),
            kernel_end: r.kernel_end,
        })
    }
}

/// Where an initramfs of `size` bytes goes: page-aligned at the top of RAM below 4 GiB (and
/// below the kernel's `initrd_addr_max`), above the kernel.
pub fn initrd_address(
    mem_bytes: u64,
    size: u64,
    kernel_end: u64,
    addr_max: Option<u64>,
) -> Option<u64> {
    let mut top = low_ram_end(mem_bytes);
    if let Some(max) = addr_max.filter(|m| *m != 0) {
        top = top.min(max.saturating_add(1));
    }
    let addr = top.checked_sub(size)? & !(PAGE - 1);
    (addr >= kernel_end.next_multiple_of(PAGE)).then_some(addr)
}

/// Loads the initramfs high in RAM.
pub fn load_initramfs(
    mem: &GuestMemoryMmap,
    path: &Path,
    mem_bytes: u64,
    kernel: &LoadedKernel,
) -> Result<Initrd> {
    let err = |reason: String| MicrovmError::Initramfs {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| err(format!("open: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| err(format!("stat: {e}")))?
        .len();
    if size == 0 {
        return Err(err("is empty".into()));
    }
    let addr_max = kernel.setup_header.map(|h| u64::from(h.initrd_addr_max));
    let addr = initrd_address(mem_bytes, size, kernel.kernel_end, addr_max).ok_or_else(|| {
        err(format!(
            "{size} bytes do not fit between the kernel end {:#x} and the top of {} MiB of RAM",
            kernel.kernel_end,
            mem_bytes >> 20
        ))
    })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| err(format!("copying into guest memory at {addr:#x}: {e}")))?;
    Ok(Initrd { addr, size })
}

/// Writes the command line at [`CMDLINE_START`]; returns its length without the NUL.
pub fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<usize> {
    let bad = |reason: String| MicrovmError::Hypervisor {
        hypervisor: "built-in VMM".into(),
        reason: format!("kernel command line: {reason}"),
    };
    let mut cl = Cmdline::new(CMDLINE_MAX_SIZE).map_err(|e| bad(e.to_string()))?;
    if !cmdline.trim().is_empty() {
        cl.insert_str(cmdline.trim()).map_err(|e| {
            bad(format!(
                "{e} ({} bytes, at most {})",
                cmdline.len(),
                CMDLINE_MAX_SIZE - 1
            ))
        })?;
    }
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cl).map_err(|e| bad(e.to_string()))?;
    let len = cl
        .as_cstring()
        .map_err(|e| bad(e.to_string()))?
        .as_bytes()
        .len();
    // Guard against stale bytes of a longer previous line (none in a fresh guest, but cheap).
    mem.write_obj(0u8, GuestAddress(CMDLINE_START + len as u64))
        .map_err(|e| MicrovmError::Memory(format!("terminating the command line: {e}")))?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::layout::create_guest_memory;

    #[test]
    fn initrd_goes_high_and_aligned() {
        let mem = 256u64 << 20;
        let a = initrd_address(mem, 0x1234, 0x200_0000, None).unwrap();
        assert_eq!(a % PAGE, 0);
        assert!(a + 0x1234 <= mem);
        assert!(mem - (a + 0x1234) < PAGE);
        // initrd_addr_max caps it.
        let b = initrd_address(mem, 0x1000, 0x200_0000, Some(0x0fff_ffff - (64 << 20))).unwrap();
        assert!(b + 0x1000 <= 0x1000_0000 - (64 << 20));
        // Too big to fit above the kernel.
        assert!(initrd_address(mem, mem - 0x100_0000, 0x200_0000, None).is_none());
        assert!(initrd_address(mem, mem + 1, 0, None).is_none());
    }

    #[test]
    fn cmdline_is_written_nul_terminated() {
        let mem = create_guest_memory(16).unwrap();
        let len = write_cmdline(&mem, "console=ttyS0 reboot=k").unwrap();
        assert_eq!(len, 22);
        let mut buf = [0u8; 23];
        mem.read_slice(&mut buf, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&buf, b"console=ttyS0 reboot=k\0");
        assert!(write_cmdline(&mem, &"x".repeat(CMDLINE_MAX_SIZE + 1)).is_err());
    }

    #[test]
    fn non_kernel_files_are_rejected() {
        let mem = create_guest_memory(16).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk");
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let e = load_kernel(&mem, &p).unwrap_err().to_string();
        assert!(e.contains("junk"), "{e}");
        assert!(load_kernel(&mem, &dir.path().join("missing")).is_err());
    }
}
