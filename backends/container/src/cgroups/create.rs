//! Making a container's cgroup: the directories in every hierarchy, controller delegation,
//! cpuset inheritance and the resource limits. On error everything made is removed again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::detect::Hierarchy;
use super::resources::{self, Flavor, Setting};
use super::v2::Wanted;
use super::{bpf, files, path, v1, v2, Cgroup, Mode};
use crate::error::{ContainerError, Result};

pub(crate) fn create(
    h: &Hierarchy,
    cgroups_path: Option<&Path>,
    id: &str,
    res: Option<&LinuxResources>,
) -> Result<Cgroup> {
    let resolved = path::resolve(cgroups_path, id)?;
    let v2_available = h.v2_available()?;
    let flavor = |controller: &str| flavor(h, &v2_available, controller);
    let settings = match res {
        Some(r) => resources::settings(r, &flavor)?,
        None => Vec::new(),
    };

    // Some, even empty: the rules apply to a cgroup that denies every device.
    let devices = res.and_then(|r| r.devices().as_deref());
    let bpf_devices = match devices {
        Some(d) if flavor("devices") == Ok(Flavor::V2) => Some(resources::device_rules(d)?),
        _ => None,
    };

    let mut made: Vec<PathBuf> = Vec::new();
    let result = build(h, &resolved, &v2_available, &settings, &mut made).and_then(|cg| {
        if let (Some(rules), Some(dir)) = (&bpf_devices, v2::unified_dir(&cg.paths)) {
            bpf::attach(dir, rules).map_err(|reason| ContainerError::Resource {
                field: "linux.resources.devices".into(),
                reason,
            })?;
        }
        Ok(cg)
    });
    match result {
        Ok(cg) => Ok(cg),
        Err(e) => {
            // Deepest first; every directory here was made by this call and is empty.
            for dir in made.iter().rev() {
                let _ = files::rmdir(dir);
            }
            Err(e)
        }
    }
}

/// Which version holds `controller` here, or why none does.
pub(super) fn flavor(
    h: &Hierarchy,
    v2_available: &[String],
    controller: &str,
) -> Result<Flavor, String> {
    if controller == "cgroup" {
        return match &h.unified {
            Some(_) => Ok(Flavor::V2),
            None => Err("this host has no cgroup v2 hierarchy".into()),
        };
    }
    if h.v1_mount(controller).is_some() {
        return Ok(Flavor::V1);
    }
    // v2 has no devices controller: a BPF program attached to the cgroup stands in for it.
    if v2_available.iter().any(|c| c == controller)
        || (controller == "devices" && h.mode == Mode::V2)
    {
        return Ok(Flavor::V2);
    }
    let mut why = format!("the {controller} controller is not available on this host (");
    if h.mode != Mode::V2 {
        why += "no cgroup v1 hierarchy has it mounted";
    }
    if let Some(u) = &h.unified {
        if h.mode != Mode::V2 {
            why += ", and ";
        }
        why += &format!(
            "{} does not list it",
            u.join("cgroup.controllers").display()
        );
    }
    Err(why + ")")
}

fn build(
    h: &Hierarchy,
    resolved: &path::Resolved,
    v2_available: &[String],
    settings: &[Setting],
    made: &mut Vec<PathBuf>,
) -> Result<Cgroup> {
    let mut paths = Vec::new();
    let mut parents = BTreeSet::new();
    let mut mounts: Vec<(&Path, bool)> = h.v1.iter().map(|m| (m.mount.as_path(), false)).collect();
    if let Some(u) = &h.unified {
        mounts.push((u.as_path(), true));
    }
    for (mount, unified) in mounts {
        let cpuset = !unified
            && h.v1
                .iter()
                .any(|m| m.mount == mount && m.controllers.iter().any(|c| c == "cpuset"));
        let leaf = mount.join(&resolved.relative);
        // A concurrent destroy may remove a shared parent (e.g. /isobox) between our
        // finding it and making its child: then walk down again, a few times at most.
        let mut walks = 0;
        while !make_path(mount, &resolved.relative, cpuset, made, &mut parents)? {
            walks += 1;
            if walks == 3 {
                return Err(files::cg_err(
                    &leaf,
                    "a parent kept vanishing while making it",
                ));
            }
        }
        if let Some(owned) = &resolved.owned_parent {
            parents.insert(mount.join(owned));
        }
        if unified {
            let wanted = v2_wanted(h.mode, v2_available, settings);
            v2::enable_controllers(mount, &leaf, &wanted)?;
        }
        paths.push(leaf);
    }
    if paths.is_empty() {
        return Err(files::cg_err(
            Path::new(super::detect::CGROUP_ROOT),
            "no cgroup hierarchy is mounted",
        ));
    }
    for s in settings {
        apply(&setting_dir(h, &resolved.relative, s)?, s)?;
    }
    Ok(Cgroup {
        mode: h.mode,
        paths,
        parents: parents.into_iter().collect(),
    })
}

