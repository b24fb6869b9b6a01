//! Launching a VM: the built-in VMM (in process, on /dev/kvm) against qemu (a new process) on
//! the same tiny PVH test guest, which prints a greeting and resets at once — so this measures
//! VMM setup and teardown, not a kernel boot.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use isobox_microvm::host::{detect, HostKind};
use isobox_microvm::vmm::testguest::GREETING;
use isobox_microvm::vmm::{run, test_guest_elf, VmConfig, VmExit};

fn skip(what: &str, why: &str) {
    eprintln!("vmm_launch/{what}: skipped: {why}");
}

fn vmm_launch(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let guest = tmp.path().join("tiny.elf");
    fs::write(&guest, test_guest_elf()).expect("write the test guest");
    let host = detect();

    let mut group = c.benchmark_group("vmm_launch");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));

    let builtin = || -> Result<(), String> {
        let cfg = VmConfig {
            mem_mib: 32,
            ..VmConfig::new(&guest, "", Box::new(std::io::sink()))
        };
        match run(cfg) {
            Ok(VmExit::Reset | VmExit::TripleFault) => Ok(()),
            Ok(other) => Err(format!("guest ended with {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    };
    if let HostKind::NoKvm(why) = &host {
        skip("builtin", why);
    } else if let Err(e) = builtin() {
        skip("builtin", &format!("a trial launch failed: {e}"));
    } else {
        group.bench_function("builtin", |b| b.iter(|| builtin().expect("launch")));
    }

    // qemu on the same accelerator when KVM works, else under TCG (labelled so).
    let accel = if host.has_kvm() { "kvm" } else { "tcg" };
    let console = tmp.path().join("console.txt");
    let qemu = |accel: &str| -> Result<(), String> {
        let _ = fs::remove_file(&console);
        let status = Command::new("qemu-system-x86_64")
            .args(["-M", "microvm", "-accel", accel, "-m", "32M", "-smp", "1"])
            .args(["-cpu", if accel == "kvm" { "host" } else { "max" }])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .arg("-chardev")
            .arg(format!("file,id=con,path={}", console.display()))
            .args(["-serial", "chardev:con", "-kernel"])
            .arg(&guest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("spawning qemu-system-x86_64: {e}"))?;
        let seen = fs::read(&console).unwrap_or_default();
        if status.status.success() && seen.starts_with(GREETING) {
            Ok(())
        } else {
            Err(format!(
                "{}; console {:?}; {}",
                status.status,
                String::from_utf8_lossy(&seen),
                String::from_utf8_lossy(&status.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            ))
        }
    };
    let mut qemu_accel = None;
    for a in [accel, "tcg"] {
        match qemu(a) {
            Ok(()) => {
                qemu_accel = Some(a);
                break;
            }
            Err(e) => skip(&format!("qemu-{a}"), &format!("a trial launch failed: {e}")),
        }
    }
    if let Some(a) = qemu_accel {
        group.bench_function(format!("qemu-{a}"), |b| b.iter(|| qemu(a).expect("launch")));
    }
    group.finish();
}

criterion_group!(benches, vmm_launch);
criterion_main!(benches);
