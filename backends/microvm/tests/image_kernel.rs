//! Kernel resolution and, when asked, real provisioning of Debian's cloud kernel.

use std::path::Path;

use isobox_microvm::image::{
    inspect_kernel, provision_kernel, resolve_kernel, KernelFormat, KernelSource, ResolveOptions,
};
use isobox_microvm::MicrovmError;

fn opts(data: &Path) -> ResolveOptions {
    ResolveOptions {
        data_dir: data.to_path_buf(),
        env_kernel: None,
        provision: false,
        host_boot: false,
        progress: false,
    }
}

/// A minimal ELF64 header for `machine`.
fn elf(machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little-endian
    h[6] = 1;
    h[16] = 2; // ET_EXEC
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h
}

#[test]
fn explicit_kernel_is_validated() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("vmlinux-6.1.0-test");
    std::fs::write(&good, elf(62)).unwrap();
    let k = resolve_kernel(Some(&good), &opts(d.path())).unwrap();
    assert_eq!(k.source, KernelSource::Flag);
    assert_eq!(k.format, KernelFormat::Vmlinux);
    assert_eq!(k.release.as_deref(), Some("6.1.0-test"));
    assert_eq!(k.size_bytes, 64);
    let shown = k.to_string();
    assert!(
        shown.contains("--kernel") && shown.contains("vmlinux-6.1.0-test"),
        "{shown}"
    );

    for (name, bytes, why) in [
        ("arm", elf(183), "machine 183"),
        ("text", b"#!/bin/sh\necho hi\n".to_vec(), "neither an ELF"),
        ("short", b"\x7fELF\x02".to_vec(), "truncated"),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = resolve_kernel(Some(&p), &opts(d.path())).unwrap_err();
        match &e {
            MicrovmError::Kernel { path, reason } => {
                assert_eq!(path, &p);
                assert!(
                    reason.starts_with("not a Linux kernel") && reason.contains(why),
                    "{reason}"
                );
            }
            other => panic!("unexpected error {other}"),
        }
    }
    let missing = d.path().join("missing");
    let e = resolve_kernel(Some(&missing), &opts(d.path())).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn env_kernel_comes_before_the_cache_and_is_not_replaced_when_bad() {
    let d = tempfile::tempdir().unwrap();
    let kernels = d.path().join("kernels");
    std::fs::create_dir_all(&kernels).unwrap();
    std::fs::write(kernels.join("vmlinux-6.1.0-9-cloud-amd64"), elf(62)).unwrap();
    std::fs::write(kernels.join("vmlinux-6.1.0-10-cloud-amd64"), elf(62)).unwrap();
    // A corrupt entry, newest by name, is passed over.
    std::fs::write(kernels.join("vmlinux-6.1.0-11-cloud-amd64"), b"junk").unwrap();

    let env = d.path().join("env-kernel");
    std::fs::write(&env, elf(62)).unwrap();
    let mut o = opts(d.path());
    o.env_kernel = Some(env.clone());
    let k = resolve_kernel(None, &o).unwrap();
    assert_eq!(
        (k.source, k.path.as_path()),
        (KernelSource::Env, env.as_path())
    );

    std::fs::write(&env, b"not a kernel").unwrap();
    let e = resolve_kernel(None, &o).unwrap_err();
    assert!(matches!(e, MicrovmError::Kernel { .. }), "{e}");

    let k = resolve_kernel(None, &opts(d.path())).unwrap();
    assert_eq!(k.source, KernelSource::Cache);
    assert_eq!(k.release.as_deref(), Some("6.1.0-10-cloud-amd64"));
}

#[test]
fn nothing_found_says_how_to_provide_a_kernel() {
    let d = tempfile::tempdir().unwrap();
    let e = resolve_kernel(None, &opts(d.path())).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, MicrovmError::NoKernel(_)), "{msg}");
    assert!(
        msg.contains("--kernel PATH")
            && msg.contains("ISOBOX_KERNEL")
            && msg.contains("linux-image-cloud-amd64"),
        "{msg}"
    );
}

/// Checks what a real provisioned kernel must be: an x86-64 ELF with the PVH entry note.
fn check_real_vmlinux(path: &Path) {
    let k = inspect_kernel(path, KernelSource::Cache).unwrap();
    assert_eq!(k.format, KernelFormat::Vmlinux);
    assert!(
        k.size_bytes > 10 << 20,
        "a real vmlinux is tens of MiB, got {}",
        k.size_bytes
    );
    let data = std::fs::read(path).unwrap();
    // XEN_ELFNOTE_PHYS32_ENTRY (18) in a "Xen" note marks the PVH entry point.
    let has_pvh = data.windows(16).any(|w| {
        w[0..4] == 4u32.to_le_bytes() && w[8..12] == 18u32.to_le_bytes() && &w[12..16] == b"Xen\0"
    });
    assert!(has_pvh, "no PVH note in {}", path.display());
}

/// Downloads ~70 MB. Run with `cargo test -p isobox-microvm --test image_kernel -- --ignored`;
/// it provisions into `$ISOBOX_DATA_DIR` when set, else into a temporary directory.
#[test]
#[ignore = "downloads the Debian cloud kernel package"]
fn provisions_the_real_debian_cloud_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let data = std::env::var_os("ISOBOX_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let report = match provision_kernel(&data, true) {
        Ok(r) => r,
        Err(e) if e.to_string().contains("apt-get") => {
            isobox_common::skip::skip(&format!("apt-get cannot download the kernel here: {e}"));
            return;
        }
        Err(e) => panic!("{e}"),
    };
    eprintln!("{report:#?}");
    assert!(
        report.package.starts_with("linux-image-") && report.package != "linux-image-cloud-amd64"
    );
    assert!(
        report.release.ends_with("-cloud-amd64"),
        "{}",
        report.release
    );
    assert_eq!(
        report.vmlinux,
        data.join("kernels")
            .join(format!("vmlinux-{}", report.release))
    );
    check_real_vmlinux(&report.vmlinux);
    let bz = inspect_kernel(&report.bzimage, KernelSource::Cache).unwrap();
    assert_eq!(bz.format, KernelFormat::BzImage);
    assert_eq!(bz.release.as_deref(), Some(report.release.as_str()));
    // Nothing but the kernels and the lock file is left in the cache.
    let mut left: Vec<String> = std::fs::read_dir(data.join("kernels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".lock")
        .collect();
    left.sort();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The cache now answers without a download.
    let k = resolve_kernel(None, &opts(&data)).unwrap();
    assert_eq!(k.source, KernelSource::Cache);
}

/// Checks the kernel already cached on this host, if any.
#[test]
fn cached_kernel_on_this_host_is_sound() {
    let o = ResolveOptions::no_provision();
    if isobox_common::skip::must_run() {
        // Under CI the test must run: fill the cache first.
        resolve_kernel(None, &ResolveOptions::default()).unwrap();
    }
    match isobox_microvm::image::cached_kernel(&o.data_dir) {
        Some(k) => check_real_vmlinux(&k.path),
        None => {
            isobox_common::skip::skip(&format!("no kernel cached under {}", o.data_dir.display()))
        }
    }
}
