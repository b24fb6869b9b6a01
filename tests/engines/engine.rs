//! The three engines as a user drives them (podman, containerd's ctr, docker), each with its
//! own state, sockets and configuration under one temporary directory, and the runtimes they
//! can be given: runc, the isobox container backend and the isobox microVM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::run::{run, run_on_pty, Ran};

/// The runtimes every engine is tried with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Runc,
    Container,
    Microvm,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::Runc, Runtime::Container, Runtime::Microvm];

    pub fn label(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Container => "isobox",
            Runtime::Microvm => "isobox microVM",
        }
    }
}

/// How long one engine command may take: a microVM boots under emulation on these hosts.
pub const LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Net {
    /// Only loopback.
    #[default]
    None,
    /// The engine's own network made at set-up.
    User,
}

/// What a container is asked for, in engine-neutral terms.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub memory: Option<u64>,
    pub pids: Option<u32>,
    /// (host directory, destination)
    pub volume: Option<(PathBuf, String)>,
    pub network: Net,
    pub tty: bool,
}

/// One engine. Every method runs the engine's command line with a deadline.
pub trait Engine {
    fn name(&self) -> &'static str;
    /// Runs a container in the foreground and removes it.
    fn run(&self, rt: Runtime, o: &Opts, cmd: &[&str]) -> Ran;
    /// Starts a container in the background as `name`.
    fn start(&self, rt: Runtime, name: &str, o: &Opts, cmd: &[&str]) -> Ran;
    fn exec(&self, name: &str, tty: bool, cmd: &[&str]) -> Ran;
    fn logs(&self, name: &str) -> String;
    fn stop(&self, name: &str) -> Ran;
    fn kill(&self, name: &str, signal: &str) -> Ran;
    /// running, paused, exited (or what the engine says).
    fn status(&self, name: &str) -> String;
    /// The exit code of a container that has exited.
    fn exit_code(&self, name: &str) -> Option<i32>;
    fn pause(&self, name: &str) -> Ran;
    fn resume(&self, name: &str) -> Ran;
    /// None where the engine has no such verb.
    fn update_memory(&self, name: &str, bytes: u64) -> Option<Ran>;
    fn stats(&self, name: &str) -> Ran;
    /// The host pid the engine reports for the container.
    fn pid(&self, name: &str) -> Option<i32>;
    fn remove(&self, name: &str);
    /// Whether the engine has a user-defined network / a pids limit to offer.
    fn has_user_network(&self) -> bool;
    fn has_pids_limit(&self) -> bool;
}

/// What every engine's set-up shares: the scratch directory, the image tarball and the
/// runtime binaries (isobox and `isobox-vm`, a link to it that picks the microVM).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

