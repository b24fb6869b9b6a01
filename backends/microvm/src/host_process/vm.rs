//! Launching the VM under the chosen hypervisor and noticing when it ends.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender as Sender;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::config::{VmHostConfig, HYPERVISOR_LOG, HYPERVISOR_PID, VIRTIOFSD_LOG, WATCHDOG_LOG};
use super::Event;
use crate::error::{MicrovmError, Result};
use crate::hypervisor::Hypervisor;
use crate::network;
use crate::qemu::{self, QemuConfig};
use crate::virtiofs;
use crate::vmm;

/// A running VM: it can be killed, and an [`Event::VmExited`] reports its end.
pub struct RunningVm {
    /// The hypervisor process, when it is a separate process (qemu).
    pub pid: Option<i32>,
    /// The built-in VMM's stop handle, when it runs in this process.
    builtin: Option<vmm::VmHandle>,
    /// The tap behind the VM's network device, when it has one (qemu in a network namespace).
    pub tap: Option<String>,
    exited: Arc<AtomicBool>,
}

impl RunningVm {
    /// Stop the VM at once (no effect once it is gone).
    pub fn kill(&self) {
        if let Some(h) = &self.builtin {
            h.stop();
        }
        if let Some(pid) = self.pid {
            if !self.exited.load(Ordering::SeqCst) {
                // SAFETY: plain syscall; the pid is our unreaped child while `exited` is false.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl RunningVm {
    /// What the built-in VMM can tell of a VM that stopped answering: each vCPU's state, its
    /// APIC's pending and in-service vectors, the agent UART. Empty under qemu.
    pub fn state_lines(&self) -> Vec<String> {
        self.builtin
            .as_ref()
            .map(|h| h.dump_vcpus())
            .unwrap_or_default()
    }
}

/// Boot the VM with `guest_end` as the agent's serial line.
pub fn launch(
    cfg: &VmHostConfig,
    state_dir: &Path,
    guest_end: UnixStream,
    events: Sender<Event>,
) -> Result<RunningVm> {
    match cfg.hypervisor {
        Hypervisor::Qemu => launch_qemu(cfg, state_dir, guest_end, events),
        Hypervisor::Builtin => launch_builtin(cfg, guest_end, events),
    }
}

/// The built-in VMM, in this process: its vCPU threads run beside the relay.
fn launch_builtin(
    cfg: &VmHostConfig,
    guest_end: UnixStream,
    events: Sender<Event>,
) -> Result<RunningVm> {
    let console = File::create(&cfg.console_log)
        .map_err(|e| MicrovmError::io(format!("creating {}", cfg.console_log.display()), e))?;
    let vcpus = u8::try_from(cfg.vcpus).map_err(|_| MicrovmError::Hypervisor {
        hypervisor: "builtin".into(),
        reason: format!("{} vCPUs is more than the built-in VMM supports", cfg.vcpus),
    })?;
    let running = vmm::start(vmm::VmConfig {
        kernel: cfg.kernel.clone(),
        initramfs: Some(cfg.initramfs.clone()),
        cmdline: cfg.cmdline.clone(),
        vcpus,
        mem_mib: cfg.mem_mib,
        console: Box::new(console),
        agent: Some(guest_end),
    })?;
    let handle = running.handle();
    let exited = Arc::new(AtomicBool::new(false));
    if let Some(after) = watchdog_period() {
        let (h, flag) = (handle.clone(), exited.clone());
        let console = cfg.console_log.clone();
        thread::spawn(move || watchdog(&h, &flag, after, &console));
    }
    let flag = exited.clone();
    thread::spawn(move || {
        let how = match running.wait() {
            Ok(exit) => format!("the built-in VMM ended: {exit:?}"),
            Err(e) => format!("the built-in VMM failed: {e}"),
        };
        flag.store(true, Ordering::SeqCst);
        let _ = events.send(Event::VmExited(how));
    });
    Ok(RunningVm {
        pid: None,
        builtin: Some(handle),
        tap: None,
        exited,
    })
}

/// Environment variable: seconds without guest I/O before the built-in VMM's watchdog reports
/// (0 turns it off).
pub const WATCHDOG_ENV: &str = "ISOBOX_VMM_WATCHDOG";
const WATCHDOG_DEFAULT: Duration = Duration::from_secs(30);

fn watchdog_period() -> Option<Duration> {
    match std::env::var(WATCHDOG_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(secs)),
        None => Some(WATCHDOG_DEFAULT),
    }
}

/// When the guest makes no port I/O for `after` (no console output, no agent traffic: a hang,
/// or a workload that sleeps), write the vCPUs' registers and the console's last lines to
/// watchdog.log beside the console log, once per stall, so a hung VM explains itself (a
/// failed boot's error names the console log, beside which this file lies).
fn watchdog(vm: &vmm::VmHandle, exited: &AtomicBool, after: Duration, console: &Path) {
    let mut last = vm.progress();
    let mut still_since = Instant::now();
    let mut reported = false;
    while !exited.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(500));
        let now = vm.progress();
        if now != last {
            (last, still_since, reported) = (now, Instant::now(), false);
            continue;
        }
        if reported || still_since.elapsed() < after {
            continue;
        }
        reported = true;
        let mut text = format!(
            "no guest I/O for {:?} (after {last} port I/O exits)\n",
            still_since.elapsed()
        );
        for line in vm.dump_vcpus() {
            text += &line;
            text.push('\n');
        }
        text += "console tail:\n";
        let log = std::fs::read_to_string(console).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        for l in &lines[lines.len().saturating_sub(15)..] {
            text += &format!("  {l}\n");
        }
        let path = console.with_file_name(WATCHDOG_LOG);
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        // Debug, not a warning: a workload that sleeps is silent too.
        log::debug!(
            "the VM made no port I/O for {:?}: vCPU state and console tail in {}",
            after,
            path.display()
        );
    }
}

