//! dockerd, on a containerd of its own, with the isobox runtimes in its daemon.json.

use std::fs;
use std::process::Command;

use crate::containerd::start_containerd;
use crate::engine::{answers, Daemon, DockerCli, Runtime, Scratch, IMAGE, LIMIT, NETWORK};
use crate::run::run;

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
            let mut version = Command::new("docker");
            version
                .arg("-H")
                .arg(format!("unix://{}", sock.display()))
                .arg("version");
            sock.exists() && answers(version)
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
