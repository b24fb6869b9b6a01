//! The bundle every runtime runs: the built-in default (busybox + the isolation probe) or the
//! user's, with config.json rewritten per phase so each phase runs its own workload.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Where the probe sits inside the default rootfs.
pub const PROBE_IN_ROOTFS: &str = "/bin/isobox-probe";
/// The environment variable through which the probe learns the host's boot id.
pub const HOST_BOOT_ID_ENV: &str = "ISOBOX_PROBE_HOST_BOOT_ID";
/// The environment variable through which the probe learns host pids to look for.
pub const HOST_PIDS_ENV: &str = "ISOBOX_PROBE_HOST_PIDS";
const HOST_BUSYBOX: &str = "/bin/busybox";

/// What one phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Exits at once: startup cost.
    True,
    /// Prints one line: time to first output.
    EchoReady,
    /// The isolation probe.
    Probe,
}

/// A bundle directory owned by the comparison (inside its temp dir) whose config.json is
/// rewritten for each workload.
#[derive(Debug)]
pub struct CompareBundle {
    pub dir: PathBuf,
    /// Absolute host path of the root filesystem.
    pub rootfs: PathBuf,
    template: Value,
    /// The probe's path inside the rootfs, or why there is none.
    pub probe: std::result::Result<String, String>,
}

impl CompareBundle {
    /// Build the default bundle under `tmp`: busybox with its applet links and the probe found
    /// next to the isobox binary in `exe_dir`.
    pub fn build_default(tmp: &Path, exe_dir: &Path) -> Result<Self> {
        let dir = tmp.join("bundle");
        let rootfs = dir.join("rootfs");
        for sub in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
            fs::create_dir_all(rootfs.join(sub))
                .with_context(|| format!("creating {}", rootfs.join(sub).display()))?;
        }
        install_busybox(Path::new(HOST_BUSYBOX), &rootfs)?;
        fs::write(rootfs.join("etc/hostname"), "isobox-compare\n")
            .context("writing rootfs etc/hostname")?;

        let probe_host = exe_dir.join("isobox-probe");
        let probe = if probe_host.is_file() {
            let dest = rootfs.join(PROBE_IN_ROOTFS.trim_start_matches('/'));
            fs::copy(&probe_host, &dest).with_context(|| {
                format!("copying {} to {}", probe_host.display(), dest.display())
            })?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", dest.display()))?;
            Ok(PROBE_IN_ROOTFS.to_string())
        } else {
            Err(format!(
                "isobox-probe not built next to the isobox binary ({}): cargo build -p isobox-guest",
                probe_host.display()
            ))
        };
        Ok(CompareBundle {
            dir,
            rootfs,
            template: default_config(),
            probe,
        })
    }

    /// Use the user's bundle: its config.json is copied under `tmp` with `root.path` made
    /// absolute, so the user's files are never written.
    pub fn from_user(user: &Path, tmp: &Path) -> Result<Self> {
        let user = user
            .canonicalize()
            .with_context(|| format!("bundle {}", user.display()))?;
        let config_path = user.join("config.json");
        let text = fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        let mut template: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", config_path.display()))?;
        let root = template
            .pointer("/root/path")
            .and_then(Value::as_str)
            .with_context(|| format!("{}: root.path: missing", config_path.display()))?;
        let rootfs = if Path::new(root).is_absolute() {
            PathBuf::from(root)
        } else {
            user.join(root)
        };
        if !rootfs.is_dir() {
            bail!(
                "{}: root.path: {} is not a directory",
                config_path.display(),
                rootfs.display()
            );
        }
        template["root"]["path"] = json!(rootfs.to_string_lossy());
        let dir = tmp.join("bundle");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let probe = [
            "/bin/isobox-probe",
            "/isobox-probe",
            "/usr/bin/isobox-probe",
        ]
        .iter()
        .find(|p| rootfs.join(p.trim_start_matches('/')).is_file())
        .map(|p| p.to_string())
        .ok_or_else(|| format!("no isobox-probe in the rootfs {}", rootfs.display()));
        Ok(CompareBundle {
            dir,
            rootfs,
            template,
            probe,
        })
    }

    /// The argv a workload runs inside the rootfs. For a user bundle without /bin/true or
    /// /bin/echo the bundle's own process stands in; None when there is no probe.
    pub fn args_for(&self, w: Workload) -> Option<Vec<String>> {
        let has = |p: &str| {
            let host = self.rootfs.join(p.trim_start_matches('/'));
            host.exists() || host.symlink_metadata().is_ok()
        };
        let own = || -> Option<Vec<String>> {
            self.template
                .pointer("/process/args")?
                .as_array()?
                .iter()
                .map(|a| a.as_str().map(str::to_string))
                .collect()
        };
        match w {
            Workload::True if has("/bin/true") => Some(vec!["/bin/true".into()]),
            Workload::EchoReady if has("/bin/echo") => {
                Some(vec!["/bin/echo".into(), "ready".into()])
            }
            Workload::True | Workload::EchoReady => own(),
            Workload::Probe => self.probe.as_ref().ok().map(|p| vec![p.clone()]),
        }
    }

    /// Write config.json for `w` with `env` added to the process environment. Returns the
    /// workload's argv, or None when the workload cannot run in this bundle.
    pub fn write_config(
        &self,
        w: Workload,
        env: &[(String, String)],
    ) -> Result<Option<Vec<String>>> {
        let Some(args) = self.args_for(w) else {
            return Ok(None);
        };
        let config = phase_config(&self.template, &args, env);
        let path = self.dir.join("config.json");
        let text = serde_json::to_string_pretty(&config).context("serializing config.json")?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(Some(args))
    }
}

