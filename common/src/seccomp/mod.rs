//! OCI `linux.seccomp` as a hand-assembled classic BPF program, shared by both backends:
//! the container runtime compiles the profile before clone and its init installs it before
//! execve; the microVM host compiles it at create and ships it in the Exec request
//! ([`crate::protocol::SeccompProgram`]) for the guest agent to install in the workload.

mod bpf;
mod compile;
mod install;
#[cfg(test)]
mod tests;

pub use bpf::{SockFilter, MAX_INSNS};
pub use compile::{compile, support, Invalid, Program, Support};
pub use install::{install, load};

use crate::protocol::SeccompProgram;

/// One instruction as a u64 with struct sock_filter's little-endian layout:
/// code in bits 0..16, jt in 16..24, jf in 24..32, k in 32..64.
fn pack(i: &SockFilter) -> u64 {
    u64::from(i.code) | u64::from(i.jt) << 16 | u64::from(i.jf) << 24 | u64::from(i.k) << 32
}

fn unpack(w: u64) -> SockFilter {
    SockFilter {
        code: w as u16,
        jt: (w >> 16) as u8,
        jf: (w >> 24) as u8,
        k: (w >> 32) as u32,
    }
}

impl From<&Program> for SeccompProgram {
    fn from(p: &Program) -> Self {
        SeccompProgram {
            filter: p.insns.iter().map(pack).collect(),
            flags: p.flags,
        }
    }
}

impl From<&SeccompProgram> for Program {
    /// Any words decode; the kernel's verifier rejects a malformed program at install.
    fn from(p: &SeccompProgram) -> Self {
        Program {
            insns: p.filter.iter().copied().map(unpack).collect(),
            flags: p.flags,
        }
    }
}
