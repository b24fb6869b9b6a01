//! cgroups v1, v2 and hybrid: one container's cgroup, its resource limits and its processes.

//!
//! Modules: `detect` finds the hierarchies, `path` resolves linux.cgroupsPath, `resources`
//! turns linux.resources into control-file writes, `create` makes the directories, `v1`/`v2`
//! hold what only one version needs, `lifecycle` joins, signals, freezes and removes.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{self, Result};

mod bpf;
mod create;
mod detect;
mod emulator;
mod files;
mod lifecycle;
mod path;
mod resources;
mod stats;
mod update;
mod v1;
mod v2;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_host;

pub use detect::{Hierarchy, V1Mount, CGROUP_ROOT};
pub use path::DEFAULT_PARENT;
pub use resources::{
    blkio_weight_to_io, default_device_rules, device_state, shares_to_weight, swap_to_v2,
};

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
    detect::detect_at(Path::new(CGROUP_ROOT))
}

/// One container's cgroup: the directories made for it (one per v1 controller and/or the v2
/// one). Serializable so it can be kept in the container state and removed on delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {
    pub mode: Mode,
    /// Every directory this cgroup consists of.
    pub paths: Vec<PathBuf>,
    /// Ancestors of `paths` that isobox made or owns (e.g. /sys/fs/cgroup/memory/isobox):
    /// destroy removes them once empty, and never touches any other ancestor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<PathBuf>,
}

impl Cgroup {
    /// Make the cgroup at `cgroups_path` (linux.cgroupsPath; None means `/isobox/<id>`) and
    /// apply `resources`. A limit the host cannot apply is a `ContainerError::Resource` naming
    /// the config field. On any error nothing made here is left behind.
    pub fn create(
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup> {
        Cgroup::create_in(&Hierarchy::host()?, cgroups_path, id, resources)
    }

    /// `create` on given hierarchies (the host's, or a test tree).
    pub fn create_in(
        hierarchy: &Hierarchy,
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup> {
        create::create(hierarchy, cgroups_path, id, resources)
    }

    /// What `create` derives from the bundle alone on hierarchies of `mode`, without any:
    /// the path, every control-file value and the v2 device program. A value `create` would
    /// refuse is refused here too (but for a controller the host lacks); nothing is read or
    /// written.
    pub fn check(
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
        mode: Mode,
    ) -> Result<()> {
        path::resolve(cgroups_path, id)?;
        let Some(res) = resources else {
            return Ok(());
        };
        // A hybrid host's controllers are all on v1.
        let flavor = match mode {
            Mode::V1 | Mode::Hybrid => resources::Flavor::V1,
            Mode::V2 => resources::Flavor::V2,
        };
        resources::settings(res, &|_| Ok(flavor))?;
        if let Some(rules) = res.devices().as_deref().filter(|_| mode == Mode::V2) {
            bpf::program(&resources::device_rules(rules)?).map_err(|reason| {
                error::ContainerError::Resource {
                    field: "linux.resources.devices".into(),
                    reason,
                }
            })?;
        }
        Ok(())
    }

    /// Change the limits of the live cgroup, whose limits in force are `current` (None: as
    /// the kernel made it), by `change` (OCI linux.resources as `runc update` takes it:
    /// absent and zero fields stay). Checked as `create` checks; returns the limits now in
    /// force. Device rules cannot change.
    pub fn update(
        &self,
        current: Option<&LinuxResources>,
        change: &LinuxResources,
    ) -> Result<LinuxResources> {
        self.update_in(&Hierarchy::host()?, current, change)
    }

    /// `update` on given hierarchies (the host's, or a test tree).
    pub fn update_in(
        &self,
        hierarchy: &Hierarchy,
        current: Option<&LinuxResources>,
        change: &LinuxResources,
    ) -> Result<LinuxResources> {
        update::update(hierarchy, self, current, change)
    }

    /// Move `pid` into the cgroup (every hierarchy).
    pub fn add(&self, pid: i32) -> Result<()> {
        lifecycle::add(&self.paths, pid)
    }

    /// The host pids in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        lifecycle::pids(&self.paths)
    }

    /// Send `signal` to every process in the cgroup.
    pub fn signal_all(&self, signal: i32) -> Result<()> {
        lifecycle::signal_all(&self.paths, signal)
    }

    /// Kill whatever is left (SIGKILL, waiting until the cgroup is empty) and remove the
    /// directories. Idempotent: a cgroup already gone is fine.
    pub fn destroy(&self) -> Result<()> {
        lifecycle::destroy(&self.paths, &self.parents)
    }

    /// Freeze every process (v2 cgroup.freeze, else the v1 freezer), waiting until frozen.
    /// Ok(false) when the host has no freezer.
    pub fn freeze(&self) -> Result<bool> {
        lifecycle::freeze(&self.paths)
    }

    /// Undo `freeze`.
    pub fn thaw(&self) -> Result<()> {
        lifecycle::thaw(&self.paths)
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        lifecycle::is_frozen(&self.paths)
    }

    /// The cgroup's usage as runc's `events --stats` reports it, as far as the host's
    /// controllers give it.
    pub fn stats(&self) -> Result<isobox_common::Stats> {
        stats::stats(&self.paths)
    }
}
