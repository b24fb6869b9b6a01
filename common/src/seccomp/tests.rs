//! The compiled filters run through a small interpreter of the classic BPF opcodes they use,
//! on synthetic struct seccomp_data.

use oci_spec::runtime::LinuxSeccomp;

use super::bpf::{SockFilter, ALU_AND_K, JEQ_K, JGE_K, JGT_K, JSET_K, LD_W_ABS, RET_K};
use super::compile::*;

const I386: u32 = 0x4000_0003;

/// seccomp_data as the kernel lays it out.
fn data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend(nr.to_le_bytes());
    d.extend(arch.to_le_bytes());
    d.extend(0u64.to_le_bytes());
    for a in args {
        d.extend(a.to_le_bytes());
    }
    d
}

fn run(p: &[SockFilter], d: &[u8]) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0;
    loop {
        let i = p[pc];
        pc += 1;
        let jump = |cond: bool| if cond { i.jt } else { i.jf } as usize;
        match i.code {
            LD_W_ABS => {
                let k = i.k as usize;
                a = u32::from_le_bytes(d[k..k + 4].try_into().unwrap());
            }
            ALU_AND_K => a &= i.k,
            JEQ_K => pc += jump(a == i.k),
            JGT_K => pc += jump(a > i.k),
            JGE_K => pc += jump(a >= i.k),
            JSET_K => pc += jump(a & i.k != 0),
            RET_K => return i.k,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).unwrap()
}

fn prog(json: serde_json::Value) -> Program {
    compile(&profile(json)).unwrap()
}

fn call(p: &Program, nr: u32, args: [u64; 6]) -> u32 {
    run(&p.insns, &data(AUDIT_ARCH_X86_64, nr, args))
}

const MKDIR: u32 = 83;
const GETPID: u32 = 39;
const PERSONALITY: u32 = 135;
const EPERM: u32 = RET_ERRNO | 1;

#[test]
fn deny_list_blocks_only_the_listed_call() {
    let p = prog(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    }));
    assert_eq!(call(&p, MKDIR, [0; 6]), EPERM);
    assert_eq!(call(&p, 258, [0; 6]), EPERM);
    assert_eq!(call(&p, GETPID, [0; 6]), RET_ALLOW);
}

#[test]
fn allow_list_with_default_errno() {
    let p = prog(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["tkill"], "action": "SCMP_ACT_KILL"},
            {"names": ["uname"], "action": "SCMP_ACT_TRAP"},
            {"names": ["getuid"], "action": "SCMP_ACT_LOG"},
            {"names": ["getgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}
        ]
    }));
    assert_eq!(call(&p, GETPID, [0; 6]), RET_ALLOW);
    assert_eq!(call(&p, MKDIR, [0; 6]), RET_ERRNO | 38);
    assert_eq!(call(&p, 62, [0; 6]), RET_KILL_PROCESS);
    assert_eq!(call(&p, 200, [0; 6]), RET_KILL_THREAD);
    assert_eq!(call(&p, 63, [0; 6]), RET_TRAP);
    assert_eq!(call(&p, 102, [0; 6]), RET_LOG);
    assert_eq!(call(&p, 104, [0; 6]), RET_TRACE | 7);
    assert_eq!(call(&p, 110, [0; 6]), EPERM, "errnoRet defaults to EPERM");
}

#[test]
fn foreign_arch_and_x32_never_reach_the_rules() {
    let allow_all = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
    let p = prog(allow_all.clone());
    assert_eq!(run(&p.insns, &data(I386, GETPID, [0; 6])), RET_KILL_PROCESS);
    assert_eq!(call(&p, X32_SYSCALL_BIT | MKDIR, [0; 6]), RET_KILL_PROCESS);
    assert_eq!(call(&p, u32::MAX, [0; 6]), RET_ALLOW, "-1 is not x32");
    let mut listed = allow_all;
    listed["architectures"] =
        serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    let p = prog(listed);
    let enosys = RET_ERRNO | libc::ENOSYS as u32;
    assert_eq!(run(&p.insns, &data(I386, GETPID, [0; 6])), enosys);
    assert_eq!(call(&p, X32_SYSCALL_BIT | MKDIR, [0; 6]), enosys);
    assert_eq!(call(&p, MKDIR, [0; 6]), RET_ALLOW);
}

fn one_arg(op: &str, value: u64, value_two: u64) -> Program {
    prog(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 1, "value": value, "valueTwo": value_two, "op": op}]}]
    }))
}