pub const IMAGE: &str = "localhost/isobox-test:1";
pub const NETWORK: &str = "isobox-test";

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("isobox-engines-")
            .tempdir()
            .unwrap();
        let s = Scratch { dir };
        fs::create_dir_all(s.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_isobox"), s.path().join("bin/isobox-vm"))
            .unwrap();
        let rootfs = s.path().join("rootfs");
        crate::support::make_busybox_rootfs(&rootfs);
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(s.image_tar())
            .arg(".")
            .status()
            .unwrap();
        assert!(tar.success(), "tar of the busybox rootfs failed");
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn image_tar(&self) -> PathBuf {
        self.path().join("busybox.tar")
    }

    pub fn isobox(&self) -> &'static str {
        env!("CARGO_BIN_EXE_isobox")
    }

    pub fn isobox_vm(&self) -> PathBuf {
        self.path().join("bin/isobox-vm")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Whatever an engine left mounted under the scratch directory (container roots, shm).
        let base = self.path().to_string_lossy().to_string();
        if let Ok(info) = fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&base))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// A daemon the test started; stopped (TERM, then KILL) on drop.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts `cmd` with its output in `log`, and waits until `ready` holds.
    pub fn start(mut cmd: Command, log: &Path, ready: impl Fn() -> bool) -> Daemon {
        let out = fs::File::create(log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            if let Ok(Some(s)) = child.try_wait() {
                panic!(
                    "{:?} ended with {s} during start-up: {}",
                    cmd.get_program(),
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} not ready after 60 s: {}",
                cmd.get_program(),
                fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Daemon { child }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The common shape of podman's and docker's command lines (they agree on nearly all of it).
fn docker_like_opts(c: &mut Command, o: &Opts) {
    if let Some(m) = o.memory {
        c.arg(format!("--memory={m}b"))
            .arg(format!("--memory-swap={m}b"));
    }
    if let Some(p) = o.pids {
        c.arg(format!("--pids-limit={p}"));
    }
    if let Some((host, dst)) = &o.volume {
        c.arg("-v").arg(format!("{}:{dst}", host.display()));
    }
    match o.network {
        Net::None => c.arg("--network=none"),
        Net::User => c.arg(format!("--network={NETWORK}")),
    };
    if o.tty {
        c.arg("-t");
    }
}

fn run_maybe_tty(c: Command, tty: bool) -> Ran {
    if tty {
        run_on_pty(c, LIMIT)
    } else {
        run(c, LIMIT)
    }
}

fn inspect(base: Command, name: &str, field: &str) -> String {
    let mut c = base;
    c.args([
        "inspect",
        "--format",
        &format!("{{{{.State.{field}}}}}"),
        name,
    ]);
    run(c, LIMIT).stdout.trim().to_string()
}

/// podman and docker take the same command lines; they differ in how each is reached, how
/// a runtime is named, and how a container is removed at once.
trait DockerCli {
    const NAME: &'static str;
    const REMOVE: &'static [&'static str];
    fn cmd(&self) -> Command;
    fn with_runtime(&self, c: &mut Command, rt: Runtime);

    fn verb(&self, args: &[&str]) -> Ran {
        let mut c = self.cmd();
        c.args(args);
        run(c, LIMIT)
    }
}

impl<T: DockerCli> Engine for T {
    fn name(&self) -> &'static str {
        T::NAME
    }
    fn run(&self, rt: Runtime, o: &Opts, cmd: &[&str]) -> Ran {
        let mut c = self.cmd();
        c.args(["run", "--rm"]);
        self.with_runtime(&mut c, rt);
        docker_like_opts(&mut c, o);
        c.arg(IMAGE).args(cmd);
        run_maybe_tty(c, o.tty)
    }
    fn start(&self, rt: Runtime, name: &str, o: &Opts, cmd: &[&str]) -> Ran {
        let mut c = self.cmd();
        c.args(["run", "-d", "--name", name]);
        self.with_runtime(&mut c, rt);
        docker_like_opts(&mut c, o);
        c.arg(IMAGE).args(cmd);
        run(c, LIMIT)
    }
    fn exec(&self, name: &str, tty: bool, cmd: &[&str]) -> Ran {
        let mut c = self.cmd();
        c.arg("exec");
        if tty {
            c.arg("-t");
        }
        c.arg(name).args(cmd);
        run_maybe_tty(c, tty)
    }
    fn logs(&self, name: &str) -> String {
        self.verb(&["logs", name]).all()
    }
    fn stop(&self, name: &str) -> Ran {
        self.verb(&["stop", "--time", "10", name])
    }
    fn kill(&self, name: &str, signal: &str) -> Ran {
        self.verb(&["kill", "--signal", signal, name])
    }
    fn status(&self, name: &str) -> String {
        inspect(self.cmd(), name, "Status")
    }
    fn exit_code(&self, name: &str) -> Option<i32> {
        self.verb(&["wait", name]).stdout.trim().parse().ok()
    }
    fn pause(&self, name: &str) -> Ran {
        self.verb(&["pause", name])
    }
    fn resume(&self, name: &str) -> Ran {
        self.verb(&["unpause", name])
    }
    fn update_memory(&self, name: &str, bytes: u64) -> Option<Ran> {
        let (memory, swap) = (
            format!("--memory={bytes}b"),
            format!("--memory-swap={bytes}b"),
        );
        Some(self.verb(&["update", &memory, &swap, name]))
    }
    fn stats(&self, name: &str) -> Ran {
        self.verb(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}} {{.PIDs}}",
            name,
        ])
    }
    fn pid(&self, name: &str) -> Option<i32> {
        inspect(self.cmd(), name, "Pid").parse().ok()
    }
    fn remove(&self, name: &str) {
        let mut args = T::REMOVE.to_vec();
        args.push(name);
        let _ = self.verb(&args);
    }
    fn has_user_network(&self) -> bool {
        true
    }
    fn has_pids_limit(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------- podman

pub struct Podman {
    scratch: Scratch,
}

impl Podman {
    pub fn new() -> Podman {
        let scratch = Scratch::new();
        let d = scratch.path();
        // runc cannot raise RLIMIT_NOFILE/NPROC past what this host grants without
        // CAP_SYS_RESOURCE, so the defaults are lowered, for every runtime alike.
        fs::write(
            d.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
             [engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n",
        )
        .unwrap();
        let p = Podman { scratch };
        let mut c = p.cmd();
        c.arg("import").arg(p.scratch.image_tar()).arg(IMAGE);
        let r = run(c, LIMIT);
        assert!(r.ok(), "podman import: {}", r.describe());
        let mut c = p.cmd();
        c.args(["network", "create", NETWORK]);
        let r = run(c, LIMIT);
        assert!(r.ok(), "podman network create: {}", r.describe());
        p
    }

    fn cmd(&self) -> Command {
        let d = self.scratch.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--network-config-dir")
            .arg(d.join("networks"))
            .arg("--tmpdir")
            .arg(d.join("libpod-tmp"))
            .arg("--storage-driver=vfs");
        c
    }

    fn with_runtime(&self, c: &mut Command, rt: Runtime) {
        match rt {
            Runtime::Runc => c.arg("--runtime=runc"),
            Runtime::Container => c.arg(format!("--runtime={}", self.scratch.isobox())),
            Runtime::Microvm => c
                .arg(format!("--runtime={}", self.scratch.isobox()))
                .arg("--annotation=io.isobox.backend=microvm"),
        };
    }

    /// Saves the test image as an OCI archive (for containerd, which has no import of a
    /// plain rootfs tarball).
    pub fn save_oci_archive(&self, to: &Path) {
        let mut c = self.cmd();
        c.args(["save", "--format", "oci-archive", "-o"])
            .arg(to)
            .arg(IMAGE);
        let r = run(c, LIMIT);
        assert!(r.ok(), "podman save: {}", r.describe());
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut c = self.cmd();
        c.args(["rm", "--all", "--force", "--time", "0"]);
        let _ = run(c, LIMIT);
        let mut c = self.cmd();
        c.args(["network", "rm", "--force", NETWORK]);
        let _ = run(c, LIMIT);
    }
}

impl DockerCli for Podman {
    const NAME: &'static str = "podman";
    const REMOVE: &'static [&'static str] = &["rm", "--force", "--time", "0"];
    fn cmd(&self) -> Command {
        Podman::cmd(self)
    }
    fn with_runtime(&self, c: &mut Command, rt: Runtime) {
        Podman::with_runtime(self, c, rt)
    }
}

// ---------------------------------------------------------------- containerd (ctr)

pub struct Containerd {
    scratch: Scratch,
    _daemon: Daemon,
}

fn containerd_config(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let d = dir.display();
    let config = dir.join("config.toml");
    fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n"
        ),
    )
    .unwrap();
    config
}

