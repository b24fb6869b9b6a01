//! Parsing OCI mount options into mount(2) flags, propagation changes and filesystem data.

use std::path::PathBuf;

use nix::mount::MsFlags;

/// Mount options split the way mount(2) needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call (bind, ro, nosuid, …).
    pub flags: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Everything else, passed to the filesystem as data (`mode=755`, `size=65536k`, …).
    pub data: Vec<String>,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Flags that a bind mount only gets through a second, remounting call.
    pub fn remount_flags(&self) -> MsFlags {
        self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

/// `true` in the table: the option clears the flag instead of setting it.
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

/// Propagation types; each also comes recursive, with an `r` before its name.
const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("shared", MsFlags::MS_SHARED),
    ("slave", MsFlags::MS_SLAVE),
    ("unbindable", MsFlags::MS_UNBINDABLE),
];

/// Propagation names, plain and recursive.
pub fn propagation(name: &str) -> Option<MsFlags> {
    let find = |n: &str| PROPAGATION.iter().find(|(p, _)| *p == n).map(|(_, f)| *f);
    match find(name) {
        Some(flag) => Some(flag),
        None => Some(find(name.strip_prefix('r')?)? | MsFlags::MS_REC),
    }
}

/// Every option [`parse`] applies (mount flags and propagation), sorted: what `features`
/// lists as `mountOptions`.
pub fn applied() -> Vec<String> {
    let mut out: Vec<String> = FLAGS.iter().map(|(n, _, _)| n.to_string()).collect();
    for (p, _) in PROPAGATION {
        out.push(p.to_string());
        out.push(format!("r{p}"));
    }
    out.sort();
    out
}

/// Options isobox recognizes but cannot honour (they need mount_setattr or id-mapped mounts).
const UNSUPPORTED: &[&str] = &[
    "idmap",
    "ridmap",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnoatime",
    "ratime",
    "rrelatime",
    "rnorelatime",
    "rstrictatime",
    "rnostrictatime",
    "rnodiratime",
    "rdiratime",
    "rnosymfollow",
    "rsymfollow",
];

/// Parse a mount's options in order (a later option overrides an earlier one). Errors name the
/// option.
pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<MountOptions, String> {
    let mut out = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
    };
    for opt in options.iter().map(AsRef::as_ref) {
        if let Some(&(_, clear, flag)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
            if clear {
                out.flags.remove(flag);
            } else {
                out.flags.insert(flag);
            }
        } else if let Some(p) = propagation(opt) {
            out.propagation.push(p);
        } else if UNSUPPORTED.contains(&opt) || opt.starts_with("idmap=") {
            return Err(format!("mount option {opt:?} is not supported"));
        } else if opt == "tmpcopyup" || opt == "nosymfollow" || opt == "symfollow" {
            // Runtime-specific extras that do not change what the kernel mounts here.
            continue;
        } else {
            out.data.push(opt.to_string());
        }
    }
    Ok(out)
}

/// The default rootfs propagation (runc's): recursive slave, so host mounts still appear but
/// nothing the container mounts leaks out.
pub fn rootfs_propagation(value: Option<&str>) -> Result<MsFlags, String> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        Some(v) => propagation(v).ok_or_else(|| {
            format!("{v:?} is not one of private, rprivate, slave, rslave, shared, rshared, unbindable, runbindable")
        }),
    }
}

/// One entry of `mounts`, parsed before the container process exists.
#[derive(Debug, Clone)]
pub struct PlannedMount {
    pub index: usize,
    pub destination: PathBuf,
    pub typ: String,
    /// For binds: the host path (relative sources are relative to the bundle).
    pub source: Option<PathBuf>,
    pub opts: MountOptions,
}

/// Parse every mount of the bundle; errors are `(field, reason)`.
pub fn plan(bundle: &crate::Bundle) -> std::result::Result<Vec<PlannedMount>, (String, String)> {
    let mut out = Vec::new();
    for (i, m) in bundle.spec.mounts().iter().flatten().enumerate() {
        let opts = parse(m.options().as_deref().unwrap_or_default())
            .map_err(|r| (format!("mounts[{i}].options"), r))?;
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err((
                format!("mounts[{i}].uidMappings"),
                "id-mapped mounts are not supported".into(),
            ));
        }
        let typ = m.typ().clone().unwrap_or_default();
        let mut source = m.source().clone();
        if opts.is_bind() || typ == "bind" {
            let Some(src) = source.as_ref() else {
                return Err((
                    format!("mounts[{i}].source"),
                    "a bind mount needs a source".into(),
                ));
            };
            let host = if src.is_absolute() {
                src.clone()
            } else {
                bundle.dir.join(src)
            };
            if !host.exists() {
                return Err((
                    format!("mounts[{i}].source"),
                    format!("{} does not exist", host.display()),
                ));
            }
            source = Some(host);
        }
        let mut opts = opts;
        if typ == "bind" {
            opts.flags.insert(MsFlags::MS_BIND);
        }
        out.push(PlannedMount {
            index: i,
            destination: m.destination().clone(),
            typ,
            source,
            opts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_proc_and_tmpfs_options() {
        let o = parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]).unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert!(o.propagation.is_empty());
        assert!(!o.is_bind());
    }

    #[test]
    fn bind_with_ro_needs_remount_and_keeps_propagation() {
        let o = parse(&["rbind", "ro", "nosuid", "rslave"]).unwrap();
        assert!(o.is_bind());
        assert!(o.flags.contains(MsFlags::MS_REC));
        assert_eq!(o.remount_flags(), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data_string(), None);
    }

    #[test]
    fn later_options_override_earlier() {
        let o = parse(&["ro", "rw", "noexec", "exec", "nodev"]).unwrap();
        assert_eq!(o.flags, MsFlags::MS_NODEV);
    }

    #[test]
    fn unsupported_options_are_named() {
        let err = parse(&["bind", "rro"]).unwrap_err();
        assert!(err.contains("\"rro\""), "{err}");
        assert!(parse(&["idmap"]).is_err());
    }

    #[test]
    fn every_applied_option_is_a_flag_or_a_propagation() {
        let all = applied();
        for must in [
            "ro",
            "nosuid",
            "rbind",
            "rprivate",
            "unbindable",
            "strictatime",
        ] {
            assert!(all.iter().any(|o| o == must), "{must}: {all:?}");
        }
        for opt in &all {
            let o = parse(&[opt]).unwrap();
            assert!(
                o.data.is_empty(),
                "{opt} would go to the file system as data"
            );
        }
        for refused in UNSUPPORTED {
            assert!(!all.iter().any(|o| o == refused), "{refused}");
        }
        assert_eq!(propagation("rbind"), None);
        assert_eq!(
            propagation("rslave"),
            Some(MsFlags::MS_SLAVE | MsFlags::MS_REC)
        );
    }

    #[test]
    fn rootfs_propagation_defaults_to_rslave() {
        assert_eq!(
            rootfs_propagation(None).unwrap(),
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        );
        assert_eq!(
            rootfs_propagation(Some("private")).unwrap(),
            MsFlags::MS_PRIVATE
        );
        assert_eq!(
            rootfs_propagation(Some("shared")).unwrap(),
            MsFlags::MS_SHARED
        );
        assert_eq!(
            rootfs_propagation(Some("runbindable")).unwrap(),
            MsFlags::MS_UNBINDABLE | MsFlags::MS_REC
        );
        assert!(rootfs_propagation(Some("bogus")).is_err());
    }
}
