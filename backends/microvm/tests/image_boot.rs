//! The provisioned kernel and a built initramfs boot together: qemu (TCG) runs the kernel,
//! the kernel unpacks the archive and runs /init, which prints a marker and powers off.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isobox_microvm::image::{
    build_initramfs, cached_bzimage, resolve_kernel, KernelFormat, ResolveOptions,
};

const MARKER: &str = "ISOBOX-INITRAMFS-OK";

/// Boots `kernel` with `initrd` under qemu's microvm machine; returns the serial output, or
/// None (after killing qemu) when it does not finish in time.
fn boot(kernel: &Path, initrd: &Path) -> Option<String> {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-M", "microvm", "-accel", "tcg", "-cpu", "max", "-m", "256", "-smp", "1",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 quiet panic=-1 tsc_early_khz=2600000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(reader.join().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "qemu did not finish in time; output:\n{}",
                reader.join().unwrap()
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn provisioned_kernel_boots_the_built_initramfs_under_qemu() {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        isobox_common::skip::skip("qemu-system-x86_64 is not installed");
        return;
    }
    let opts = ResolveOptions {
        env_kernel: None,
        // Under CI the test must run: provision the kernel rather than skip.
        provision: isobox_common::skip::must_run(),
        host_boot: false,
        progress: false,
        ..ResolveOptions::default()
    };
    let kernel = match resolve_kernel(None, &opts) {
        Ok(k) => k,
        Err(e) => {
            isobox_common::skip::skip(&format!(
                "no cached kernel ({e}); `isobox kernel` provisions one"
            ));
            return;
        }
    };
    assert_eq!(kernel.format, KernelFormat::Vmlinux);
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        isobox_common::skip::skip("/bin/busybox (busybox-static) is not installed");
        return;
    }

    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    // Stands in for the agent: /init must run and see the mount points the builder added.
    let agent = d.path().join("agent");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\n/bin/busybox mount -t proc proc /proc && \
             [ -d /sys ] && [ -d /tmp ] && [ -d /run ] && [ -c /dev/console ] && \
             echo {MARKER} $(/bin/busybox cat /proc/sys/kernel/osrelease)\n\
             /bin/busybox poweroff -f\n"
        ),
    )
    .unwrap();
    let initrd = d.path().join("initramfs.cpio");
    build_initramfs(&root, &agent, &initrd).unwrap();

    // The vmlinux (PVH entry) and, when cached beside it, the bzImage.
    let mut kernels = vec![kernel.path.clone()];
    if let Some(bz) = kernel
        .release
        .as_deref()
        .and_then(|r| cached_bzimage(&opts.data_dir, r))
    {
        kernels.push(bz);
    }
    for k in kernels {
        let Some(out) = boot(&k, &initrd) else {
            // TCG can hang in early timer calibration; that is the emulator, not the image.
            isobox_common::skip::skip_for_hardware(&format!(
                "needs hardware KVM: {} did not finish under TCG",
                k.display()
            ));
            continue;
        };
        let release = kernel.release.as_deref().unwrap_or("");
        assert!(
            out.contains(&format!("{MARKER} {release}")),
            "{}: no marker in the serial output:\n{out}",
            k.display()
        );
    }
}
