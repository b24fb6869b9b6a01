//! The structures a kernel reads at entry: the Linux zero page (`boot_params` with e820 map,
//! command line pointer and initramfs) or the PVH `hvm_start_info` with its memory map and
//! module list.

use super::layout::{
    memory_map, MemMapEntry, CMDLINE_START, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START,
    ZERO_PAGE_START,
};
use crate::error::{MicrovmError, Result};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

/// "HdrS": the boot protocol header magic.
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// "Undefined" boot loader id.
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
const E820_MAX_ZEROPAGE: usize = 128;

/// Where the initramfs was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initrd {
    pub addr: u64,
    pub size: u64,
}

/// Builds the zero page. `header` is the bzImage's setup header (None for an ELF kernel).
pub fn zero_page(
    header: Option<setup_header>,
    mem_bytes: u64,
    cmdline_len: usize,
    initrd: Option<Initrd>,
) -> Result<boot_params> {
    let mut raw = [0u8; std::mem::size_of::<boot_params>()];
    let mut params = *boot_params::from_mut_slice(&mut raw)
        .ok_or_else(|| MicrovmError::Memory("zero page: boot_params layout".into()))?;
    if let Some(h) = header {
        params.hdr = h;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if header.is_none() {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    if let Some(rd) = initrd {
        params.hdr.ramdisk_image = rd.addr as u32;
        params.hdr.ramdisk_size = rd.size as u32;
        params.ext_ramdisk_image = (rd.addr >> 32) as u32;
        params.ext_ramdisk_size = (rd.size >> 32) as u32;
    }
    let map = memory_map(mem_bytes);
    if map.len() > E820_MAX_ZEROPAGE {
        return Err(MicrovmError::Memory(format!(
            "zero page: {} e820 entries exceed {E820_MAX_ZEROPAGE}",
            map.len()
        )));
    }
    let mut table = params.e820_table;
    for (slot, e) in table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_table = table;
    params.e820_entries = map.len() as u8;
    Ok(params)
}

/// Writes the zero page to [`ZERO_PAGE_START`].
pub fn write_zero_page(mem: &GuestMemoryMmap, params: &boot_params) -> Result<()> {
    mem.write_slice(params.as_slice(), GuestAddress(ZERO_PAGE_START))
        .map_err(|e| MicrovmError::Memory(format!("writing the zero page: {e}")))
}

/// `struct hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h), version 1.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HvmStartInfo {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HvmMemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}

// SAFETY: plain-old-data C structs without padding holes that matter and valid for any bytes.
unsafe impl ByteValued for HvmStartInfo {}
// SAFETY: as above.
unsafe impl ByteValued for HvmModlistEntry {}
// SAFETY: as above.
unsafe impl ByteValued for HvmMemmapEntry {}

pub const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// Builds the PVH start info and memory map for `mem_bytes` of RAM.
pub fn pvh_start_info(
    mem_bytes: u64,
    initrd: Option<Initrd>,
    rsdp: u64,
) -> (HvmStartInfo, Vec<HvmMemmapEntry>, Option<HvmModlistEntry>) {
    let memmap: Vec<HvmMemmapEntry> = memory_map(mem_bytes)
        .iter()
        .map(|e: &MemMapEntry| HvmMemmapEntry {
            addr: e.addr,
            size: e.size,
            kind: e.kind,
            reserved: 0,
        })
        .collect();
    let module = initrd.map(|rd| HvmModlistEntry {
        paddr: rd.addr,
        size: rd.size,
        ..Default::default()
    });
    let info = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        nr_modules: u32::from(module.is_some()),
        modlist_paddr: if module.is_some() {
            PVH_MODLIST_START
        } else {
            0
        },
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: rsdp,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    (info, memmap, module)
}

/// Writes the PVH structures to their fixed addresses.
pub fn write_pvh(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    initrd: Option<Initrd>,
    rsdp: u64,
) -> Result<()> {
    let err = |what: &str, e: vm_memory::GuestMemoryError| {
        MicrovmError::Memory(format!("writing the PVH {what}: {e}"))
    };
    let (info, memmap, module) = pvh_start_info(mem_bytes, initrd, rsdp);
    mem.write_obj(info, GuestAddress(PVH_INFO_START))
        .map_err(|e| err("start info", e))?;
    if let Some(m) = module {
        mem.write_obj(m, GuestAddress(PVH_MODLIST_START))
            .map_err(|e| err("module list", e))?;
    }
    let size = std::mem::size_of::<HvmMemmapEntry>() as u64;
    for (i, e) in memmap.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(PVH_MEMMAP_START + i as u64 * size))
            .map_err(|e| err("memory map", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::layout::{E820_RAM, HIMEM_START};

    #[test]
    fn struct_sizes_match_the_abi() {
        assert_eq!(std::mem::size_of::<HvmStartInfo>(), 56);
        assert_eq!(std::mem::size_of::<HvmModlistEntry>(), 32);
        assert_eq!(std::mem::size_of::<HvmMemmapEntry>(), 24);
        assert_eq!(std::mem::size_of::<boot_params>(), 4096);
    }

    #[test]
    fn zero_page_has_e820_cmdline_and_initrd() {
        let mem = 256u64 << 20;
        let rd = Initrd {
            addr: 0x0f00_0000,
            size: 0x12345,
        };
        let p = zero_page(None, mem, 42, Some(rd)).unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ hdr.cmdline_size }, 42);
        assert_eq!({ hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ hdr.boot_flag }, KERNEL_BOOT_FLAG_MAGIC);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.ramdisk_image }, 0x0f00_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x12345);
        assert_eq!(p.e820_entries, 4);
        let table = p.e820_table;
        let last = table[3];
        assert_eq!(
            ({ last.addr }, { last.size }, { last.r#type }),
            (HIMEM_START, mem - HIMEM_START, E820_RAM)
        );
        // The bytes land at the documented offsets of the boot protocol.
        let bytes = p.as_slice();
        assert_eq!(bytes[0x1e8], 4);
        assert_eq!(&bytes[0x202..0x206], b"HdrS");
        assert_eq!(
            u32::from_le_bytes(bytes[0x228..0x22c].try_into().unwrap()),
            CMDLINE_START as u32
        );
        assert_eq!(
            u32::from_le_bytes(bytes[0x218..0x21c].try_into().unwrap()),
            0x0f00_0000
        );
        assert_eq!(
            u64::from_le_bytes(bytes[0x2d0 + 60..0x2d0 + 68].try_into().unwrap()),
            HIMEM_START
        );
    }

    #[test]
    fn bzimage_header_is_kept() {
        let mut raw = [0u8; std::mem::size_of::<setup_header>()];
        let mut h = *setup_header::from_mut_slice(&mut raw).unwrap();
        h.version = 0x20f;
        h.code32_start = 0x10_0000;
        let p = zero_page(Some(h), 64 << 20, 10, None).unwrap();
        assert_eq!({ p.hdr.version }, 0x20f);
        assert_eq!({ p.hdr.code32_start }, 0x10_0000);
        assert_eq!({ p.hdr.ramdisk_image }, 0);
    }

    #[test]
    fn pvh_info_points_at_its_tables() {
        let rd = Initrd {
            addr: 0x0800_0000,
            size: 4096,
        };
        let (info, memmap, module) = pvh_start_info(128 << 20, Some(rd), 0xe0000);
        assert_eq!(info.magic, XEN_HVM_START_MAGIC);
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.modlist_paddr, PVH_MODLIST_START);
        assert_eq!(info.memmap_entries as usize, memmap.len());
        assert_eq!(module.unwrap().paddr, 0x0800_0000);
        let mem = crate::vmm::layout::create_guest_memory(128).unwrap();
        write_pvh(&mem, 128 << 20, Some(rd), 0xe0000).unwrap();
        assert_eq!(info.rsdp_paddr, 0xe0000);
        let back: HvmStartInfo = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(back, info);
    }
}