/// The template with `process.args` replaced and `env` merged into `process.env`.
fn phase_config(template: &Value, args: &[String], env: &[(String, String)]) -> Value {
    let mut config = template.clone();
    if !config.get("process").is_some_and(Value::is_object) {
        config["process"] = json!({ "cwd": "/", "user": { "uid": 0, "gid": 0 } });
    }
    config["process"]["args"] = json!(args);
    let mut vars: Vec<String> = config["process"]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in env {
        vars.retain(|e| e.split('=').next() != Some(k.as_str()));
        vars.push(format!("{k}={v}"));
    }
    config["process"]["env"] = json!(vars);
    config
}

/// The default config.json: the usual container namespaces and mounts, runc's default
/// capability set, no seccomp filter, read-only root. ociVersion 1.0.2 is the newest every
/// runtime compared here accepts (crun 1.8 refuses 1.2.0).
pub fn default_config() -> Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/bin/true"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "isobox-compare",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "mount" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "network" }
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"]
        }
    })
}

/// Copy a static busybox into `rootfs/bin` and link every applet it lists to it.
fn install_busybox(busybox: &Path, rootfs: &Path) -> Result<()> {
    if !busybox.is_file() {
        bail!(
            "the default bundle needs a static busybox at {} (Debian: apt-get install \
             busybox-static); or pass --bundle",
            busybox.display()
        );
    }
    let image = fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    if !is_static_elf(&image) {
        bail!(
            "{} is dynamically linked and would not run in a rootfs without libc (install \
             busybox-static); or pass --bundle",
            busybox.display()
        );
    }
    let dest = rootfs.join("bin/busybox");
    fs::write(&dest, &image).with_context(|| format!("writing {}", dest.display()))?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", dest.display()))?;
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    if !list.status.success() {
        bail!("{} --list failed: {}", busybox.display(), list.status);
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = rootfs.join("bin").join(applet);
        symlink("busybox", &link).with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// True for a 64-bit little-endian ELF without a PT_INTERP program header.
pub fn is_static_elf(image: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if image.len() < 64 || &image[..4] != b"\x7fELF" || image[4] != 2 || image[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([image[o], image[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(image[32..40].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        match image.get(at..at + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != PT_INTERP,
            None => false,
        }
    })
}

/// The host's boot id, which the probe compares with the one it sees.
pub fn host_boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_config_replaces_args_and_merges_env() {
        let template = default_config();
        let env = [
            (HOST_BOOT_ID_ENV.to_string(), "abc".to_string()),
            ("HOME".to_string(), "/tmp".to_string()),
        ];
        let c = phase_config(&template, &["/bin/echo".into(), "ready".into()], &env);
        assert_eq!(c["process"]["args"], json!(["/bin/echo", "ready"]));
        let vars: Vec<&str> = c["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(vars.contains(&"ISOBOX_PROBE_HOST_BOOT_ID=abc"));
        assert!(vars.contains(&"HOME=/tmp"));
        assert!(!vars.contains(&"HOME=/root"));
        assert_eq!(c["hostname"], "isobox-compare");
    }

    #[test]
    fn user_bundle_gets_an_absolute_root_and_is_never_written() {
        let tmp = tempfile::tempdir().unwrap();
        let user = tmp.path().join("user");
        fs::create_dir_all(user.join("rootfs/bin")).unwrap();
        let original = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
            "process":{"args":["/app","x"],"cwd":"/","env":["A=1"]}}"#;
        fs::write(user.join("config.json"), original).unwrap();
        let work = tmp.path().join("work");
        fs::create_dir_all(&work).unwrap();
        let b = CompareBundle::from_user(&user, &work).unwrap();
        assert!(b.rootfs.is_absolute());
        // No /bin/true or /bin/echo: the bundle's own process stands in; no probe.
        assert_eq!(b.args_for(Workload::True).unwrap(), ["/app", "x"]);
        assert!(b.probe.is_err());
        fs::write(user.join("rootfs/bin/true"), b"").unwrap();
        assert_eq!(b.args_for(Workload::True).unwrap(), ["/bin/true"]);

        b.write_config(Workload::True, &[("B".into(), "2".into())])
            .unwrap();
        let written: Value =
            serde_json::from_str(&fs::read_to_string(b.dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(written["root"]["path"], b.rootfs.to_string_lossy().as_ref());
        assert_eq!(written["process"]["env"], json!(["A=1", "B=2"]));
        assert!(b.dir.starts_with(&work));
        assert_eq!(
            fs::read_to_string(user.join("config.json")).unwrap(),
            original
        );
    }

    #[test]
    fn bad_user_bundles_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let err = CompareBundle::from_user(&tmp.path().join("none"), tmp.path()).unwrap_err();
        assert!(format!("{err:#}").contains("none"), "{err:#}");
        fs::write(tmp.path().join("config.json"), "{").unwrap();
        let err = CompareBundle::from_user(tmp.path(), tmp.path()).unwrap_err();
        assert!(format!("{err:#}").contains("invalid JSON"), "{err:#}");
        fs::write(
            tmp.path().join("config.json"),
            r#"{"root":{"path":"nope"}}"#,
        )
        .unwrap();
        let err = CompareBundle::from_user(tmp.path(), tmp.path()).unwrap_err();
        assert!(format!("{err:#}").contains("root.path"), "{err:#}");
    }

    #[test]
    fn static_elf_detection() {
        assert!(!is_static_elf(
            b"not an elf at all, not at all, not at all, not at all, x"
        ));
        if let Ok(sh) = fs::read("/bin/sh") {
            // Debian's dash is dynamically linked.
            assert!(!is_static_elf(&sh));
        }
        if let Ok(bb) = fs::read(HOST_BUSYBOX) {
            assert!(is_static_elf(&bb), "busybox-static should be static");
        }
    }

    #[test]
    fn builds_the_default_bundle() {
        if !Path::new(HOST_BUSYBOX).is_file() {
            isobox_common::skip::skip(&format!("no {HOST_BUSYBOX}"));
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let b = CompareBundle::build_default(tmp.path(), Path::new("/nonexistent")).unwrap();
        assert!(b.rootfs.join("bin/busybox").is_file());
        assert!(b.rootfs.join("bin/true").symlink_metadata().is_ok());
        assert!(b.probe.is_err());
        assert_eq!(b.args_for(Workload::Probe), None);
        let args = b.write_config(Workload::EchoReady, &[]).unwrap().unwrap();
        assert_eq!(args, ["/bin/echo", "ready"]);
        let written: Value =
            serde_json::from_str(&fs::read_to_string(b.dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(written["process"]["args"][1], "ready");
        // isobox's own strict loader accepts it, executable included.
        let loaded = isobox_common::Bundle::load(&b.dir).unwrap();
        assert_eq!(loaded.resolve_executable().unwrap(), Path::new("/bin/echo"));
        // The rootfs's echo really runs on the host.
        let out = Command::new(b.rootfs.join("bin/echo"))
            .arg("hi")
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }
}
