//! The part of `create` that only reads the bundle: every parse and translation the backend
//! makes of config.json before it touches the host, callable on its own (the config fuzz
//! target drives it with arbitrary bundles). Nothing here mounts, creates, writes or opens a
//! path the bundle names: with a namespace to join by path, which `create` opens, the checks
//! that depend on the namespaces (sysctl, no mount namespace) are left out.

use std::path::Path;

use isobox_common::{Bundle, Error, Result};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use crate::cgroups::{self, Cgroup};
use crate::devices::{self, Node};
use crate::mounts::{self, PlannedMount};
use crate::namespaces::{self, NsPlan};
use crate::spawn::to_common;
use crate::{rlimits, rootfs, seccomp, sysctl};
use isobox_common::caps::{self, CapMasks};
use isobox_common::ioprio;
use isobox_common::mount_opts;

/// config.json as the container backend reads it, parsed and checked: what `create` builds
/// its plan from, and all `check` needs.
pub(crate) struct Parsed {
    pub seccomp: Option<seccomp::Program>,
    pub ioprio: Option<u32>,
    /// None when namespaces are joined by path and `open_namespaces` was false.
    pub ns: Option<NsPlan>,
    pub mounts: Vec<PlannedMount>,
    pub propagation: MsFlags,
    pub devices: Vec<Node>,
    pub caps: Option<CapMasks>,
}

/// Parse and check `bundle` for the container backend, without making anything. Namespaces
/// to join by path are opened only with `open_namespaces` (`create`); without it the checks
/// that depend on them (sysctl, no mount namespace, user namespace maps) are left out.
pub(crate) fn parse(bundle: &Bundle, open_namespaces: bool) -> Result<Parsed> {
    let cfg = |(field, reason): (String, String)| Error::Config {
        file: bundle.config_path.clone(),
        field,
        reason,
    };
    let unsupported = |field: &str, reason: &str| Error::Unsupported {
        file: bundle.config_path.clone(),
        field: field.into(),
        reason: reason.into(),
    };
    let linux = bundle.spec.linux().as_ref();
    let process = bundle.process();
    // Compiled here so a bad profile fails before anything exists.
    let seccomp = linux
        .and_then(|l| l.seccomp().as_ref())
        .map(seccomp::compile)
        .transpose()
        .map_err(cfg)?;
    let planned = process
        .map(|p| self::process(p, &bundle.config_path, true))
        .transpose()?
        .unwrap_or_default();
    for (present, field) in [
        (
            linux.is_some_and(|l| l.intel_rdt().is_some()),
            "linux.intelRdt",
        ),
        (
            linux.is_some_and(|l| l.memory_policy().is_some()),
            "linux.memoryPolicy",
        ),
    ] {
        if present {
            return Err(unsupported(field, "not supported by the container backend"));
        }
    }
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(unsupported(
                "linux.personality.flags",
                "no personality flags are defined by the runtime spec",
            ));
        }
    }
    let joins = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|ns| ns.path().is_some()));
    let ns = if open_namespaces || !joins {
        let ns = namespaces::plan(linux).map_err(cfg)?;
        if !ns.has(CloneFlags::CLONE_NEWNS) {
            rootfs::check_without_mount_ns(&bundle.spec).map_err(cfg)?;
        }
        if let Some(values) = linux.and_then(|l| l.sysctl().as_ref()) {
            sysctl::validate(values, &ns).map_err(cfg)?;
        }
        if ns.new_user()
            && linux
                .and_then(|l| l.uid_mappings().as_ref())
                .is_none_or(|m| m.is_empty())
        {
            return Err(cfg((
                "linux.uidMappings".into(),
                "a new user namespace needs uidMappings and gidMappings".into(),
            )));
        }
        Some(ns)
    } else {
        None
    };
    let mounts = mounts::plan(bundle).map_err(cfg)?;
    let propagation =
        mount_opts::rootfs_propagation(linux.and_then(|l| l.rootfs_propagation().as_deref()))
            .map_err(|r| cfg(("linux.rootfsPropagation".into(), r)))?;
    let devices = devices::from_spec(
        linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default(),
    )
    .map_err(cfg)?;
    devices::check_cgroup_rules(linux).map_err(cfg)?;
    Ok(Parsed {
        seccomp,
        ioprio: planned.ioprio,
        ns,
        mounts,
        propagation,
        devices,
        caps: planned.caps,
    })
}

/// A process spec as the container backend applies it.
#[derive(Debug, Default)]
pub(crate) struct ProcessPlan {
    pub caps: Option<CapMasks>,
    /// process.ioPriority as an ioprio value.
    pub ioprio: Option<u32>,
}

