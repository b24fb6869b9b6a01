//! Which cgroup hierarchies the host has and where they are mounted.

use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC};

use super::{files, Mode};
use crate::error::{ContainerError, Result};

/// The usual mount point of the cgroup file systems.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The v1 controllers (subsystems) isobox knows how to make a cgroup in. Named hierarchies
/// such as `name=systemd` belong to their owners and are left alone.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Classify the host from the file system types of the cgroup root and of `<root>/unified`.
pub(crate) fn classify(root: FsType, unified: Option<FsType>) -> Mode {
    if root == CGROUP2_SUPER_MAGIC {
        Mode::V2
    } else if unified == Some(CGROUP2_SUPER_MAGIC) {
        Mode::Hybrid
    } else {
        Mode::V1
    }
}

/// Detect the mode of the cgroup file systems mounted at `root`.
pub(crate) fn detect_at(root: &Path) -> Result<Mode> {
    let fs = statfs(root).map_err(|e| {
        files::cg_err(
            root,
            format!("statfs: {e} (no cgroup file system mounted?)"),
        )
    })?;
    let unified = statfs(&root.join("unified"))
        .ok()
        .map(|s| s.filesystem_type());
    Ok(classify(fs.filesystem_type(), unified))
}

/// One mounted v1 hierarchy: its controllers (several when co-mounted, e.g. cpu,cpuacct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    pub controllers: Vec<String>,
    pub mount: PathBuf,
}

/// Where the host's cgroup hierarchies are. Built from /proc/self/mountinfo on a real host;
/// tests build one over a temporary directory laid out the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mode: Mode,
    /// v1 controller hierarchies (none in V2 mode).
    pub v1: Vec<V1Mount>,
    /// The unified (v2) hierarchy's mount point: the root in V2 mode, usually
    /// /sys/fs/cgroup/unified in hybrid mode.
    pub unified: Option<PathBuf>,
}

