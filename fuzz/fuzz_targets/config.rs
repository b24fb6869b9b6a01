//! config.json text → `Bundle::from_config_text` (strict parse, then validation against a
//! small rootfs on disk) → the container backend's checks before create (`isobox_container::
//! check`: seccomp compile, mounts, devices, rlimits, capabilities, cgroup values). Any panic,
//! overflow, hang or runaway allocation is a bug in the library, and so is a compiled seccomp
//! filter that the kernel would refuse.

#![no_main]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;

use isobox_common::seccomp::{self, SockFilter, MAX_INSNS};
use isobox_common::Bundle;
use isobox_container::cgroups::Mode;
use libfuzzer_sys::fuzz_target;

/// One bundle directory per process: `rootfs/` with an executable `/bin/sh`, a few
/// directories and links (one relative, one absolute, one loop) for path resolution.
fn bundle_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("isobox-fuzz-bundle-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("rootfs");
        for d in ["bin", "usr/bin", "dev", "proc", "sys", "tmp", "etc"] {
            fs::create_dir_all(root.join(d)).expect("rootfs dir");
        }
        let sh = root.join("bin/sh");
        fs::write(&sh, "#!/bin/sh\n").expect("bin/sh");
        fs::set_permissions(&sh, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
        symlink("../../bin/sh", root.join("usr/bin/env")).expect("link");
        symlink("/bin", root.join("sbin")).expect("link");
        symlink("loop", root.join("loop")).expect("link");
        // Canonical, as Bundle::load passes it.
        let canon = fs::canonicalize(dir.path()).expect("canonicalize");
        assert_eq!(canon, dir.path());
        dir
    })
    .path()
}

/// What the kernel's classic-BPF checker (bpf_check_classic, then seccomp's own) would
/// refuse at install time, long after create said yes.
fn check_filter(insns: &[SockFilter]) {
    assert!(
        !insns.is_empty() && insns.len() <= MAX_INSNS,
        "{} instructions",
        insns.len()
    );
    for (pc, i) in insns.iter().enumerate() {
        let class = i.code & 0x07;
        match class {
            // BPF_LD: immediate, scratch memory, length, or a 32-bit absolute load inside
            // seccomp_data (64 bytes), aligned.
            0x00 => match i.code {
                0x00 | 0x60 | 0x80 => {}
                0x20 => assert!(i.k % 4 == 0 && i.k < 64, "pc {pc}: load {i:?}"),
                _ => panic!("pc {pc}: load {i:?} seccomp refuses"),
            },
            // BPF_ALU: no division or modulo by a zero constant.
            0x04 => assert!(
                !(matches!(i.code & 0xf8, 0x30 | 0x90) && i.k == 0),
                "pc {pc}: {i:?} divides by 0"
            ),
            // BPF_JMP: BPF_JA jumps by k, the others by jt/jf; all inside the program.
            0x05 => {
                let rest = insns.len() - pc - 1;
                if i.code & 0xf0 == 0x00 {
                    assert!((i.k as usize) < rest, "pc {pc}: ja {i:?}");
                } else {
                    assert!(
                        (i.jt as usize) < rest && (i.jf as usize) < rest,
                        "pc {pc}: jump {i:?} past the end ({rest} left)"
                    );
                }
            }
            // LDX, ST, STX, RET, MISC.
            _ => {}
        }
    }
    assert_eq!(
        insns.last().unwrap().code & 0x07,
        0x06,
        "the filter must end in a return"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = bundle_dir();
    let bundle = match Bundle::from_config_text(dir.to_path_buf(), text) {
        Ok(b) => b,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    if let Some(profile) = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
    {
        if let Ok(prog) = seccomp::compile(profile) {
            check_filter(&prog.insns);
        }
    }
    let _ = bundle.search_path();
    let _ = bundle.resolve_executable();
    for mode in [Mode::V1, Mode::V2] {
        if let Err(e) = isobox_container::check(&bundle, "fuzz", mode) {
            let _ = e.to_string();
        }
    }
});
