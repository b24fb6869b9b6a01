//! containerd driven through ctr, with a containerd of its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::engine::{answers, run_maybe_tty, Daemon, Engine, Opts, Runtime, Scratch, IMAGE, LIMIT};
use crate::run::{run, Ran};

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
        let mut version = Command::new("ctr");
        version.arg("--address").arg(&sock).arg("version");
        sock.exists() && answers(version)
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
