//! The qemu driver: a `microvm` machine with the kernel, the initramfs, the console (ttyS0) in
//! a file and the agent's line (ttyS1, a second ISA UART) on an inherited socket.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use isobox_common::caps::{self, CapMasks};

use crate::error::{MicrovmError, Result};
use crate::hypervisor::Accelerator;

/// Environment variable naming the qemu binary (default: `qemu-system-x86_64` on $PATH).
pub const QEMU_ENV: &str = "ISOBOX_QEMU";

/// Everything qemu needs for one VM.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub binary: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    pub vcpus: u32,
    pub mem_mib: u64,
    pub accelerator: Accelerator,
    /// File that receives the guest console (ttyS0).
    pub console_log: PathBuf,
    /// virtio-fs shares: each tag with the descriptor (in qemu) of its virtiofsd connection.
    pub shares: Vec<(String, i32)>,
    /// The descriptor (in qemu) of the tap that backs the VM's network device, if any.
    pub tap: Option<i32>,
}

/// `-sandbox`: every group of system calls qemu can deny, denied.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// Find the qemu binary: `$ISOBOX_QEMU`, else `qemu-system-x86_64` on $PATH.
pub fn find_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(QEMU_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .ok_or_else(|| MicrovmError::Hypervisor {
            hypervisor: "qemu".into(),
            reason: format!("qemu-system-x86_64 not found on $PATH (or set ${QEMU_ENV})"),
        })
}

/// The argument vector; `agent_fd` is the descriptor number of the agent socket in qemu.
pub fn args(cfg: &QemuConfig, agent_fd: i32) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push("-M");
    if cfg.shares.is_empty() {
        push("microvm");
    } else {
        // vhost-user daemons map guest memory: it must be a shared memfd.
        push("microvm,memory-backend=mem");
        push("-object");
        push(&format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            cfg.mem_mib
        ));
        // libvhost-user serves modern virtio only; the microvm machine defaults to legacy.
        push("-global");
        push("virtio-mmio.force-legacy=false");
    }
    push("-accel");
    push(cfg.accelerator.as_str());
    push("-cpu");
    push(match cfg.accelerator {
        Accelerator::Kvm => "host",
        Accelerator::Tcg => "max",
    });
    push("-m");
    push(&format!("{}M", cfg.mem_mib));
    push("-smp");
    push(&cfg.vcpus.to_string());
    for s in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
        push(s);
    }
    // qemu's own seccomp filter: no obsolete calls, no privilege changes, no fork or exec,
    // no scheduler or resource changes.
    push("-sandbox");
    push(SANDBOX);
    push("-chardev");
    a.push(chardev_file("console", &cfg.console_log));
    let mut push = |s: &str| a.push(s.into());
    push("-serial");
    push("chardev:console");
    push("-chardev");
    push(&format!("socket,id=agent,fd={agent_fd}"));
    push("-device");
    push("isa-serial,chardev=agent,iobase=0x2f8,irq=3");
    for (i, (tag, fd)) in cfg.shares.iter().enumerate() {
        push("-chardev");
        push(&format!("socket,id=fs{i},fd={fd}"));
        push("-device");
        push(&format!(
            "vhost-user-fs-device,chardev=fs{i},tag={tag},queue-size=1024"
        ));
    }
    if let Some(fd) = cfg.tap {
        push("-netdev");
        push(&format!("tap,id=net0,fd={fd}"));
        push("-device");
        push("virtio-net-device,netdev=net0");
    }
    push("-kernel");
    a.push(cfg.kernel.clone().into());
    a.push("-initrd".into());
    a.push(cfg.initramfs.clone().into());
    a.push("-append".into());
    a.push(cfg.cmdline.clone().into());
    a
}

fn chardev_file(id: &str, path: &Path) -> OsString {
    // qemu splits options on ','; a comma in the path is written twice.
    let p = path.to_string_lossy().replace(',', ",,");
    format!("file,id={id},path={p}").into()
}

