//! podman, with its own storage, run root, network configuration and containers.conf.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::engine::{DockerCli, Runtime, Scratch, IMAGE, LIMIT, NETWORK};
use crate::run::run;

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
        // conmon writes an `oom` file into its working directory when a container is OOM
        // killed: the scratch directory, not wherever the test runs.
        c.current_dir(d)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
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
