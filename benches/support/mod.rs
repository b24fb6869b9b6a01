//! Shared by the benches that shell out to runtimes: a busybox bundle, a runner with its own
//! state root, and the checks that decide whether a group can run on this host.

#![allow(dead_code)] // each bench uses a different part

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "../../tests/support/netns.rs"]
pub mod netns;

/// The isobox binary cargo built for these benches.
pub fn isobox_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_isobox"))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The first executable called `name` in PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Print why a bench group does not run, in the form the other groups' output has.
pub fn skip(group: &str, why: &str) {
    eprintln!("{group}: skipped: {why}");
}

/// A bundle in a temp dir: static busybox with applet links, running `args`.
pub struct Bundle {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

pub fn busybox_bundle(args: &[&str]) -> Result<Bundle, String> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        return Err("no /bin/busybox (apt-get install busybox-static)".into());
    }
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let dir = tmp.path().join("bundle");
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(rootfs.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
    }
    fs::copy(busybox, rootfs.join("bin/busybox")).map_err(|e| format!("copy busybox: {e}"))?;
    for applet in ["true", "sh", "echo", "dd", "nc", "sleep"] {
        symlink("busybox", rootfs.join("bin").join(applet))
            .map_err(|e| format!("link {applet}: {e}"))?;
    }
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0}, "args": args,
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "isobox-bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                                 {"type": "uts"}, {"type": "network"}]}
    });
    fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("write config.json: {e}"))?;
    Ok(Bundle { _tmp: tmp, dir })
}

impl Bundle {
    /// Make the bundle join the network namespace at `path`.
    pub fn join_network(&self, path: &str) -> Result<(), String> {
        let file = self.dir.join("config.json");
        let text = fs::read(&file).map_err(|e| format!("reading config.json: {e}"))?;
        let mut config: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        for ns in config["linux"]["namespaces"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if ns["type"] == "network" {
                ns["path"] = serde_json::json!(path);
            }
        }
        fs::write(
            &file,
            serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("writing config.json: {e}"))
    }
}

/// Runs `<bin> --root <own temp root> run [extra…] --bundle B <fresh id>` and removes what a
/// failed run left behind.
pub struct Runner {
    bin: PathBuf,
    extra: Vec<String>,
    root: tempfile::TempDir,
    n: Cell<u32>,
}

impl Runner {
    pub fn new(bin: &Path, extra: &[&str]) -> Result<Runner, String> {
        Ok(Runner {
            bin: bin.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            root: tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?,
            n: Cell::new(0),
        })
    }

    /// One run; Err carries the runtime's first stderr line.
    pub fn run(&self, bundle: &Bundle) -> Result<(), String> {
        self.n.set(self.n.get() + 1);
        let id = format!("bench-{}-{}", std::process::id(), self.n.get());
        let out = Command::new(&self.bin)
            .arg("--root")
            .arg(self.root.path())
            .arg("run")
            .args(&self.extra)
            .arg("--bundle")
            .arg(&bundle.dir)
            .arg(&id)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawning {}: {e}", self.bin.display()))?;
        if self.root.path().join(&id).exists() {
            let _ = Command::new(&self.bin)
                .arg("--root")
                .arg(self.root.path())
                .args(["delete", "--force", &id])
                .output();
        }
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed without a message")
                .to_string())
        }
    }

    /// A trial run deciding whether the group can run here.
    pub fn check(&self, bundle: &Bundle) -> Result<(), String> {
        self.run(bundle)
    }
}
