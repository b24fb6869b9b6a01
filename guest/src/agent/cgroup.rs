//! The workload's cgroup in the guest: `linux.resources` pids, memory and cpu limits on a
//! cgroup-v2 hierarchy of the guest's own kernel, which every session's process joins.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use isobox_common::protocol::GuestLimits;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

use super::init::detached_mount;

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
        let root = detached_mount(c"cgroup2")?;
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

fn write_at(dir: &OwnedFd, name: &str, value: &str) -> Result<(), String> {
    let fd = openat(dir, name, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening {name}: {e}"))?;
    nix::unistd::write(&fd, value.as_bytes())
        .map(drop)
        .map_err(|e| format!("writing {value:?} to {name}: {e}"))
}