/// Starts a containerd of its own under `dir`; its socket is `dir/containerd.sock`.
pub fn start_containerd(dir: &Path) -> Daemon {
    let config = containerd_config(dir);
    let sock = dir.join("containerd.sock");
    let mut c = Command::new("containerd");
    c.arg("--config").arg(&config);
    Daemon::start(c, &dir.join("containerd.log"), || {
        sock.exists()
            && Command::new("ctr")
                .arg("--address")
                .arg(&sock)
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
    })
}

impl Containerd {
    pub fn new(oci_archive: &Path) -> Containerd {
        let scratch = Scratch::new();
        let daemon = start_containerd(&scratch.path().join("containerd"));
        let e = Containerd {
            scratch,
            _daemon: daemon,
        };
        fs::create_dir_all(e.scratch.path().join("logs")).unwrap();
        let mut c = e.cmd();
        c.args(["images", "import", "--base-name", "localhost/isobox-test"])
            .arg(oci_archive);
        let r = run(c, LIMIT);
        assert!(r.ok(), "ctr images import: {}", r.describe());
        e
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.scratch.path().join("containerd/containerd.sock"))
            .args(["--namespace", "isobox-test"]);
        c
    }

    fn with_runtime(&self, c: &mut Command, rt: Runtime) {
        match rt {
            Runtime::Runc => c.arg("--runc-binary=runc"),
            Runtime::Container => c.arg(format!("--runc-binary={}", self.scratch.isobox())),
            Runtime::Microvm => c
                .arg(format!("--runc-binary={}", self.scratch.isobox()))
                .arg("--annotation=io.isobox.backend=microvm"),
        };
    }

    fn opts(c: &mut Command, o: &Opts) {
        if let Some(m) = o.memory {
            c.arg(format!("--memory-limit={m}"));
        }
        if let Some((host, dst)) = &o.volume {
            c.arg(format!(
                "--mount=type=bind,src={},dst={dst},options=rbind:rw",
                host.display()
            ));
        }
        if o.tty {
            c.arg("-t");
        }
    }

    /// (pid, status) from `ctr task ls`.
    fn task(&self, name: &str) -> Option<(i32, String)> {
        let mut c = self.cmd();
        c.args(["task", "ls"]);
        let out = run(c, LIMIT).stdout;
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == name).then(|| (f[1].parse().unwrap_or(0), f[2].to_lowercase()))
        })
    }

    fn unique(&self) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        format!("fg{}", N.fetch_add(1, Ordering::Relaxed))
    }
}

