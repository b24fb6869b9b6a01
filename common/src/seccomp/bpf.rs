//! A tiny classic-BPF assembler with labels. Conditional jumps in classic BPF have 8-bit
//! offsets; the filter layout keeps every label within a short block (see `compile`), and
//! `finish` checks it rather than trusting it.

/// struct sock_filter.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Opcodes: class | size/op | mode/source.
pub const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
pub const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
pub const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
pub const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
pub const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// Where a conditional jump goes: the next instruction or a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Next,
    L(usize),
}

#[derive(Default)]
pub struct Asm {
    code: Vec<(SockFilter, To, To)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    pub fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    /// Put `label` at the next instruction.
    pub fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }

    pub fn op(&mut self, code: u16, k: u32) {
        self.jump(code, k, To::Next, To::Next);
    }

    pub fn jump(&mut self, code: u16, k: u32, jt: To, jf: To) {
        let insn = SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        };
        self.code.push((insn, jt, jf));
    }

    pub fn load(&mut self, offset: u32) {
        self.op(LD_W_ABS, offset);
    }

    pub fn ret(&mut self, action: u32) {
        self.op(RET_K, action);
    }

    /// Resolve the labels. Errors if the program is too long or a jump is out of reach.
    pub fn finish(self) -> Result<Vec<SockFilter>, String> {
        if self.code.len() > MAX_INSNS {
            return Err(format!(
                "the filter needs {} instructions, more than the kernel's limit of {MAX_INSNS}",
                self.code.len()
            ));
        }
        let labels = self.labels;
        let offset = |at: usize, to: To| -> Result<u8, String> {
            let target = match to {
                To::Next => return Ok(0),
                To::L(l) => labels[l].ok_or("a jump to an unbound label")?,
            };
            target
                .checked_sub(at + 1)
                .and_then(|d| u8::try_from(d).ok())
                .ok_or_else(|| format!("a jump from {at} to {target} is out of reach"))
        };
        self.code
            .iter()
            .enumerate()
            .map(|(at, (insn, jt, jf))| {
                Ok(SockFilter {
                    jt: offset(at, *jt)?,
                    jf: offset(at, *jf)?,
                    ..*insn
                })
            })
            .collect()
    }
}