/// Check and translate a process spec: the one of config.json (`in_config`: its fields are
/// under `process.`) or the process file of an `exec` in `file` (its fields at the top).
pub(crate) fn process(process: &Process, file: &Path, in_config: bool) -> Result<ProcessPlan> {
    let name = |field: &str| -> String {
        if in_config {
            field.to_string()
        } else {
            field.strip_prefix("process.").unwrap_or(field).to_string()
        }
    };
    let cfg = |(field, reason): (String, String)| Error::Config {
        file: file.to_path_buf(),
        field: name(&field),
        reason,
    };
    let unsupported = |field: &str, reason: &str| Error::Unsupported {
        file: file.to_path_buf(),
        field: name(field),
        reason: reason.into(),
    };
    let labels = [
        (
            process.apparmor_profile(),
            "process.apparmorProfile",
            "AppArmor",
        ),
        (process.selinux_label(), "process.selinuxLabel", "SELinux"),
    ];
    for (value, field, what) in labels {
        if value.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(unsupported(field, &format!("{what} is not supported")));
        }
    }
    for (present, field) in [
        (process.scheduler().is_some(), "process.scheduler"),
        (
            process.exec_cpu_affinity().is_some(),
            "process.execCPUAffinity",
        ),
    ] {
        if present {
            return Err(unsupported(field, "not supported by the container backend"));
        }
    }
    let ioprio = process
        .io_priority()
        .as_ref()
        .map(ioprio::value)
        .transpose()
        .map_err(cfg)?;
    rlimits::validate(process.rlimits().as_deref().unwrap_or_default()).map_err(cfg)?;
    let caps = match process.capabilities().as_ref() {
        Some(c) => {
            let last = caps::last_cap();
            // Checked here: capset after `start` would fail only in the workload.
            if let Some((set, cap)) = caps::ungrantable(c, caps::runtime_bounding(last), last) {
                let root = if in_config { "/process" } else { "" };
                let index = std::fs::read_to_string(file)
                    .ok()
                    .and_then(|text| caps::index_in(&text, root, set, cap))
                    .map_or(String::new(), |i| format!("[{i}]"));
                return Err(cfg((
                    format!("process.capabilities.{set}{index}"),
                    format!(
                        "{} is not in the runtime's bounding set, so it cannot be granted",
                        caps::name(cap)
                    ),
                )));
            }
            Some(CapMasks::from_spec(c, last))
        }
        None => None,
    };
    Ok(ProcessPlan { caps, ioprio })
}

/// Check `bundle` as `create` would for the container `id` on a host whose cgroups are
/// mounted as `mode`, with the same errors, and without making anything.
pub fn check(bundle: &Bundle, id: &str, mode: cgroups::Mode) -> Result<()> {
    let parsed = parse(bundle, false)?;
    for m in &parsed.mounts {
        // Derived from the parsed options at mount time, where a panic would be too late.
        let _ = (m.opts.data_string(), m.opts.remount_flags());
    }
    let linux = bundle.spec.linux().as_ref();
    let resources = linux.and_then(devices::cgroup_resources);
    Cgroup::check(
        linux.and_then(|l| l.cgroups_path().as_deref()),
        id,
        resources.as_deref(),
        mode,
    )
    .map_err(|e| to_common(e, &bundle.config_path))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;
    use crate::cgroups::Mode;

    fn bundle(config: serde_json::Value) -> (tempfile::TempDir, Bundle) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(bin.join("sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let canon = fs::canonicalize(dir.path()).unwrap();
        let b = Bundle::from_config_text(canon, &config.to_string()).unwrap();
        (dir, b)
    }

    fn config(linux: serde_json::Value) -> serde_json::Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": linux
        })
    }

    #[test]
    fn refuses_what_create_refuses_for_the_cgroup_version_given() {
        let (_d, ok) = bundle(config(json!({"namespaces": [{"type": "mount"}]})));
        check(&ok, "c1", Mode::V1).unwrap();
        check(&ok, "c1", Mode::V2).unwrap();

        let (_d, swappiness) = bundle(config(json!({
            "namespaces": [{"type": "mount"}],
            "resources": {"memory": {"limit": 1048576, "swappiness": 10}}
        })));
        check(&swappiness, "c1", Mode::V1).unwrap();
        let err = check(&swappiness, "c1", Mode::V2).unwrap_err().to_string();
        assert!(err.contains("memory.swappiness"), "{err}");

        let (_d, up) = bundle(config(json!({
            "namespaces": [{"type": "mount"}],
            "cgroupsPath": "/a/../../b"
        })));
        let err = check(&up, "c1", Mode::V2).unwrap_err().to_string();
        assert!(err.contains("linux.cgroupsPath"), "{err}");
    }

    #[test]
    fn names_the_field_of_mounts_seccomp_and_sysctl() {
        let mut bad_mount = config(json!({"namespaces": [{"type": "mount"}]}));
        bad_mount["mounts"][0]["options"] = json!(["rw", "idmap"]);
        let (_d, b) = bundle(bad_mount);
        let err = check(&b, "c1", Mode::V2).unwrap_err().to_string();
        assert!(err.contains("mounts[0].options"), "{err}");

        let (_d, b) = bundle(config(json!({
            "namespaces": [{"type": "mount"}],
            "seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}
        })));
        let err = check(&b, "c1", Mode::V2).unwrap_err().to_string();
        assert!(err.contains("linux.seccomp"), "{err}");

        let (_d, b) = bundle(config(json!({
            "namespaces": [{"type": "mount"}],
            "sysctl": {"kernel.printk_ratelimit": "6"}
        })));
        let err = check(&b, "c1", Mode::V2).unwrap_err().to_string();
        assert!(
            err.contains("linux.sysctl.kernel.printk_ratelimit"),
            "{err}"
        );
    }
}
