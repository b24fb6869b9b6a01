//! Which runtimes are here, and the command line that runs one workload under each.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::bundle::CompareBundle;

/// How a runtime is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `isobox --root R run --backend container|microvm --bundle B ID`.
    Isobox,
    /// An OCI runtime CLI: `<bin> --root R run --bundle B ID` (runc, crun, youki).
    Oci,
    /// The workload as a plain host process: the no-isolation baseline.
    Host,
}

#[derive(Debug, Clone)]
pub struct Runtime {
    /// "isobox", "runc", "crun", "youki", "host".
    pub name: String,
    /// "container", "microvm", "none".
    pub backend: String,
    pub kind: Kind,
    /// The runtime's binary (for the host baseline: none).
    pub binary: Option<PathBuf>,
    /// A state root of its own, inside the comparison's temp dir.
    pub state_root: PathBuf,
    /// How long one run may take before it is killed.
    pub timeout: Duration,
    /// For an isobox microVM: the `--hypervisor` it is run with (None: `auto`).
    pub hypervisor: Option<&'static str>,
}

/// OCI runtimes looked for in PATH, in table order.
const OCI_RUNTIMES: &[&str] = &["runc", "crun", "youki"];

/// The microVM rows: on hardware KVM the built-in VMM and qemu with KVM, side by side on the
/// same kernel, initramfs and command line; elsewhere the one `auto` picks.
pub fn microvm_hypervisors(hardware_kvm: bool) -> Vec<Option<&'static str>> {
    if hardware_kvm {
        vec![Some("builtin"), Some("qemu")]
    } else {
        vec![None]
    }
}

/// Every runtime to compare: isobox's two backends (the microVM once per hypervisor worth
/// comparing, see [`microvm_hypervisors`]), the OCI runtimes installed, the host. `runc` and
/// `crun` are listed even when missing, so the table says so.
pub fn discover(exe: &Path, tmp: &Path, hardware_kvm: bool) -> Vec<Runtime> {
    let mut list = vec![Runtime {
        name: "isobox".into(),
        backend: "container".into(),
        kind: Kind::Isobox,
        binary: Some(exe.to_path_buf()),
        state_root: tmp.join("state-isobox-container"),
        timeout: Duration::from_secs(60),
        hypervisor: None,
    }];
    for hypervisor in microvm_hypervisors(hardware_kvm) {
        list.push(Runtime {
            name: "isobox".into(),
            backend: "microvm".into(),
            kind: Kind::Isobox,
            binary: Some(exe.to_path_buf()),
            state_root: match hypervisor {
                Some(h) => tmp.join(format!("state-isobox-microvm-{h}")),
                None => tmp.join("state-isobox-microvm"),
            },
            // A VM under software emulation boots in seconds, not milliseconds.
            timeout: Duration::from_secs(300),
            hypervisor,
        });
    }
    for name in OCI_RUNTIMES {
        let binary = which(name);
        if binary.is_none() && *name == "youki" {
            continue;
        }
        list.push(Runtime {
            name: name.to_string(),
            backend: "container".into(),
            kind: Kind::Oci,
            binary,
            state_root: tmp.join(format!("state-{name}")),
            timeout: Duration::from_secs(60),
            hypervisor: None,
        });
    }
    list.push(Runtime {
        name: "host".into(),
        backend: "none".into(),
        kind: Kind::Host,
        binary: None,
        state_root: tmp.join("state-host"),
        timeout: Duration::from_secs(60),
        hypervisor: None,
    });
    list
}

impl Runtime {
    /// The command line that runs `args` from `bundle` as container `id`.
    pub fn argv(&self, bundle: &CompareBundle, id: &str, args: &[String]) -> Vec<OsString> {
        let bin = || OsString::from(self.binary.as_deref().unwrap_or(Path::new("")));
        let mut v: Vec<OsString> = Vec::new();
        match self.kind {
            Kind::Isobox => {
                v.push(bin());
                v.push("--root".into());
                v.push(self.state_root.clone().into());
                v.extend(["run", "--backend", self.backend.as_str()].map(Into::into));
                if let Some(h) = self.hypervisor {
                    v.extend(["--hypervisor", h].map(Into::into));
                }
                v.push("--bundle".into());
                v.push(bundle.dir.clone().into());
                v.push(id.into());
            }
            Kind::Oci => {
                v.push(bin());
                v.push("--root".into());
                v.push(self.state_root.clone().into());
                v.extend(["run", "--bundle"].map(OsString::from));
                v.push(bundle.dir.clone().into());
                v.push(id.into());
            }
            Kind::Host => {
                // The rootfs's own binary, run directly: the host resolves its (relative)
                // applet links, and the process sees the host as it is.
                if let Some((first, rest)) = args.split_first() {
                    v.push(bundle.rootfs.join(first.trim_start_matches('/')).into());
                    v.extend(rest.iter().map(OsString::from));
                }
            }
        }
        v
    }

