//! The device allowlist on cgroup v2, which has no devices.allow/deny files: a small
//! BPF_PROG_TYPE_CGROUP_DEVICE program, built from the same rules v1 gets, attached to the
//! container's cgroup. The kernel runs it on every open/mknod of a device node.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// bpf_cgroup_dev_ctx: access_type = access << 16 | type; then major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One BPF instruction (struct bpf_insn): registers packed as dst | src << 4.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes: class | op | source.
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// One rule in a form the program can test.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    typ: Option<i32>,
    major: Option<i32>,
    minor: Option<i32>,
    access: i32,
}

/// Parse devices.allow syntax: `a`, or `c 1:3 rwm` with `*` for any number.
fn parse(allow: bool, rule: &str) -> Option<Rule> {
    if rule == "a" {
        let access = ACC_MKNOD | ACC_READ | ACC_WRITE;
        return Some(Rule {
            allow,
            typ: None,
            major: None,
            minor: None,
            access,
        });
    }
    let mut parts = rule.split(' ');
    let typ = match parts.next()? {
        "c" => DEV_CHAR,
        "b" => DEV_BLOCK,
        _ => return None,
    };
    let (major, minor) = parts.next()?.split_once(':')?;
    let num = |s: &str| {
        if s == "*" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let mut access = 0;
    for c in parts.next()?.chars() {
        access |= match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => return None,
        };
    }
    Some(Rule {
        allow,
        typ: Some(typ),
        major: num(major)?,
        minor: num(minor)?,
        access,
    })
}

/// The program: the last matching rule decides; with none matching, access is allowed
/// (the v1 controller's starting state, which a leading `a` deny rule overrides).
pub(crate) fn program(rules: &[(bool, String)]) -> Result<Vec<Insn>, String> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),        // r2 = ctx->access_type
        insn(AND32_K, 2, 0, 0, 0xffff), // r2 = device type
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16), // r3 = requested access
        insn(LDX_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_W, 5, 1, 8, 0),    // r5 = minor
    ];
    for (allow, text) in rules.iter().rev() {
        let r = parse(*allow, text).ok_or_else(|| format!("device rule {text:?} is malformed"))?;
        // Each test jumps past this rule's block on mismatch; offsets are patched below.
        let mut block: Vec<Insn> = Vec::new();
        if let Some(t) = r.typ {
            block.push(insn(JNE_K, 2, 0, 0, t));
        }
        if r.access != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Every requested access bit must be one the rule covers.
            block.push(insn(MOV32_X, 6, 3, 0, 0));
            block.push(insn(AND32_K, 6, 0, 0, r.access));
            block.push(insn(JNE_X, 6, 3, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, m));
        }
        if let Some(m) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, m));
        }
        let matches_all = block.is_empty();
        block.push(insn(MOV64_K, 0, 0, 0, i32::from(r.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JNE_X {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
        // Nothing after a rule that matches everything is reachable, and the verifier
        // refuses unreachable instructions.
        if matches_all {
            return Ok(p);
        }
    }
    p.push(insn(MOV64_K, 0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: attr is a live, fully initialised bpf_attr prefix of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Load the program for `rules` and attach it to the v2 cgroup `dir`. It stays attached
/// (the kernel holds it) until the cgroup is removed.
pub(crate) fn attach(dir: &Path, rules: &[(bool, String)]) -> Result<(), String> {
    let insns = program(rules)?;
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"isobox_dev");
    let mut load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let prog = bpf(BPF_PROG_LOAD, &mut load).map_err(|e| {
        let text = String::from_utf8_lossy(&log);
        let verifier = text
            .trim_end_matches('\0')
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        format!("loading the device filter (bpf BPF_PROG_LOAD): {e} {verifier}")
    })?;
    // SAFETY: the kernel just returned this new descriptor to us alone.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let cgroup = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| format!("open {}: {e}", dir.display()))?;
    let mut att = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut att)
        .map_err(|e| format!("attaching the device filter to {}: {e}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(bool, &str)]) -> Vec<(bool, String)> {
        list.iter().map(|(a, r)| (*a, r.to_string())).collect()
    }

    /// Run the program on one access in a tiny interpreter of the opcodes it uses.
    fn run(p: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = i64::from(ctx[(i.off / 4) as usize]),
                AND32_K => r[dst] &= i64::from(i.imm),
                RSH32_K => r[dst] >>= i.imm,
                MOV32_X => r[dst] = r[src],
                MOV64_K => r[dst] = i64::from(i.imm),
                JNE_K if r[dst] != i64::from(i.imm) => pc += i.off as usize,
                JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn last_matching_rule_wins() {
        let p = program(&rules(&[
            (false, "a"),
            (true, "c 1:3 rwm"),
            (true, "c 136:* rw"),
            (true, "b *:* m"),
            (false, "c 1:3 w"),
        ]))
        .unwrap();
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0, "a later deny wins");
        assert_eq!(run(&p, DEV_CHAR, rw, 136, 7), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 136, 7), 0, "m not granted");
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
        assert_eq!(
            run(&p, DEV_CHAR, ACC_READ, 1, 5),
            0,
            "denied by the leading a"
        );
        // No rules at all: the v1 starting state, everything allowed.
        assert_eq!(run(&program(&[]).unwrap(), DEV_CHAR, rw, 1, 5), 1);
        assert!(program(&rules(&[(true, "x 1:2 r")])).is_err());
        // A final allow-all ends the program: the verifier refuses unreachable code.
        let p = program(&rules(&[(false, "c 1:3 r"), (true, "a")])).unwrap();
        assert_eq!(p.len(), 6 + 2);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
    }
}
