//! A tiny guest for testing and benchmarking a VMM without a Linux kernel: a minimal ELF64
//! image with a PVH entry note whose 32-bit code writes a greeting to the first UART and resets
//! the machine. qemu's `-M microvm -kernel` boots the same file.

/// What the guest writes to port 0x3f8.
pub const GREETING: &[u8] = b"isobox\n";
/// Where the code is loaded and entered (1 MiB, the usual kernel floor).
pub const LOAD_ADDR: u64 = 0x10_0000;

const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// qemu microvm's ACPI generic event device: reset register and the value that resets.
const GED_RESET_REG: u32 = 0xfea0_0202;
const GED_RESET_VALUE: u8 = 0x42;
const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const CODE_OFFSET: usize = 0x100;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_R: u32 = 4;
const PF_X: u32 = 1;

/// The 32-bit protected-mode entry code (paging off, flat segments, as PVH guarantees).
/// It tries three ways to end the machine, so one image serves several VMMs: the i8042 reset
/// (this VMM, Firecracker, qemu's pc machine), the ACPI GED reset register (qemu's microvm
/// machine), and finally a triple fault.
fn code() -> Vec<u8> {
    let mut c = Vec::new();
    // mov edx, 0x3f8
    c.extend_from_slice(&[0xba, 0xf8, 0x03, 0x00, 0x00]);
    for b in GREETING {
        // mov al, b; out dx, al
        c.extend_from_slice(&[0xb0, *b, 0xee]);
    }
    // mov al, 0xfe; out 0x64, al
    c.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64]);
    // mov byte [GED_RESET_REG], GED_RESET_VALUE
    c.extend_from_slice(&[0xc6, 0x05]);
    c.extend_from_slice(&GED_RESET_REG.to_le_bytes());
    c.push(GED_RESET_VALUE);
    // lidt [idt_ptr]; int3; hlt; jmp hlt — an empty IDT turns the trap into a triple fault.
    let idt_ptr_at = c.len() + 7 + 1 + 1 + 2;
    let idt_ptr_addr = (LOAD_ADDR + idt_ptr_at as u64) as u32;
    c.extend_from_slice(&[0x0f, 0x01, 0x1d]);
    c.extend_from_slice(&idt_ptr_addr.to_le_bytes());
    c.push(0xcc);
    c.push(0xf4);
    c.extend_from_slice(&[0xeb, 0xfd]);
    debug_assert_eq!(c.len(), idt_ptr_at);
    // The IDT pointer: limit 0, base 0.
    c.extend_from_slice(&[0; 6]);
    c
}

fn note() -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&4u32.to_le_bytes()); // namesz ("Xen\0")
    n.extend_from_slice(&8u32.to_le_bytes()); // descsz: a pointer-sized entry, as Linux emits
    n.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    n.extend_from_slice(b"Xen\0");
    n.extend_from_slice(&LOAD_ADDR.to_le_bytes());
    n
}

#[allow(clippy::too_many_arguments)]
fn phdr(out: &mut Vec<u8>, kind: u32, flags: u32, offset: u64, addr: u64, size: u64, align: u64) {
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&addr.to_le_bytes()); // p_vaddr
    out.extend_from_slice(&addr.to_le_bytes()); // p_paddr
    out.extend_from_slice(&size.to_le_bytes()); // p_filesz
    out.extend_from_slice(&size.to_le_bytes()); // p_memsz
    out.extend_from_slice(&align.to_le_bytes());
}

/// The complete ELF image.
pub fn test_guest_elf() -> Vec<u8> {
    elf_with_code(&code())
}

/// A guest that echoes what arrives on the second UART (0x2f8, the agent channel) back to it,
/// polling the line status register, and resets after echoing a newline.
pub fn echo_guest_elf() -> Vec<u8> {
    elf_with_code(&echo_code())
}

fn echo_code() -> Vec<u8> {
    vec![
        0xba, 0xfd, 0x02, 0x00, 0x00, // 0: mov edx, 0x2fd (LSR)
        0xec, // 5: in al, dx
        0xa8, 0x01, // 6: test al, 1 (data ready)
        0x74, 0xfb, // 8: jz 5
        0xba, 0xf8, 0x02, 0x00, 0x00, // 10: mov edx, 0x2f8
        0xec, // 15: in al, dx
        0xee, // 16: out dx, al
        0x3c, 0x0a, // 17: cmp al, '\n'
        0x75, 0xeb, // 19: jne 0
        0xb0, 0xfe, 0xe6, 0x64, // 21: mov al, 0xfe; out 0x64, al
        0xf4, 0xeb, 0xfd, // 25: hlt; jmp 25
    ]
}

fn elf_with_code(code: &[u8]) -> Vec<u8> {
    let note = note();
    let note_offset = EHDR_LEN + 2 * PHDR_LEN;

    let mut elf = Vec::with_capacity(CODE_OFFSET + code.len());
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // ELF64, LE, version 1, SysV
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // e_entry
    elf.extend_from_slice(&(EHDR_LEN as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&(EHDR_LEN as u16).to_le_bytes());
    elf.extend_from_slice(&(PHDR_LEN as u16).to_le_bytes());
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let code_len = code.len() as u64;
    phdr(
        &mut elf,
        PT_LOAD,
        PF_R | PF_X,
        CODE_OFFSET as u64,
        LOAD_ADDR,
        code_len,
        16,
    );
    let note_len = note.len() as u64;
    phdr(&mut elf, PT_NOTE, PF_R, note_offset as u64, 0, note_len, 4);
    elf.extend_from_slice(&note);
    elf.resize(CODE_OFFSET, 0);
    elf.extend_from_slice(code);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_loader::loader::elf::{Elf, PvhBootCapability};
    use linux_loader::loader::KernelLoader;
    use std::io::Cursor;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn parses_with_linux_loader_and_has_a_pvh_entry() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let elf = test_guest_elf();
        let r = Elf::load(
            &mem,
            None,
            &mut Cursor::new(&elf),
            Some(GuestAddress(LOAD_ADDR)),
        )
        .unwrap();
        assert_eq!(
            r.pvh_boot_cap,
            PvhBootCapability::PvhEntryPresent(GuestAddress(LOAD_ADDR))
        );
        assert_eq!(r.kernel_load, GuestAddress(LOAD_ADDR));
        let code = code();
        let mut loaded = vec![0u8; code.len()];
        mem.read_slice(&mut loaded, GuestAddress(LOAD_ADDR))
            .unwrap();
        assert_eq!(loaded, code);
        assert_eq!(r.kernel_end, LOAD_ADDR + code.len() as u64);
    }

    #[test]
    fn code_writes_the_greeting_then_resets() {
        let c = code();
        let outs: Vec<u8> = c
            .windows(3)
            .filter(|w| w[0] == 0xb0 && w[2] == 0xee)
            .map(|w| w[1])
            .collect();
        assert_eq!(outs, GREETING);
        assert!(c.windows(4).any(|w| w == [0xb0, 0xfe, 0xe6, 0x64]));
    }
}
