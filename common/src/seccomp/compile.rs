//! `linux.seccomp` to a classic BPF program over struct seccomp_data.
//!
//! Layout (every jump stays inside one short block, so 8-bit offsets always suffice):
//!
//! ```text
//!   A = arch;  if A != AUDIT_ARCH_X86_64: return <foreign>
//!   A = nr;    if A & 0x40000000 (x32 ABI) and A != -1: return <foreign>
//!   per entry, per name:  if A == nr { [conditions, each failing to `fail`] return action;
//!                                      fail: A = nr }
//!   return defaultAction
//! ```
//!
//! Entries are tried in profile order and the first match wins; the conditions of one entry
//! are ANDed, several entries for one syscall are thus ORed. Names the x86-64 table does not
//! know are skipped, as libseccomp and runc skip syscalls the architecture lacks.
//!
//! Other ABIs (i386 via int 0x80, x32): the filter has no syscall tables for them, so their
//! calls never reach the rules. If the profile lists the architecture (SCMP_ARCH_X86,
//! SCMP_ARCH_X32) they fail with ENOSYS, as on a kernel built without that ABI; otherwise
//! the process is killed, which is libseccomp's action for an architecture outside the
//! filter. Either way a 32-bit call cannot get around a rule of the x86-64 profile.

use crate::syscalls;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator as Op,
};
use serde::Serialize;

use super::bpf::{Asm, SockFilter, To, ALU_AND_K, JEQ_K, JGE_K, JGT_K, JSET_K};

pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;

// struct seccomp_data offsets (little endian: the low word of an argument comes first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}

/// A compiled filter, ready for seccomp(SECCOMP_SET_MODE_FILTER).
#[derive(Debug, Clone)]
pub struct Program {
    pub insns: Vec<SockFilter>,
    /// SECCOMP_FILTER_FLAG_* bits.
    pub flags: u32,
}

/// (field, reason) of a profile the filter cannot express.
pub type Invalid = (String, String);

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    (field.into(), reason.into())
}

/// The SECCOMP_RET_* value of an action; `errno` is its errnoRet (EPERM when absent).
fn action(act: Act, errno: Option<u32>, field: &str, errno_field: &str) -> Result<u32, Invalid> {
    let data = || match errno {
        None => Ok(libc::EPERM as u32),
        Some(e) if e <= 0xffff => Ok(e),
        Some(e) => Err(invalid(
            errno_field,
            format!("{e} does not fit the 16 bits seccomp returns"),
        )),
    };
    Ok(match act {
        Act::ScmpActKill | Act::ScmpActKillThread => RET_KILL_THREAD,
        Act::ScmpActKillProcess => RET_KILL_PROCESS,
        Act::ScmpActTrap => RET_TRAP,
        Act::ScmpActErrno => RET_ERRNO | data()?,
        Act::ScmpActTrace => RET_TRACE | data()?,
        Act::ScmpActLog => RET_LOG,
        Act::ScmpActAllow => RET_ALLOW,
        Act::ScmpActNotify => {
            return Err(invalid(
                field,
                "SCMP_ACT_NOTIFY (a user-space seccomp agent) is not supported by isobox",
            ))
        }
    })
}

fn flags(list: &[LinuxSeccompFilterFlag]) -> Result<u32, Invalid> {
    list.iter().try_fold(0, |acc, f| {
        Ok(acc
            | match f {
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    return Err(invalid(
                        "linux.seccomp.flags",
                        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies to a notify listener, which is not supported",
                    ))
                }
            })
    })
}

/// What `features` reports of seccomp: of every action, operator and flag the runtime-spec
/// names, those `compile` takes (asked of [`action`] and [`flags`] themselves), and the
/// architectures the filter answers for.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Support {
    pub actions: Vec<Act>,
    pub operators: Vec<Op>,
    pub archs: Vec<Arch>,
    pub known_flags: Vec<LinuxSeccompFilterFlag>,
    pub supported_flags: Vec<LinuxSeccompFilterFlag>,
}

pub fn support() -> Support {
    use LinuxSeccompFilterFlag as F;
    let actions = [
        Act::ScmpActKill,
        Act::ScmpActKillProcess,
        Act::ScmpActKillThread,
        Act::ScmpActTrap,
        Act::ScmpActErrno,
        Act::ScmpActTrace,
        Act::ScmpActAllow,
        Act::ScmpActLog,
        Act::ScmpActNotify,
    ];
    let known_flags = vec![
        F::SeccompFilterFlagLog,
        F::SeccompFilterFlagSpecAllow,
        F::SeccompFilterFlagTsync,
        F::SeccompFilterFlagWaitKillableRecv,
    ];
    Support {
        actions: actions
            .into_iter()
            .filter(|a| action(*a, None, "", "").is_ok())
            .collect(),
        // `condition` encodes each of them.
        operators: vec![
            Op::ScmpCmpEq,
            Op::ScmpCmpNe,
            Op::ScmpCmpMaskedEq,
            Op::ScmpCmpGt,
            Op::ScmpCmpGe,
            Op::ScmpCmpLt,
            Op::ScmpCmpLe,
        ],
        archs: vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        supported_flags: known_flags
            .iter()
            .copied()
            .filter(|f| flags(&[*f]).is_ok())
            .collect(),
        known_flags,
    }
}

