//! Helpers for the integration tests: busybox bundles, running the isobox binary with a
//! private state root, and checks that nothing was left behind.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

pub mod console;
pub mod netns;

pub const BUSYBOX: &str = "/bin/busybox";

/// Why these tests cannot run here, if they cannot (they need root and busybox-static).
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root: container tests need root".into());
    }
    let static_bb = Command::new("file")
        .arg("-L")
        .arg(BUSYBOX)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).contains("statically linked")
                || String::from_utf8_lossy(&o.stdout).contains("static-pie")
        })
        .unwrap_or(true);
    if !Path::new(BUSYBOX).exists() || !static_bb {
        return Some(format!("{BUSYBOX} (busybox-static) is missing"));
    }
    None
}

/// Skip the calling test (return early) when it cannot run here, saying so in the test
/// output ("skipped: <test>: <reason>"); under CI as root it panics instead.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(reason) = support::skip_reason() {
            isobox_common::skip::skip(&reason);
            return;
        }
    };
}

/// A bundle on disk: a busybox rootfs and a config.json, removed on drop.
pub struct TestBundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl TestBundle {
    /// A busybox rootfs running `sh -c script`, with the usual namespaces and mounts.
    pub fn sh(script: &str) -> TestBundle {
        let dir = tempfile::Builder::new()
            .prefix("isobox-test-")
            .tempdir()
            .unwrap();
        make_busybox_rootfs(&dir.path().join("rootfs"));
        let config = default_config(&["/bin/sh", "-c", script]);
        let b = TestBundle { dir, config };
        b.write();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Change the config with `f` and write it out again.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.write();
        self
    }

    pub fn write(&self) {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

pub fn make_busybox_rootfs(rootfs: &Path) {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root",
    ] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
    )
    .unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
}