impl Engine for Containerd {
    fn name(&self) -> &'static str {
        "containerd"
    }
    fn run(&self, rt: Runtime, o: &Opts, cmd: &[&str]) -> Ran {
        let mut c = self.cmd();
        c.args(["run", "--rm"]);
        self.with_runtime(&mut c, rt);
        Self::opts(&mut c, o);
        c.arg(IMAGE).arg(self.unique()).args(cmd);
        run_maybe_tty(c, o.tty)
    }
    fn start(&self, rt: Runtime, name: &str, o: &Opts, cmd: &[&str]) -> Ran {
        let log = self.scratch.path().join("logs").join(format!("{name}.log"));
        let mut c = self.cmd();
        c.args(["run", "-d"])
            .arg(format!("--log-uri=file://{}", log.display()));
        self.with_runtime(&mut c, rt);
        Self::opts(&mut c, o);
        c.arg(IMAGE).arg(name).args(cmd);
        run(c, LIMIT)
    }
    fn exec(&self, name: &str, tty: bool, cmd: &[&str]) -> Ran {
        let mut c = self.cmd();
        c.args(["task", "exec", "--exec-id"]).arg(self.unique());
        if tty {
            c.arg("-t");
        }
        c.arg(name).args(cmd);
        run_maybe_tty(c, tty)
    }
    fn logs(&self, name: &str) -> String {
        fs::read_to_string(self.scratch.path().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }
    fn stop(&self, name: &str) -> Ran {
        let r = self.kill(name, "SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.ok() && Instant::now() < deadline && self.status(name) != "exited" {
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }
    fn kill(&self, name: &str, signal: &str) -> Ran {
        let mut c = self.cmd();
        c.args(["task", "kill", "--signal", signal, name]);
        run(c, LIMIT)
    }
    fn status(&self, name: &str) -> String {
        match self.task(name) {
            Some((_, s)) if s == "stopped" => "exited".into(),
            Some((_, s)) => s,
            None => "gone".into(),
        }
    }
    fn exit_code(&self, name: &str) -> Option<i32> {
        // `task rm` reports a non-zero exit code as a warning, and nothing for zero.
        let mut c = self.cmd();
        c.args(["task", "rm", name]);
        let r = run(c, LIMIT);
        if !r.ok() {
            return None;
        }
        let all = r.all();
        match all.split("exit code ").nth(1) {
            Some(rest) => rest
                .trim_start()
                .split(|ch: char| !ch.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok()),
            None => Some(0),
        }
    }
    fn pause(&self, name: &str) -> Ran {
        let mut c = self.cmd();
        c.args(["task", "pause", name]);
        run(c, LIMIT)
    }
    fn resume(&self, name: &str) -> Ran {
        let mut c = self.cmd();
        c.args(["task", "resume", name]);
        run(c, LIMIT)
    }
    fn update_memory(&self, _name: &str, _bytes: u64) -> Option<Ran> {
        None
    }
    fn stats(&self, name: &str) -> Ran {
        let mut c = self.cmd();
        c.args(["task", "metrics", name]);
        run(c, LIMIT)
    }
    fn pid(&self, name: &str) -> Option<i32> {
        self.task(name).map(|(p, _)| p)
    }
    fn remove(&self, name: &str) {
        let mut c = self.cmd();
        c.args(["task", "rm", "--force", name]);
        let _ = run(c, LIMIT);
        let mut c = self.cmd();
        c.args(["containers", "rm", name]);
        let _ = run(c, LIMIT);
    }
    fn has_user_network(&self) -> bool {
        false
    }
    fn has_pids_limit(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------- docker

pub struct Docker {
    scratch: Scratch,
    // Field order: dockerd stops before its containerd.
    _dockerd: Daemon,
    _containerd: Daemon,
}

impl Docker {
    pub fn new() -> Docker {
        let scratch = Scratch::new();
        let d = scratch.path().to_path_buf();
        let containerd = start_containerd(&d.join("containerd"));
        let config = serde_json::json!({
            "data-root": d.join("docker/data"),
            "exec-root": d.join("docker/exec"),
            "pidfile": d.join("docker/docker.pid"),
            "hosts": [format!("unix://{}", d.join("docker/docker.sock").display())],
            "containerd": d.join("containerd/containerd.sock"),
            // No NAT, no default bridge: networks are the test's own.
            "iptables": false,
            "bridge": "none",
            "storage-driver": "vfs",
            "runtimes": {
                "isobox": {"path": scratch.isobox()},
                "isobox-vm": {"path": scratch.isobox_vm()},
            },
        });
        fs::create_dir_all(d.join("docker")).unwrap();
        fs::write(d.join("docker/daemon.json"), config.to_string()).unwrap();
        let sock = d.join("docker/docker.sock");
        let mut c = Command::new("dockerd");
        c.arg("--config-file").arg(d.join("docker/daemon.json"));
        let dockerd = Daemon::start(c, &d.join("docker/dockerd.log"), || {
            sock.exists()
                && Command::new("docker")
                    .arg("-H")
                    .arg(format!("unix://{}", sock.display()))
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
        });
        let e = Docker {
            scratch,
            _dockerd: dockerd,
            _containerd: containerd,
        };
        let mut c = e.cmd();
        c.arg("import").arg(e.scratch.image_tar()).arg(IMAGE);
        let r = run(c, LIMIT);
        assert!(r.ok(), "docker import: {}", r.describe());
        let mut c = e.cmd();
        c.args(["network", "create", NETWORK]);
        let r = run(c, LIMIT);
        assert!(r.ok(), "docker network create: {}", r.describe());
        e
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(format!(
            "unix://{}",
            self.scratch.path().join("docker/docker.sock").display()
        ));
        c
    }

    fn with_runtime(c: &mut Command, rt: Runtime) {
        c.arg(match rt {
            Runtime::Runc => "--runtime=runc",
            Runtime::Container => "--runtime=isobox",
            Runtime::Microvm => "--runtime=isobox-vm",
        });
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let mut c = self.cmd();
        c.args(["ps", "-aq"]);
        let ids = run(c, LIMIT).stdout;
        for id in ids.split_whitespace() {
            let mut c = self.cmd();
            c.args(["rm", "-f", id]);
            let _ = run(c, LIMIT);
        }
    }
}

impl DockerCli for Docker {
    const NAME: &'static str = "docker";
    const REMOVE: &'static [&'static str] = &["rm", "-f"];
    fn cmd(&self) -> Command {
        Docker::cmd(self)
    }
    fn with_runtime(&self, c: &mut Command, rt: Runtime) {
        Docker::with_runtime(c, rt)
    }
}