impl Hierarchy {
    /// The host's hierarchies.
    pub fn host() -> Result<Hierarchy> {
        let mode = detect_at(Path::new(CGROUP_ROOT))?;
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| ContainerError::io("read /proc/self/mountinfo", e))?;
        let h = Hierarchy::from_mountinfo(mode, &info);
        h.check()?;
        Ok(h)
    }

    /// Parse mountinfo text: every `cgroup` mount with a known controller, and the first
    /// `cgroup2` mount (the one under /sys/fs/cgroup when there are several).
    pub fn from_mountinfo(mode: Mode, mountinfo: &str) -> Hierarchy {
        let mut v1: Vec<V1Mount> = Vec::new();
        let mut unified: Option<PathBuf> = None;
        for m in crate::mountinfo::parse(mountinfo) {
            match m.fstype.as_str() {
                "cgroup" if mode != Mode::V2 => {
                    let controllers: Vec<String> = m
                        .super_options
                        .into_iter()
                        .filter(|o| V1_CONTROLLERS.contains(&o.as_str()))
                        .collect();
                    // A hierarchy mounted twice (bind mounts) is used at its first place.
                    let seen = v1
                        .iter()
                        .any(|v| v.controllers.iter().any(|c| controllers.contains(c)));
                    if !controllers.is_empty() && !seen {
                        v1.push(V1Mount {
                            controllers,
                            mount: m.mount_point,
                        });
                    }
                }
                "cgroup2" if mode != Mode::V1 => {
                    let better = unified.as_ref().is_none_or(|u| !u.starts_with(CGROUP_ROOT))
                        && m.mount_point.starts_with(CGROUP_ROOT);
                    if unified.is_none() || better {
                        unified = Some(m.mount_point);
                    }
                }
                _ => {}
            }
        }
        Hierarchy { mode, v1, unified }
    }

    /// A V2 host with the unified hierarchy at `root`.
    pub fn v2(root: impl Into<PathBuf>) -> Hierarchy {
        Hierarchy {
            mode: Mode::V2,
            v1: Vec::new(),
            unified: Some(root.into()),
        }
    }

    /// A V1 host (`unified` None) or a hybrid one (`unified` Some) with these v1 mounts.
    pub fn v1(mounts: Vec<V1Mount>, unified: Option<PathBuf>) -> Hierarchy {
        Hierarchy {
            mode: if unified.is_some() {
                Mode::Hybrid
            } else {
                Mode::V1
            },
            v1: mounts,
            unified,
        }
    }

    /// The v1 mount holding `controller`, if any.
    pub fn v1_mount(&self, controller: &str) -> Option<&V1Mount> {
        self.v1
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
    }

    /// The controllers the unified hierarchy's root offers (its cgroup.controllers).
    pub fn v2_available(&self) -> Result<Vec<String>> {
        let Some(root) = &self.unified else {
            return Ok(Vec::new());
        };
        let text = files::read_cg(&root.join("cgroup.controllers"))?;
        Ok(text.split_whitespace().map(str::to_string).collect())
    }

    fn check(&self) -> Result<()> {
        let ok = match self.mode {
            Mode::V2 => self.unified.is_some(),
            Mode::Hybrid => self.unified.is_some(),
            Mode::V1 => !self.v1.is_empty(),
        };
        if ok {
            Ok(())
        } else {
            Err(files::cg_err(
                Path::new(CGROUP_ROOT),
                format!(
                    "detected {:?} mode but /proc/self/mountinfo lists no matching cgroup mount",
                    self.mode
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::statfs::{CGROUP_SUPER_MAGIC, TMPFS_MAGIC};

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 50 0:32 / /var/lib/x/memory rw,relatime - cgroup cgroup rw,memory
100 50 0:3 / /tmp/my\\040dir rw - cgroup cgroup rw,pids
";

    #[test]
    fn classify_modes() {
        assert_eq!(classify(CGROUP2_SUPER_MAGIC, None), Mode::V2);
        assert_eq!(
            classify(TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)),
            Mode::Hybrid
        );
        assert_eq!(classify(TMPFS_MAGIC, Some(CGROUP_SUPER_MAGIC)), Mode::V1);
        assert_eq!(classify(TMPFS_MAGIC, None), Mode::V1);
    }

    #[test]
    fn mountinfo_hybrid() {
        let h = Hierarchy::from_mountinfo(Mode::Hybrid, HYBRID);
        assert_eq!(
            h.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(h.v1.len(), 4, "{h:?}");
        let cpu = h.v1_mount("cpuacct").unwrap();
        assert_eq!(cpu.mount, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            h.v1_mount("memory").unwrap().mount,
            Path::new("/sys/fs/cgroup/memory")
        );
        assert_eq!(h.v1_mount("pids").unwrap().mount, Path::new("/tmp/my dir"));
        assert!(h.v1_mount("systemd").is_none());
        assert!(h.v1_mount("freezer").is_none());
    }

    #[test]
    fn mountinfo_v2_ignores_v1() {
        let info = "\
25 20 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
        let h = Hierarchy::from_mountinfo(Mode::V2, info);
        assert!(h.v1.is_empty());
        assert_eq!(h.unified.as_deref(), Some(Path::new("/sys/fs/cgroup")));
    }

    #[test]
    fn host_detection_matches_mountinfo() {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            isobox_common::skip::skip("no /proc/self/mountinfo");
            return;
        };
        let Ok(h) = Hierarchy::host() else {
            isobox_common::skip::skip(&format!("no cgroup file system at {CGROUP_ROOT}"));
            return;
        };
        let root_is_v2 = info
            .lines()
            .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
        let unified_is_v2 = info
            .lines()
            .any(|l| l.contains(" /sys/fs/cgroup/unified ") && l.contains(" - cgroup2 "));
        let want = if root_is_v2 {
            Mode::V2
        } else if unified_is_v2 {
            Mode::Hybrid
        } else {
            Mode::V1
        };
        assert_eq!(h.mode, want);
        assert_eq!(super::super::detect().unwrap(), want);
    }
}
