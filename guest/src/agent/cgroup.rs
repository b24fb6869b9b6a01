//! The workload's cgroup in the guest: `linux.resources` pids, memory and cpu limits on a
//! cgroup-v2 hierarchy of the guest's own kernel, which every session's process joins.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use isobox_common::protocol::GuestLimits;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

/// The workload's cgroup, relative to the hierarchy's root.
const WORKLOAD: &str = "workload";

/// The cgroup, held by its `cgroup.procs`: a process joins it by writing "0" there.
pub struct Cgroup {
    procs: File,
}

impl Cgroup {
    /// Enable the controllers and make the cgroup with `limits`, on an instance of the
    /// guest's cgroup2 hierarchy that is mounted nowhere: what the workload sees of it is
    /// only what the bundle mounts (read-only, as engines ask), so a root workload cannot
    /// raise its own limits through a writable /sys/fs/cgroup.
    pub fn create(limits: &GuestLimits) -> Result<Cgroup, String> {
        let root = detached_cgroup2()?;
        write_at(&root, "cgroup.subtree_control", "+pids +memory +cpu")?;
        match mkdirat(&root, WORKLOAD, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("creating the cgroup {WORKLOAD}: {e}")),
        }
        let dir = openat(
            &root,
            WORKLOAD,
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("opening the cgroup {WORKLOAD}: {e}"))?;
        if let Some(n) = limits.pids_max {
            write_at(&dir, "pids.max", &n.to_string())?;
        }
        if let Some(n) = limits.memory_max {
            write_at(&dir, "memory.max", &n.to_string())?;
            // No swap in the guest, but say so: the limit is memory alone.
            let _ = write_at(&dir, "memory.swap.max", "0");
        }
        if let Some(n) = limits.memory_low {
            write_at(&dir, "memory.low", &n.to_string())?;
        }
        if let Some(quota) = limits.cpu_quota {
            let period = limits.cpu_period.unwrap_or(100_000);
            write_at(&dir, "cpu.max", &format!("{quota} {period}"))?;
        }
        if let Some(w) = limits.cpu_weight {
            write_at(&dir, "cpu.weight", &w.to_string())?;
        }
        let procs = openat(
            &dir,
            "cgroup.procs",
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("opening {WORKLOAD}/cgroup.procs: {e}"))?;
        Ok(Cgroup {
            procs: File::from(procs),
        })
    }

    /// The descriptor a new process writes "0" to, between fork and exec.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }
}

/// A new mount of cgroup2 attached to no path (fsopen, fsconfig, fsmount).
fn detached_cgroup2() -> Result<OwnedFd, String> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;
    let fail = |what: &str| {
        format!(
            "mounting cgroup2: {what}: {}",
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: the new mount API's system calls with a NUL-terminated name and integer
    // arguments; each fd they return is owned at once.
    unsafe {
        let fs = libc::syscall(libc::SYS_fsopen, c"cgroup2".as_ptr(), FSOPEN_CLOEXEC);
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

fn write_at(dir: &OwnedFd, name: &str, value: &str) -> Result<(), String> {
    let fd = openat(dir, name, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening {name}: {e}"))?;
    nix::unistd::write(&fd, value.as_bytes())
        .map(drop)
        .map_err(|e| format!("writing {value:?} to {name}: {e}"))
}
