//! PID 1 duties: the early filesystems, the console, the agent's serial line and power-off.

use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::mount::{mount, MsFlags};
use nix::sys::termios::{self, ControlFlags, SetArg, SpecialCharacterIndices};

/// The serial device the agent speaks the protocol on (the console is ttyS0).
pub const AGENT_TTY: &str = "/dev/ttyS1";

/// Log one line to the console (ttyS0, the VM's console.log on the host).
pub fn log(msg: &str) {
    use std::io::Write;
    // Not eprintln!: it panics when the console fails, and a panic in PID 1 panics the kernel.
    let _ = writeln!(std::io::stderr(), "isobox-agent: {msg}");
}

/// Mount /proc, /sys, /dev, /dev/pts, /dev/shm, /tmp and /run. A failure is logged and the
/// agent goes on: a workload that needs the missing mount reports its own error.
pub fn mount_early_filesystems() {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let table: [(&str, &str, &str, MsFlags, Option<&str>); 7] = [
        ("proc", "/proc", "proc", nodev, None),
        ("sysfs", "/sys", "sysfs", nodev, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        ),
        ("shm", "/dev/shm", "tmpfs", nodev, Some("mode=1777")),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
    ];
    for (source, target, fstype, flags, data) in table {
        if let Err(e) = fs::create_dir_all(target) {
            log(&format!("creating {target}: {e}"));
            continue;
        }
        match mount(Some(source), target, Some(fstype), flags, data) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => log(&format!("mounting {fstype} on {target}: {e}")),
        }
    }
}

/// Point stdin at /dev/null and stdout/stderr at /dev/console, whatever the kernel left us
/// (with no /dev/console in the initramfs, PID 1 starts with no descriptors at all).
pub fn setup_console() {
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: dup2 onto fd 0 of descriptors we own.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
    if let Ok(console) = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")
    {
        // SAFETY: as above.
        unsafe {
            libc::dup2(console.as_raw_fd(), 1);
            libc::dup2(console.as_raw_fd(), 2);
        }
    }
}

/// Open the agent's serial port in raw mode: 8N1, no echo, no flow control, no line
/// discipline translations, so the line is 8-bit clean.
pub fn open_agent_tty() -> Result<File, String> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(AGENT_TTY)
        .map_err(|e| format!("opening {AGENT_TTY}: {e}"))?;
    let mut t = termios::tcgetattr(&tty).map_err(|e| format!("tcgetattr {AGENT_TTY}: {e}"))?;
    termios::cfmakeraw(&mut t);
    t.control_flags &= !(ControlFlags::CSIZE
        | ControlFlags::PARENB
        | ControlFlags::CSTOPB
        | ControlFlags::CRTSCTS);
    t.control_flags |= ControlFlags::CS8 | ControlFlags::CLOCAL | ControlFlags::CREAD;
    t.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    t.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    // The 8250's ceiling with the standard 1.8432 MHz clock; an emulated UART ignores it.
    // Set by hand: glibc's versioned cfsetspeed symbol cannot be linked statically.
    let mut raw: libc::termios = t.into();
    raw.c_cflag = (raw.c_cflag & !libc::CBAUD) | libc::B115200;
    raw.c_ispeed = libc::B115200;
    raw.c_ospeed = libc::B115200;
    let t = termios::Termios::from(raw);
    termios::tcsetattr(&tty, SetArg::TCSANOW, &t)
        .map_err(|e| format!("tcsetattr {AGENT_TTY}: {e}"))?;
    // Drop whatever arrived before raw mode.
    let _ = termios::tcflush(&tty, termios::FlushArg::TCIFLUSH);
    // The only handle: a workload that makes itself a node of this line (CAP_MKNOD) cannot
    // open it (EBUSY) to forge frames; only CAP_SYS_ADMIN in the guest passes exclusive mode.
    // SAFETY: TIOCEXCL takes no argument.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCEXCL) } != 0 {
        return Err(format!(
            "TIOCEXCL on {AGENT_TTY}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(tty)
}

/// Flush filesystems and end the VM. A reset (with `reboot=k` on the kernel command line)
/// ends both the built-in VMM and qemu run with `-no-reboot`; if it ever returned, exiting
/// PID 1 panics the kernel, which `panic=-1` turns into the same reset.
pub fn power_off() -> ! {
    nix::unistd::sync();
    // SAFETY: plain syscall; as PID 1 it does not return on success.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    log(&format!(
        "reboot failed: {}",
        std::io::Error::last_os_error()
    ));
    std::process::exit(1)
}

/// A new mount of `fstype` attached to no path (fsopen, fsconfig, fsmount): the agent's own
/// view of a kernel file system, out of the workload's reach and whatever it mounted.
pub fn detached_mount(fstype: &CStr) -> Result<OwnedFd, String> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;
    let fail = |what: &str| {
        format!(
            "mounting {}: {what}: {}",
            fstype.to_string_lossy(),
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: the new mount API's system calls with a NUL-terminated name and integer
    // arguments; each fd they return is owned at once.
    unsafe {
        let fs = libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC);
        if fs < 0 {
            return Err(fail("fsopen"));
        }
        let fs = OwnedFd::from_raw_fd(fs as RawFd);
        let null = std::ptr::null::<libc::c_char>();
        if libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            null,
            null,
            0,
        ) < 0
        {
            return Err(fail("fsconfig"));
        }
        let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        let mnt = libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs);
        if mnt < 0 {
            return Err(fail("fsmount"));
        }
        Ok(OwnedFd::from_raw_fd(mnt as RawFd))
    }
}