pub fn default_config(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin:/sbin:/usr/bin", "HOME=/root"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_NET_BIND_SERVICE"]
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "isobox-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/kernel"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Give `config` a new user namespace mapping ids 0-65535 to host ids 100000-165535.
pub fn add_user_namespace(config: &mut Value) {
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

/// The isobox binary with a private state root.
pub struct Isobox {
    pub root: tempfile::TempDir,
}

impl Isobox {
    pub fn new() -> Isobox {
        Isobox {
            root: tempfile::Builder::new()
                .prefix("isobox-root-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn cmd(&self) -> Command {
        self.cmd_as(Path::new(env!("CARGO_BIN_EXE_isobox")))
    }

    /// [`Isobox::cmd`] through `program`, e.g. a link to the binary under another name.
    pub fn cmd_as(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.arg("--root").arg(self.root.path());
        c.env_remove("ISOBOX_BACKEND");
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `isobox run --bundle B ID` in the foreground.
    pub fn run_bundle(&self, bundle: &TestBundle, id: &str) -> Output {
        self.cmd()
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .output()
            .unwrap()
    }

    /// Run a verb that leaves a container process behind (`create`, `run --detach`): that
    /// process inherits stdio, so capture stderr through a file rather than a pipe whose
    /// end would stay open.
    pub fn run_detached(&self, args: &[&str], bundle: &Path) -> Output {
        let mut cmd = self.cmd();
        cmd.args(args).arg("--bundle").arg(bundle);
        status_with_stderr(cmd)
    }

    pub fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        assert!(out.status.success(), "state {id}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Assert nothing of container `id` is left: no state dir, no cgroup, no mount of the
    /// bundle, no process.
    pub fn assert_nothing_left(&self, id: &str, bundle: Option<&Path>) {
        assert!(
            !self.root.path().join(id).exists(),
            "state dir of {id} left behind"
        );
        assert!(
            processes_of(id).is_empty(),
            "processes of {id} left: {:?}",
            processes_of(id)
        );
        for cg in cgroup_dirs(id) {
            assert!(!cg.exists(), "cgroup {} left behind", cg.display());
        }
        if let Some(b) = bundle {
            let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
            let b = fs::canonicalize(b).unwrap_or_else(|_| b.to_path_buf());
            assert!(
                !mounts.contains(&*b.to_string_lossy()),
                "a mount under {} left behind",
                b.display()
            );
        }
    }
}

impl Drop for Isobox {
    fn drop(&mut self) {
        // Best effort: never leave a container of a failed test running.
        if let Ok(entries) = fs::read_dir(self.root.path()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().to_string();
                let _ = self.cmd().args(["delete", "--force", &id]).output();
            }
        }
    }
}

/// Where the default cgroup of container `id` would be, in every hierarchy.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            dirs.push(e.path().join("isobox").join(id));
        }
    }
    dirs.push(PathBuf::from("/sys/fs/cgroup/isobox").join(id));
    dirs
}

/// Host pids whose cgroup is container `id`'s default one (processes left in the container).
pub fn processes_of(id: &str) -> Vec<i32> {
    let needle = format!("/isobox/{id}");
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cg) = fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            if cg.lines().any(|l| l.ends_with(&needle)) {
                pids.push(pid);
            }
        }
    }
    pids
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Why the microVM cannot run here, if it cannot: no root or busybox, no qemu, or the guest
/// agent (which the CLI boots from beside itself) not buildable. `$ISOBOX_TEST_PREBUILT` says
/// it is built already (the emulated host runs the tests where cargo cannot).
pub fn vm_skip_reason() -> Option<String> {
    if let Some(r) = skip_reason() {
        return Some(r);
    }
    if ![
        "/usr/bin/qemu-system-x86_64",
        "/usr/local/bin/qemu-system-x86_64",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
    {
        return Some("qemu-system-x86_64 is missing".into());
    }
    if let Err(e) = ensure_guest_kernel() {
        return Some(e);
    }
    if std::env::var_os("ISOBOX_TEST_PREBUILT").is_some() {
        return None;
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "-p",
            "isobox-guest",
            "--bin",
            "isobox-agent",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        return Some("cannot build isobox-agent".into());
    }
    None
}

/// Provision the guest kernel now if it is not cached, so that the first microVM test on a
/// fresh machine does not print the download's progress (stderr the test may be checking).
pub fn ensure_guest_kernel() -> Result<(), String> {
    use isobox_microvm::image::{data_dir, modules, resolve_kernel, ResolveOptions};
    let k = resolve_kernel(None, &ResolveOptions::default())
        .map_err(|e| format!("no guest kernel: {e}"))?;
    if let Some(release) = &k.release {
        modules::ensure(&data_dir(), release, true)
            .map_err(|e| format!("no virtio-fs modules for the guest kernel: {e}"))?;
    }
    Ok(())
}

/// Run `cmd` with stdout discarded and stderr captured through a file: a container process it
/// leaves behind inherits stdio, and would hold a pipe's end open. A command still running after
/// `COMMAND_LIMIT` is killed and fails the test, so a hung verb costs minutes, not the suite.
pub fn status_with_stderr(cmd: Command) -> Output {
    bounded(cmd, false)
}

/// [`status_with_stderr`], with stdout captured (through a file) too.
pub fn output_within_limit(cmd: Command) -> Output {
    bounded(cmd, true)
}

fn bounded(mut cmd: Command, keep_stdout: bool) -> Output {
    use std::io::{Read, Seek};
    const COMMAND_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);
    let read = |f: &mut std::fs::File| {
        let mut v = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    let mut err = tempfile::tempfile().unwrap();
    let mut out = tempfile::tempfile().unwrap();
    cmd.stderr(err.try_clone().unwrap());
    if keep_stdout {
        cmd.stdout(out.try_clone().unwrap());
    } else {
        cmd.stdout(Stdio::null());
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&read(&mut err)).into_owned();
            panic!("{cmd:?} still running after {COMMAND_LIMIT:?}; its stderr: {stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
    }
}
