//! The built-in VMM runs the tiny PVH test guest: its greeting arrives on the console sink and
//! the run ends with the i8042 reset.

use isobox_microvm::host::{detect, HostKind};
use isobox_microvm::vmm::testguest::GREETING;
use isobox_microvm::vmm::{run, start, test_guest_elf, VmConfig, VmExit};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A console sink the test can read back.
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

fn kvm_or_skip() -> bool {
    let kind = detect();
    if let HostKind::NoKvm(_) = kind {
        isobox_common::skip::skip_for_hardware(&format!("needs hardware KVM: {}", kind.describe()));
        return false;
    }
    eprintln!("host: {}", kind.describe());
    true
}

fn guest_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.elf");
    std::fs::write(&path, test_guest_elf()).unwrap();
    (dir, path)
}

#[test]
fn tiny_guest_greets_and_resets() {
    if !kvm_or_skip() {
        return;
    }
    let (_dir, path) = guest_file();
    for vcpus in [1u8, 2] {
        let console = Capture::default();
        let mut cfg = VmConfig::new(&path, "", Box::new(console.clone()));
        cfg.vcpus = vcpus;
        cfg.mem_mib = 32;
        let t = Instant::now();
        let exit = run(cfg).expect("the tiny guest runs");
        eprintln!("{vcpus} vCPU(s): {exit:?} after {:?}", t.elapsed());
        assert_eq!(exit, VmExit::Reset);
        assert_eq!(console.0.lock().unwrap().as_slice(), GREETING);
    }
}

#[test]
fn agent_channel_without_guest_traffic_and_stop_from_another_thread() {
    if !kvm_or_skip() {
        return;
    }
    // A guest that never ends on its own: the 64-bit path into a `jmp .` loop.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.elf");
    let mut elf = test_guest_elf();
    // Replace the code with `jmp $` (EB FE) so the guest spins.
    let code_at = 0x100;
    elf[code_at] = 0xeb;
    elf[code_at + 1] = 0xfe;
    std::fs::write(&path, elf).unwrap();

    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut cfg = VmConfig::new(&path, "", Box::new(std::io::sink()));
    cfg.agent = Some(ours);
    let vm = start(cfg).expect("starts");
    let handle = vm.handle();
    // Host input towards a guest that never reads must not block anything.
    theirs.write_all(&[0x55; 1000]).unwrap();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        handle.stop();
    });
    assert_eq!(vm.wait().unwrap(), VmExit::Stopped);
    stopper.join().unwrap();
}

#[test]
fn bad_inputs_are_reported() {
    if !kvm_or_skip() {
        return;
    }
    let (_dir, path) = guest_file();
    let mut cfg = VmConfig::new(&path, "", Box::new(std::io::sink()));
    cfg.vcpus = 0;
    assert!(run(cfg).unwrap_err().to_string().contains("vcpus 0"));
    let mut cfg = VmConfig::new(&path, "", Box::new(std::io::sink()));
    cfg.mem_mib = 1;
    assert!(run(cfg).unwrap_err().to_string().contains("mem_mib"));
    let cfg = VmConfig::new("/nonexistent/vmlinux", "", Box::new(std::io::sink()));
    assert!(run(cfg)
        .unwrap_err()
        .to_string()
        .contains("/nonexistent/vmlinux"));
    let mut cfg = VmConfig::new(&path, "", Box::new(std::io::sink()));
    cfg.initramfs = Some("/nonexistent/initrd".into());
    assert!(run(cfg)
        .unwrap_err()
        .to_string()
        .contains("/nonexistent/initrd"));
}

#[test]
fn agent_channel_carries_bytes_both_ways() {
    if !kvm_or_skip() {
        return;
    }
    use isobox_microvm::vmm::testguest::echo_guest_elf;
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.elf");
    std::fs::write(&path, echo_guest_elf()).unwrap();
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut cfg = VmConfig::new(&path, "", Box::new(std::io::sink()));
    cfg.agent = Some(ours);
    let vm = start(cfg).expect("starts");
    // More than the 64-byte receive FIFO, so the input thread must wait for the guest.
    let mut message = b"agent says hello ".repeat(10);
    message.push(b'\n');
    theirs.write_all(&message).unwrap();
    theirs
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut echoed = vec![0u8; message.len()];
    theirs.read_exact(&mut echoed).expect("the echo arrives");
    assert_eq!(echoed, message);
    assert_eq!(vm.wait().unwrap(), VmExit::Reset);
}

/// The watchdog's view of a hung guest: a `jmp .` loop makes no port I/O, and every vCPU,
/// kicked out of KVM_RUN, describes itself (the boot vCPU spinning at the loop, the second
/// one still waiting for its INIT).
#[test]
fn a_spinning_guest_makes_no_progress_and_its_vcpus_describe_themselves() {
    if !kvm_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.elf");
    let mut elf = test_guest_elf();
    elf[0x100] = 0xeb; // jmp $
    elf[0x101] = 0xfe;
    std::fs::write(&path, elf).unwrap();
    let mut cfg = VmConfig::new(&path, "", Box::new(std::io::sink()));
    cfg.vcpus = 2;
    let vm = start(cfg).expect("starts");
    let handle = vm.handle();
    std::thread::sleep(Duration::from_millis(300));
    let before = handle.progress();
    let lines = handle.dump_vcpus();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        handle.progress(),
        before,
        "a spinning guest makes no port I/O"
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("vCPU 0: runnable rip=0x100000 "),
        "{lines:#?}"
    );
    assert!(lines[1].starts_with("vCPU 1: "), "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains("cr3=")), "{lines:#?}");
    // The kicks did not disturb the run: it still ends only when stopped.
    handle.stop();
    assert_eq!(vm.wait().unwrap(), VmExit::Stopped);
}