    /// Remove container `id` if the runtime left it behind (after a failure or a kill).
    /// Best effort: errors are ignored, the temp dir goes afterwards anyway.
    pub fn cleanup(&self, id: &str) {
        if self.kind == Kind::Host || !self.state_root.join(id).exists() {
            return;
        }
        if let Some(bin) = &self.binary {
            let _ = Command::new(bin)
                .arg("--root")
                .arg(&self.state_root)
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Size of the runtime's own binary, when it has one.
    pub fn binary_size(&self) -> Option<(PathBuf, u64)> {
        let bin = self.binary.as_ref()?;
        let meta = fs::metadata(bin).ok()?;
        Some((bin.clone(), meta.len()))
    }
}

/// The first executable file called `name` in PATH (symlinks followed).
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .and_then(|p| fs::canonicalize(&p).ok().or(Some(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = CompareBundle::from_user(&user_bundle(tmp.path()), tmp.path()).unwrap();
        let rts = discover(Path::new("/opt/isobox"), Path::new("/t"), false);
        let show = |rt: &Runtime| -> Vec<String> {
            rt.argv(&bundle, "id1", &["/bin/echo".into(), "ready".into()])
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let b = bundle.dir.display().to_string();
        assert_eq!(
            show(&rts[1]),
            [
                "/opt/isobox",
                "--root",
                "/t/state-isobox-microvm",
                "run",
                "--backend",
                "microvm",
                "--bundle",
                &b,
                "id1"
            ]
        );
        let mut runc = rts.iter().find(|r| r.name == "runc").unwrap().clone();
        runc.binary = Some("/usr/sbin/runc".into());
        assert_eq!(
            show(&runc),
            [
                "/usr/sbin/runc",
                "--root",
                "/t/state-runc",
                "run",
                "--bundle",
                &b,
                "id1"
            ]
        );
        let host = rts.iter().find(|r| r.kind == Kind::Host).unwrap();
        let rootfs = bundle.rootfs.join("bin/echo").display().to_string();
        assert_eq!(show(host), [rootfs.as_str(), "ready"]);
    }

    /// A user bundle: config.json with a relative root and an empty rootfs.
    fn user_bundle(dir: &Path) -> std::path::PathBuf {
        let user = dir.join("user");
        fs::create_dir_all(user.join("rootfs")).unwrap();
        fs::write(
            user.join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["/app"],"cwd":"/"}}"#,
        )
        .unwrap();
        user
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("no-such-binary-isobox-xyz").is_none());
    }

    #[test]
    fn both_hypervisors_on_hardware_kvm() {
        assert_eq!(microvm_hypervisors(true), [Some("builtin"), Some("qemu")]);
        assert_eq!(microvm_hypervisors(false), [None]);
        let tmp = tempfile::tempdir().unwrap();
        let b = CompareBundle::from_user(&user_bundle(tmp.path()), tmp.path()).unwrap();
        let vms: Vec<Runtime> = discover(Path::new("/opt/isobox"), Path::new("/t"), true)
            .into_iter()
            .filter(|r| r.backend == "microvm")
            .collect();
        assert_eq!(vms.len(), 2);
        for (rt, h) in vms.iter().zip(["builtin", "qemu"]) {
            let argv: Vec<String> = rt
                .argv(&b, "id1", &["/bin/true".into()])
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                argv[4..8],
                ["--backend", "microvm", "--hypervisor", h],
                "{argv:?}"
            );
            assert_eq!(
                rt.state_root,
                Path::new("/t").join(format!("state-isobox-microvm-{h}"))
            );
        }
    }

    #[test]
    fn discovery_lists_isobox_runc_crun_and_host() {
        let rts = discover(Path::new("/usr/bin/isobox"), Path::new("/tmp/x"), false);
        let names: Vec<String> = rts
            .iter()
            .map(|r| format!("{}/{}", r.name, r.backend))
            .collect();
        assert_eq!(names[0], "isobox/container");
        assert_eq!(names[1], "isobox/microvm");

        assert!(names.contains(&"runc/container".to_string()));
        assert!(names.contains(&"crun/container".to_string()));
        assert_eq!(names.last().unwrap(), "host/none");
        let roots: std::collections::HashSet<_> = rts.iter().map(|r| &r.state_root).collect();
        assert_eq!(
            roots.len(),
            rts.len(),
            "every runtime has its own state root"
        );
    }
}
