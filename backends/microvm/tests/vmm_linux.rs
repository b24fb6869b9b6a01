//! The built-in VMM boots a real Linux kernel far enough to print its banner and the command
//! line it was given on ttyS0. On a host with hardware KVM this takes well under a second; on a
//! nested PVM host the early kernel runs much slower, hence the generous timeout.
//!
//! The kernel comes from `$ISOBOX_TEST_KERNEL`, else from the image module's resolution
//! (`$ISOBOX_KERNEL`, the kernel cache, the host's /boot) without downloading anything.

use isobox_microvm::host::{detect, HostKind};
use isobox_microvm::image::{resolve_kernel, ResolveOptions};
use isobox_microvm::vmm::{start, VmConfig, VmExit};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn kernel() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ISOBOX_TEST_KERNEL").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let opts = ResolveOptions {
        // Under CI the test must run: provision the kernel rather than skip.
        provision: isobox_common::skip::must_run(),
        progress: false,
        ..ResolveOptions::default()
    };
    match resolve_kernel(None, &opts) {
        Ok(k) => Some(k.path),
        Err(e) => {
            isobox_common::skip::skip(&format!("no guest kernel ({e}); set ISOBOX_TEST_KERNEL"));
            None
        }
    }
}

#[test]
fn linux_prints_banner_and_command_line_on_ttys0() {
    let kind = detect();
    if let HostKind::NoKvm(_) = kind {
        isobox_common::skip::skip_for_hardware(&format!("needs hardware KVM: {}", kind.describe()));
        return;
    }
    let Some(kernel) = kernel() else { return };
    eprintln!("host: {}\nkernel: {}", kind.describe(), kernel.display());

    let token = format!("isobox.test={}", std::process::id());
    let cmdline = format!(
        "console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd {token}"
    );
    let console = Capture::default();
    let mut cfg = VmConfig::new(&kernel, cmdline.clone(), Box::new(console.clone()));
    cfg.vcpus = 2;
    let t0 = Instant::now();
    let vm = start(cfg).expect("the VM starts");
    let handle = vm.handle();
    let waiter = std::thread::spawn(move || vm.wait());

    let banner_at = |text: &str| text.contains("Linux version ");
    let cmdline_line = format!("Command line: {cmdline}");
    let mut banner_seen = None;
    let mut finished = false;
    while t0.elapsed() < TIMEOUT {
        let text = console.text();
        if banner_seen.is_none() && banner_at(&text) {
            banner_seen = Some(t0.elapsed());
        }
        if banner_seen.is_some() && text.contains(&cmdline_line) {
            finished = true;
            break;
        }
        if waiter.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = t0.elapsed();
    handle.stop();
    let outcome = waiter.join().expect("the waiter thread");
    let text = console.text();
    let tail: String = {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    eprintln!(
        "banner after {banner_seen:?}, command line after {elapsed:?}; VM outcome {outcome:?}"
    );
    assert!(
        finished,
        "no banner + exact command line within {TIMEOUT:?}; outcome {outcome:?}; console tail:\n{tail}"
    );
    // The command line line must be exactly ours (the kernel echoes what it was given).
    let line = text
        .lines()
        .find(|l| l.contains("Command line: "))
        .expect("a command line line");
    assert!(line.trim_end().ends_with(&cmdline_line), "{line}");
    // Stopped by us, or ended by the guest after the lines were printed: both are fine; an
    // error after that point (e.g. an emulation failure on a nested host) is reported above.
    if let Ok(exit) = outcome {
        assert!(
            matches!(exit, VmExit::Stopped | VmExit::Reset | VmExit::TripleFault),
            "{exit:?}"
        );
    }
}

/// On hardware KVM the kernel gets past early boot and probes its serial ports: both UARTs
/// must be found from the DSDT (a hardware-reduced ACPI kernel probes no legacy ports, and
/// without ttyS1 the agent cannot reach the host). The kernel then panics for want of a root
/// filesystem, which `panic=-1` turns into the reset that ends the VM.
#[test]
fn linux_finds_both_uarts_through_acpi() {
    let kind = detect();
    if kind != HostKind::HardwareKvm {
        isobox_common::skip::skip_for_hardware(&format!("needs hardware KVM: {}", kind.describe()));
        return;
    }
    let Some(kernel) = kernel() else { return };
    let console = Capture::default();
    let cfg = VmConfig::new(
        &kernel,
        "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd",
        Box::new(console.clone()),
    );
    let t0 = Instant::now();
    let vm = start(cfg).expect("the VM starts");
    let handle = vm.handle();
    let waiter = std::thread::spawn(move || vm.wait());
    // With an IOAPIC and no legacy PIC, Linux numbers the GSIs 4 and 3 beyond the legacy
    // range (24, 25): any interrupt will do, polling ("irq = 0") will not.
    let port = |text: &str, line: &str| {
        text.lines()
            .any(|l| l.contains(line) && !l.contains("(irq = 0,") && l.contains("(irq = "))
    };
    let found = |text: &str| {
        port(text, "ttyS0 at I/O 0x3f8 (irq = ") && port(text, "ttyS1 at I/O 0x2f8 (irq = ")
    };
    while t0.elapsed() < TIMEOUT && !found(&console.text()) && !waiter.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.stop();
    let outcome = waiter.join().expect("the waiter thread");
    let text = console.text();
    let serial: Vec<&str> = text.lines().filter(|l| l.contains("ttyS")).collect();
    assert!(
        found(&text),
        "the kernel did not find both UARTs within {:?} (outcome {outcome:?}); its ttyS lines: {serial:#?}",
        t0.elapsed()
    );
}
