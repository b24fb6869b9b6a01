//! cgroups v1, v2 and hybrid: one container's cgroup, its resource limits and its processes.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only v1 controller hierarchies.
    V1,
    /// The unified hierarchy only.
    V2,
    /// v1 controllers plus a v2 hierarchy (usually /sys/fs/cgroup/unified) without controllers.
    Hybrid,
}

/// Detect the host's cgroup mode from /sys/fs/cgroup.
pub fn detect() -> Result<Mode> {
    todo!("cgroups::detect")
}

/// One container's cgroup: the directories made for it (one per v1 controller and/or the v2
/// one). Serializable so it can be kept in the container state and removed on delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {
    pub mode: Mode,
    /// Every directory this cgroup consists of.
    pub paths: Vec<PathBuf>,
}

impl Cgroup {
    /// Make the cgroup at `cgroups_path` (linux.cgroupsPath; None means `/isobox/<id>`) and
    /// apply `resources`. A limit the host cannot apply is a `ContainerError::Resource` naming
    /// the config field. On any error nothing made here is left behind.
    pub fn create(
        _cgroups_path: Option<&Path>,
        _id: &str,
        _resources: Option<&LinuxResources>,
    ) -> Result<Cgroup> {
        todo!("Cgroup::create")
    }

    /// Move `pid` into the cgroup (every hierarchy).
    pub fn add(&self, _pid: i32) -> Result<()> {
        todo!("Cgroup::add")
    }

    /// The host pids in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        todo!("Cgroup::pids")
    }

    /// Send `signal` to every process in the cgroup.
    pub fn signal_all(&self, _signal: i32) -> Result<()> {
        todo!("Cgroup::signal_all")
    }

    /// Kill whatever is left (SIGKILL, waiting until the cgroup is empty) and remove the
    /// directories. Idempotent: a cgroup already gone is fine.
    pub fn destroy(&self) -> Result<()> {
        todo!("Cgroup::destroy")
    }
}
