//! Real engines drive isobox: Debian's podman, containerd (ctr) and dockerd, each started
//! here with its own state, run the same operations with runc, the isobox container backend
//! and the isobox microVM. Every cell that passes with runc must pass with the container
//! backend; a microVM cell may be marked expected-to-fail only with the open work it waits
//! for, and one that passes while so marked fails the test (the mark must go). Each test
//! prints its matrix and writes it to `$CARGO_TARGET_TMPDIR/engines-<engine>.txt`.

#[path = "../support/mod.rs"]
mod support;

mod cells;
mod containerd;
mod docker;
mod engine;
mod matrix;
mod podman;
mod run;

use containerd::Containerd;
use docker::Docker;
use engine::Engine;
use podman::Podman;

/// Why the engine tests cannot run here: they need root, busybox and the engines.
fn skip_reason(tools: &[&str]) -> Option<String> {
    if let Some(r) = support::skip_reason() {
        return Some(r);
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .stdout(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed (Debian: podman, containerd, docker.io; ./dev.sh test installs them)",
            missing.join(", ")
        )
    })
}

macro_rules! require_engines {
    ($($tool:expr),*) => {
        if let Some(reason) = skip_reason(&[$($tool),*]) {
            isobox_common::skip::skip(&reason);
            return;
        }
    };
}

fn check(engine: &dyn Engine) {
    let m = matrix::Matrix::measure(engine);
    m.report();
    m.assert_as_expected();
}

#[test]
fn podman_runs_both_backends_as_it_runs_runc() {
    require_engines!("podman", "runc", "conmon");
    check(&Podman::new());
}

#[test]
fn containerd_runs_both_backends_as_it_runs_runc() {
    require_engines!(
        "podman",
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc"
    );
    let podman = Podman::new();
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("image.tar");
    podman.save_oci_archive(&archive);
    drop(podman);
    check(&Containerd::new(&archive));
}

#[test]
fn docker_runs_both_backends_as_it_runs_runc() {
    require_engines!(
        "dockerd",
        "docker",
        "containerd",
        "containerd-shim-runc-v2",
        "runc"
    );
    check(&Docker::new());
}