fn launch_qemu(
    cfg: &VmHostConfig,
    state_dir: &Path,
    guest_end: UnixStream,
    events: Sender<Event>,
) -> Result<RunningVm> {
    let binary = match &cfg.qemu_binary {
        Some(b) => b.clone(),
        None => qemu::find_binary()?,
    };
    // The shares' daemons first: qemu connects to them as it starts. They die with this
    // thread, like qemu, and end when qemu hangs up.
    let mut daemons = Vec::new();
    let mut frontends = Vec::new();
    if !cfg.shares.is_empty() {
        let vfsd = match &cfg.virtiofsd {
            Some(b) => b.clone(),
            None => virtiofs::find_binary()?,
        };
        let log_path = state_dir.join(VIRTIOFSD_LOG);
        let log = File::create(&log_path)
            .map_err(|e| MicrovmError::io(format!("creating {}", log_path.display()), e))?;
        for share in &cfg.shares {
            let served = virtiofs::serve(&vfsd, share, state_dir, &log)?;
            daemons.push(served.daemon);
            frontends.push((share.tag.clone(), served.frontend));
        }
    }
    // In the container's network namespace: the VM's network device, joined to the
    // namespace's interface at start (see crate::network).
    let tap = cfg
        .network
        .as_ref()
        .map(|_| network::open_tap())
        .transpose()?;
    let qcfg = QemuConfig {
        tap: tap.as_ref().map(|t| std::os::fd::AsRawFd::as_raw_fd(&t.fd)),
        shares: frontends
            .iter()
            .map(|(t, fd)| (t.clone(), std::os::fd::AsRawFd::as_raw_fd(fd)))
            .collect(),
        binary,
        kernel: cfg.kernel.clone(),
        initramfs: cfg.initramfs.clone(),
        cmdline: cfg.cmdline.clone(),
        vcpus: cfg.vcpus,
        mem_mib: cfg.mem_mib,
        accelerator: cfg.accelerator,
        console_log: cfg.console_log.clone(),
    };
    let log_path = state_dir.join(HYPERVISOR_LOG);
    let log = File::create(&log_path)
        .map_err(|e| MicrovmError::io(format!("creating {}", log_path.display()), e))?;
    let mut child = qemu::spawn(&qcfg, OwnedFd::from(guest_end), log)?;
    drop(frontends);
    // qemu holds the tap now: the device lives as long as qemu does.
    let tap = tap.map(|t| t.name);
    // Reaped as they end (with the VM); killed with this process otherwise.
    for mut d in daemons {
        thread::spawn(move || d.wait());
    }
    let pid = child.id() as i32;
    let pid_path = state_dir.join(HYPERVISOR_PID);
    // Our unreaped child: the start time read now is its own.
    let recorded = isobox_common::state::ProcessRef::of(pid)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))
        .and_then(|p| p.save(&pid_path).map_err(std::io::Error::other));
    if let Err(e) = recorded {
        let _ = child.kill();
        let _ = child.wait();
        return Err(MicrovmError::io(
            format!("writing {}", pid_path.display()),
            e,
        ));
    }
    let exited = Arc::new(AtomicBool::new(false));
    let flag = exited.clone();
    thread::spawn(move || {
        let how = match child.wait() {
            Ok(st) => match (
                st.code(),
                std::os::unix::process::ExitStatusExt::signal(&st),
            ) {
                (Some(0), _) => "qemu exited".to_string(),
                (Some(c), _) => format!("qemu exited with status {c}: {}", tail_of(&log_path)),
                (None, Some(s)) => format!("qemu was killed by signal {s}"),
                _ => format!("qemu ended: {st}"),
            },
            Err(e) => format!("waiting for qemu: {e}"),
        };
        flag.store(true, Ordering::SeqCst);
        let _ = events.send(Event::VmExited(how));
    });
    Ok(RunningVm {
        pid: Some(pid),
        builtin: None,
        tap,
        exited,
    })
}

fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