#[test]
fn argument_comparisons_use_all_64_bits() {
    let v = 0x1_0000_0005u64;
    let probes = [
        0,
        4,
        5,
        6,
        0x1_0000_0004,
        v,
        0x1_0000_0006,
        0x2_0000_0000,
        u64::MAX,
    ];
    type Check = fn(u64, u64) -> bool;
    let ops: [(&str, Check); 6] = [
        ("SCMP_CMP_EQ", |a, b| a == b),
        ("SCMP_CMP_NE", |a, b| a != b),
        ("SCMP_CMP_LT", |a, b| a < b),
        ("SCMP_CMP_LE", |a, b| a <= b),
        ("SCMP_CMP_GT", |a, b| a > b),
        ("SCMP_CMP_GE", |a, b| a >= b),
    ];
    for (op, holds) in ops {
        let p = one_arg(op, v, 0);
        for x in probes {
            let want = if holds(x, v) { RET_ALLOW } else { EPERM };
            let got = call(&p, PERSONALITY, [0, x, 0, 0, 0, 0]);
            assert_eq!(got, want, "{op} {x:#x} vs {v:#x}");
            // The condition is on argument 1 only, and only for personality.
            assert_eq!(call(&p, GETPID, [0, x, 0, 0, 0, 0]), EPERM);
        }
    }
    let p = one_arg(
        "SCMP_CMP_MASKED_EQ",
        0xff00_0000_0000_00ff,
        0x1200_0000_0000_0034,
    );
    for x in probes
        .into_iter()
        .chain([0x12ab_cdef_0000_1234, 0x1200_0000_0000_0034])
    {
        let holds = x & 0xff00_0000_0000_00ff == 0x1200_0000_0000_0034;
        let want = if holds { RET_ALLOW } else { EPERM };
        assert_eq!(call(&p, PERSONALITY, [0, x, 0, 0, 0, 0]), want, "{x:#x}");
    }
}

#[test]
fn conditions_of_one_entry_and_entries_or() {
    let p = prog(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                      {"index": 5, "value": 3, "op": "SCMP_CMP_GE"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    assert_eq!(call(&p, PERSONALITY, [8, 0, 0, 0, 0, 3]), RET_ALLOW);
    assert_eq!(call(&p, PERSONALITY, [8, 0, 0, 0, 0, 2]), EPERM);
    assert_eq!(call(&p, PERSONALITY, [9, 0, 0, 0, 0, 9]), EPERM);
    assert_eq!(call(&p, PERSONALITY, [0, 0, 0, 0, 0, 0]), RET_ALLOW);
    // A failed condition leaves the syscall number for the later entries.
    assert_eq!(call(&p, GETPID, [8, 0, 0, 0, 0, 0]), RET_ALLOW);
}

#[test]
fn long_programs_need_no_far_jumps() {
    // Every known syscall, with conditions, in one entry: thousands of instructions.
    let names: Vec<&str> = crate::syscalls::X86_64.iter().map(|s| s.1).collect();
    let p = prog(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": names, "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_GT"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_TRAP"}
        ]
    }));
    assert!(p.insns.len() > 2000, "{}", p.insns.len());
    assert_eq!(call(&p, 462, [0, 0, 2, 0, 0, 0]), RET_ALLOW);
    assert_eq!(call(&p, 0, [0, 0, 2, 0, 0, 0]), RET_ALLOW);
    assert_eq!(call(&p, 0, [0, 0, 1, 0, 0, 0]), EPERM);
    assert_eq!(call(&p, MKDIR, [0, 0, 1, 0, 0, 0]), RET_TRAP);
    assert_eq!(call(&p, 400, [0, 0, 2, 0, 0, 0]), EPERM);
}

#[test]
fn too_long_a_program_is_an_error() {
    let names: Vec<&str> = crate::syscalls::X86_64.iter().map(|s| s.1).collect();
    let args: Vec<_> = (0..6)
        .map(|i| serde_json::json!({"index": i, "value": 1, "op": "SCMP_CMP_LE"}))
        .collect();
    let err = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW", "args": args}]
    })))
    .unwrap_err();
    assert_eq!(err.0, "linux.seccomp.syscalls");
    assert!(err.1.contains("4096"), "{}", err.1);
}

#[test]
fn unsupported_parts_are_errors_naming_the_field() {
    let err = |json| compile(&profile(json)).unwrap_err();
    let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert_eq!(e.0, "linux.seccomp.defaultAction");
    assert!(e.1.contains("SCMP_ACT_NOTIFY"), "{}", e.1);
    let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert_eq!(e.0, "linux.seccomp.syscalls[1].action");
    let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(e.0, "linux.seccomp.syscalls[0].args[0].index");
    let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}));
    assert_eq!(e.0, "linux.seccomp.defaultErrnoRet");
    let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock"}));
    assert_eq!(e.0, "linux.seccomp.listenerPath");
}

#[test]
fn flags_map_to_the_kernel_bits() {
    let p = prog(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}));
    assert_eq!(p.flags, 2 | 4);
}

#[test]
fn programs_cross_the_protocol_unchanged() {
    let p = prog(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 1, "value": 5, "op": "SCMP_CMP_GT"}]}]}));
    let wire = crate::protocol::SeccompProgram::from(&p);
    // The words are struct sock_filter's bytes: code, jt, jf, k (little endian).
    for (w, i) in wire.filter.iter().zip(&p.insns) {
        let mut bytes = Vec::new();
        bytes.extend(i.code.to_le_bytes());
        bytes.extend([i.jt, i.jf]);
        bytes.extend(i.k.to_le_bytes());
        assert_eq!(w.to_le_bytes().to_vec(), bytes);
    }
    let json = serde_json::to_string(&wire).unwrap();
    let back =
        Program::from(&serde_json::from_str::<crate::protocol::SeccompProgram>(&json).unwrap());
    assert_eq!((back.insns, back.flags), (p.insns, p.flags));
}
