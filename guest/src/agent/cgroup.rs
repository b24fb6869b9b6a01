//! The workload's cgroup in the guest: `linux.resources` pids, memory and cpu limits on a
//! cgroup-v2 hierarchy of the guest's own kernel, which every session's process joins.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use isobox_common::protocol::GuestLimits;
use nix::mount::{mount, MsFlags};

const ROOT: &str = "/sys/fs/cgroup";
const WORKLOAD: &str = "/sys/fs/cgroup/workload";

/// The cgroup, held by its `cgroup.procs`: a process joins it by writing "0" there.
pub struct Cgroup {
    procs: File,
}

impl Cgroup {
    /// Mount the hierarchy, enable the controllers and make the cgroup with `limits`.
    pub fn create(limits: &GuestLimits) -> Result<Cgroup, String> {
        let root = Path::new(ROOT);
        if !root.join("cgroup.controllers").exists() {
            mount(
                Some("cgroup2"),
                root,
                Some("cgroup2"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .map_err(|e| format!("mounting cgroup2 on {ROOT}: {e}"))?;
        }
        write(&root.join("cgroup.subtree_control"), "+pids +memory +cpu")?;
        let dir = Path::new(WORKLOAD);
        fs::create_dir_all(dir).map_err(|e| format!("creating {WORKLOAD}: {e}"))?;
        if let Some(n) = limits.pids_max {
            write(&dir.join("pids.max"), &n.to_string())?;
        }
        if let Some(n) = limits.memory_max {
            write(&dir.join("memory.max"), &n.to_string())?;
            // No swap in the guest, but say so: the limit is memory alone.
            let _ = write(&dir.join("memory.swap.max"), "0");
        }
        if let Some(quota) = limits.cpu_quota {
            let period = limits.cpu_period.unwrap_or(100_000);
            write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        let procs = OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| format!("opening {WORKLOAD}/cgroup.procs: {e}"))?;
        Ok(Cgroup { procs })
    }

    /// The descriptor a new process writes "0" to, between fork and exec.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}