/// Start qemu. It gets `agent` as its agent socket, /dev/null as stdin, `log` for its own
/// stdout/stderr, and dies with the calling thread's process (PR_SET_PDEATHSIG), so no qemu
/// outlives the host process.
pub fn spawn(cfg: &QemuConfig, agent: OwnedFd, log: File) -> Result<Child> {
    let fd = agent.as_raw_fd();
    let shares: Vec<i32> = cfg
        .shares
        .iter()
        .map(|(_, fd)| *fd)
        .chain(cfg.tap)
        .collect();
    // qemu runs without capabilities, so it could not reach files under a directory only
    // root's DAC override may cross (containerd's /run/containerd is 0600): it gets them open.
    let kernel = open_for_qemu(&cfg.kernel, |p| File::open(p))?;
    let initramfs = open_for_qemu(&cfg.initramfs, |p| File::open(p))?;
    let console = open_for_qemu(&cfg.console_log, |p| File::create(p))?;
    let files = [
        kernel.as_raw_fd(),
        initramfs.as_raw_fd(),
        console.as_raw_fd(),
    ];
    let by_fd = QemuConfig {
        kernel: fd_path(files[0]),
        initramfs: fd_path(files[1]),
        console_log: fd_path(files[2]),
        ..cfg.clone()
    };
    let mut cmd = Command::new(&cfg.binary);
    cmd.args(args(&by_fd, fd))
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| MicrovmError::io("duplicating qemu.log", e))?,
        )
        .stderr(log);
    let none = CapMasks {
        bounding: 0,
        permitted: 0,
        effective: 0,
        inheritable: 0,
        ambient: 0,
        last_cap: caps::last_cap(),
    };
    // SAFETY: only async-signal-safe calls between fork and exec (the capability calls
    // allocate only to word an error).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Keep the agent socket, the virtiofsd connections, the tap and the files open
            // across exec.
            for fd in std::iter::once(fd)
                .chain(shares.iter().copied())
                .chain(files)
            {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            confine(&none)
        });
    }
    let child = cmd.spawn().map_err(|e| MicrovmError::Hypervisor {
        hypervisor: "qemu".into(),
        reason: format!("starting {}: {e}", cfg.binary.display()),
    })?;
    drop(agent);
    Ok(child)
}

fn open_for_qemu(path: &Path, open: fn(&Path) -> std::io::Result<File>) -> Result<File> {
    open(path).map_err(|e| MicrovmError::io(format!("opening {} for qemu", path.display()), e))
}

/// The name under which a process reopens its descriptor `fd`: the magic link resolves to
/// the open file itself, whatever the directories above it allow.
fn fd_path(fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

/// In qemu's child before exec: IPC, UTS and mount namespaces of its own (its network one is
/// the container's, which the host process lives in), no capabilities (an empty bounding set,
/// so exec gives a root qemu none back), and no_new_privs. What it opens by path it opens as
/// the files' owner (/dev/kvm); its files, tap and sockets come as descriptors.
fn confine(none: &CapMasks) -> std::io::Result<()> {
    let last = std::io::Error::last_os_error;
    // SAFETY: plain system calls with constant arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) != 0 {
            return Err(last());
        }
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        let none_ptr = std::ptr::null();
        if libc::mount(none_ptr, c"/".as_ptr(), none_ptr, flags, std::ptr::null()) != 0 {
            return Err(last());
        }
    }
    caps::drop_bounding(none).map_err(std::io::Error::other)?;
    caps::apply(none).map_err(std::io::Error::other)?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_wire_console_agent_uart_and_resources() {
        let cfg = QemuConfig {
            binary: "qemu-system-x86_64".into(),
            kernel: "/k/vmlinuz".into(),
            initramfs: "/s/initramfs.cpio".into(),
            cmdline: "console=ttyS0".into(),
            vcpus: 2,
            mem_mib: 512,
            accelerator: Accelerator::Tcg,
            console_log: "/s,x/console.log".into(),
            shares: vec![],
            tap: None,
        };
        let a: Vec<String> = args(&cfg, 7)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = a.join(" ");
        assert!(
            joined.contains("-accel tcg -cpu max -m 512M -smp 2"),
            "{joined}"
        );
        assert!(joined.contains("-no-reboot"));
        assert!(joined.contains(&format!("-sandbox {SANDBOX}")), "{joined}");
        assert!(joined.contains("file,id=console,path=/s,,x/console.log"));
        assert!(joined.contains("socket,id=agent,fd=7"));
        assert!(joined.contains("isa-serial,chardev=agent,iobase=0x2f8,irq=3"));
        assert!(
            joined.ends_with("-kernel /k/vmlinuz -initrd /s/initramfs.cpio -append console=ttyS0")
        );
        assert!(!joined.contains("memory-backend") && !joined.contains("vhost-user"));
        assert!(!joined.contains("netdev"));
    }

    #[test]
    fn shares_get_shared_memory_modern_virtio_and_a_device_each_and_the_tap_a_nic() {
        let cfg = QemuConfig {
            binary: "qemu-system-x86_64".into(),
            kernel: "/k/vmlinuz".into(),
            initramfs: "/s/initramfs.cpio".into(),
            cmdline: "console=ttyS0".into(),
            vcpus: 1,
            mem_mib: 256,
            accelerator: Accelerator::Tcg,
            console_log: "/s/console.log".into(),
            shares: vec![("isobox0".into(), 9), ("isobox1".into(), 10)],
            tap: Some(11),
        };
        let joined: Vec<String> = args(&cfg, 7)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = joined.join(" ");
        assert!(joined.contains("-M microvm,memory-backend=mem -object memory-backend-memfd,id=mem,size=256M,share=on"), "{joined}");
        assert!(joined.contains("-global virtio-mmio.force-legacy=false"));
        assert!(joined.contains("-chardev socket,id=fs1,fd=10 -device vhost-user-fs-device,chardev=fs1,tag=isobox1,queue-size=1024"), "{joined}");
        assert!(
            joined.contains("-netdev tap,id=net0,fd=11 -device virtio-net-device,netdev=net0"),
            "{joined}"
        );
    }
}