/// Compile the profile. Errors name the field under `linux.seccomp`.
pub fn compile(s: &LinuxSeccomp) -> Result<Program, Invalid> {
    if s.listener_path().is_some() {
        return Err(invalid(
            "linux.seccomp.listenerPath",
            "a seccomp notify listener is not supported by isobox",
        ));
    }
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
    )?;
    let flags = flags(s.flags().as_deref().unwrap_or_default())?;
    let arches = s.architectures().as_deref().unwrap_or_default();
    let foreign = |arch: Arch| {
        if arches.contains(&arch) {
            RET_ERRNO | libc::ENOSYS as u32
        } else {
            RET_KILL_PROCESS
        }
    };

    let mut asm = Asm::default();
    let native = asm.label();
    asm.load(OFF_ARCH);
    asm.jump(JEQ_K, AUDIT_ARCH_X86_64, To::L(native), To::Next);
    asm.ret(foreign(Arch::ScmpArchX86));
    asm.bind(native);
    asm.load(OFF_NR);
    let x64 = asm.label();
    asm.jump(JSET_K, X32_SYSCALL_BIT, To::Next, To::L(x64));
    // -1 is what a tracer sets to skip a call, not an x32 number.
    asm.jump(JEQ_K, u32::MAX, To::L(x64), To::Next);
    asm.ret(foreign(Arch::ScmpArchX32));
    asm.bind(x64);

    for (i, sc) in s
        .syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let ret = action(
            sc.action(),
            sc.errno_ret(),
            &format!("{field}.action"),
            &format!("{field}.errnoRet"),
        )?;
        let args = sc.args().as_deref().unwrap_or_default();
        for (j, a) in args.iter().enumerate() {
            if a.index() >= 6 {
                return Err(invalid(
                    format!("{field}.args[{j}].index"),
                    format!("{} is not an argument index (0..=5)", a.index()),
                ));
            }
        }
        for nr in sc.names().iter().filter_map(|n| syscalls::x86_64_number(n)) {
            rule(&mut asm, nr, args, ret);
        }
    }
    asm.ret(default);
    let insns = asm
        .finish()
        .map_err(|e| invalid("linux.seccomp.syscalls", e))?;
    Ok(Program { insns, flags })
}

/// `if nr matches and every condition holds: return ret`, leaving A = nr either way.
fn rule(asm: &mut Asm, nr: u32, args: &[LinuxSeccompArg], ret: u32) {
    let next = asm.label();
    if args.is_empty() {
        asm.jump(JEQ_K, nr, To::Next, To::L(next));
        asm.ret(ret);
        asm.bind(next);
        return;
    }
    let fail = asm.label();
    asm.jump(JEQ_K, nr, To::Next, To::L(next));
    for a in args {
        condition(asm, a, fail);
    }
    asm.ret(ret);
    asm.bind(fail);
    asm.load(OFF_NR);
    asm.bind(next);
}

/// Fall through when the 64-bit condition holds, jump to `fail` otherwise.
fn condition(asm: &mut Asm, a: &LinuxSeccompArg, fail: usize) {
    let i = a.index() as u32;
    let (hi, lo) = (off_arg(i) + 4, off_arg(i));
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let (vhi, vlo) = split(a.value());
    let pass = asm.label();
    let f = To::L(fail);
    let p = To::L(pass);
    match a.op() {
        Op::ScmpCmpEq => {
            asm.load(hi);
            asm.jump(JEQ_K, vhi, To::Next, f);
            asm.load(lo);
            asm.jump(JEQ_K, vlo, p, f);
        }
        Op::ScmpCmpNe => {
            asm.load(hi);
            asm.jump(JEQ_K, vhi, To::Next, p);
            asm.load(lo);
            asm.jump(JEQ_K, vlo, f, p);
        }
        Op::ScmpCmpMaskedEq => {
            let (whi, wlo) = split(a.value_two().unwrap_or(0));
            asm.load(hi);
            asm.op(ALU_AND_K, vhi);
            asm.jump(JEQ_K, whi, To::Next, f);
            asm.load(lo);
            asm.op(ALU_AND_K, vlo);
            asm.jump(JEQ_K, wlo, p, f);
        }
        // Unsigned 64-bit order: decided by the high words unless they are equal.
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            asm.load(hi);
            asm.jump(JGT_K, vhi, p, To::Next);
            asm.jump(JEQ_K, vhi, To::Next, f);
            asm.load(lo);
            let cmp = if a.op() == Op::ScmpCmpGt {
                JGT_K
            } else {
                JGE_K
            };
            asm.jump(cmp, vlo, p, f);
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            asm.load(hi);
            asm.jump(JGT_K, vhi, f, To::Next);
            asm.jump(JEQ_K, vhi, To::Next, p);
            asm.load(lo);
            // lo < v is !(lo >= v); lo <= v is !(lo > v).
            let cmp = if a.op() == Op::ScmpCmpLt {
                JGE_K
            } else {
                JGT_K
            };
            asm.jump(cmp, vlo, f, p);
        }
    }
    asm.bind(pass);
}