/// The directory of the cgroup at `relative` that holds the control file of `s`.
pub(super) fn setting_dir(h: &Hierarchy, relative: &Path, s: &Setting) -> Result<PathBuf> {
    let mount = if s.controller == "cgroup" || h.v1_mount(s.controller).is_none() {
        h.unified.as_deref()
    } else {
        h.v1_mount(s.controller).map(|m| m.mount.as_path())
    };
    // `settings` holds only controllers `flavor` found, so this is a safety net.
    let Some(mount) = mount else {
        return Err(ContainerError::Resource {
            field: s.field.clone(),
            reason: format!("no hierarchy holds the {} controller", s.controller),
        });
    };
    Ok(mount.join(relative))
}

/// Make each missing directory from `mount` down to `mount/rel`, recording what was made.
/// Ok(false) when a parent vanished under us (the caller walks again).
fn make_path(
    mount: &Path,
    rel: &Path,
    cpuset: bool,
    made: &mut Vec<PathBuf>,
    parents: &mut BTreeSet<PathBuf>,
) -> Result<bool> {
    let mut dir = mount.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        dir.push(c);
        let is_leaf = i + 1 == comps.len();
        let new = match files::mkdir(&dir) {
            Ok(new) => new,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && i > 0 => return Ok(false),
            Err(e) => return Err(files::cg_err(&dir, format!("mkdir: {e}"))),
        };
        if new {
            made.push(dir.clone());
            if !is_leaf {
                parents.insert(dir.clone());
            }
        } else if is_leaf {
            let busy = files::procs(&dir)?;
            if !busy.is_empty() {
                return Err(files::cg_err(
                    &dir,
                    format!("already exists and holds processes {busy:?}"),
                ));
            }
        }
        if cpuset {
            v1::cpuset_copy_down(&dir)?;
        }
    }
    Ok(true)
}

/// The controllers to delegate on v2: those a setting needs (an error if refused), plus
/// accounting ones on a pure v2 host (best effort).
pub(super) fn v2_wanted(mode: Mode, available: &[String], settings: &[Setting]) -> Vec<Wanted> {
    let mut wanted: Vec<Wanted> = Vec::new();
    for s in settings {
        let on_v2 = available.iter().any(|c| c == s.controller);
        if on_v2 && !wanted.iter().any(|w| w.controller == s.controller) {
            wanted.push(Wanted {
                controller: s.controller.to_string(),
                field: Some(s.field.clone()),
            });
        }
    }
    // On a pure v2 host the container gets every controller the host delegates, as runc
    // does (accounting, and limits `update` may set later), each optional.
    if mode == Mode::V2 {
        for c in available {
            if !wanted.iter().any(|w| w.controller == *c) {
                wanted.push(Wanted {
                    controller: c.clone(),
                    field: None,
                });
            }
        }
    }
    wanted
}

/// Write one setting into `dir`: the first of its candidate files that exists.
pub(super) fn apply(dir: &Path, s: &Setting) -> Result<()> {
    let refuse = |reason: String| ContainerError::Resource {
        field: s.field.clone(),
        reason,
    };
    let found = s
        .choices
        .iter()
        .map(|(f, value)| (dir.join(f), value))
        .find(|(f, _)| f.exists());
    let Some((file, value)) = found else {
        let names: Vec<&str> = s.choices.iter().map(|(f, _)| f.as_str()).collect();
        let names = names.join(" or ");
        return Err(refuse(format!(
            "{}/{names}: not present on this host (controller or kernel feature missing{})",
            dir.display(),
            if s.field.ends_with("memory.swap") {
                "; swap accounting is off or there is no swap"
            } else {
                ""
            }
        )));
    };
    files::write(&file, value).map_err(|e| {
        refuse(format!(
            "{}: writing {:?}: {}",
            file.display(),
            value,
            files::why(&e)
        ))
    })
}
