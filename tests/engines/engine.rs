//! What the three engines (podman.rs, containerd.rs, docker.rs) share: the operations a test
//! asks of an engine, the runtimes it gives them (runc, the isobox container backend, the
//! isobox microVM), each engine's scratch directory and daemons, and the command line podman
//! and docker have in common.

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

/// Whether a daemon's client command succeeds (the daemon is up and answering).
pub fn answers(mut client: Command) -> bool {
    client
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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
pub fn docker_like_opts(c: &mut Command, o: &Opts) {
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

pub fn run_maybe_tty(c: Command, tty: bool) -> Ran {
    if tty {
        run_on_pty(c, LIMIT)
    } else {
        run(c, LIMIT)
    }
}

pub fn inspect(base: Command, name: &str, field: &str) -> String {
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
pub trait DockerCli {
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
