//! The seam between the CLI and the two isolation kinds.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Bundle, Error, Result, State};

/// Annotation in config.json that picks the backend (`container` or `microvm`).
pub const BACKEND_ANNOTATION: &str = "io.isobox.backend";
/// Environment variable that picks the backend when neither flag nor annotation does.
pub const BACKEND_ENV: &str = "ISOBOX_BACKEND";

/// Which isolation kind runs a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Namespaces and cgroups on the host kernel.
    #[default]
    Container,
    /// A KVM microVM with its own kernel and a guest agent.
    Microvm,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Container => "container",
            BackendKind::Microvm => "microvm",
        }
    }

    /// First match wins: the `--backend` flag, the bundle's annotation, the environment, else
    /// `container`. `env` is passed in so callers and tests control it.
    pub fn choose(flag: Option<BackendKind>, bundle: &Bundle, env: Option<&str>) -> Result<Self> {
        if let Some(kind) = flag {
            return Ok(kind);
        }
        if let Some(value) = bundle.annotation(BACKEND_ANNOTATION) {
            return value.parse().map_err(|reason| Error::Config {
                file: bundle.config_path.clone(),
                field: format!("annotations.{BACKEND_ANNOTATION}"),
                reason,
            });
        }
        if let Some(value) = env.filter(|v| !v.is_empty()) {
            return value.parse().map_err(|reason| Error::Config {
                file: PathBuf::from("environment"),
                field: format!("${BACKEND_ENV}"),
                reason,
            });
        }
        Ok(BackendKind::Container)
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "container" => Ok(BackendKind::Container),
            "microvm" | "vm" => Ok(BackendKind::Microvm),
            other => Err(format!(
                "unknown backend {other:?} (expected \"container\" or \"microvm\")"
            )),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What `create` needs: the validated bundle and where the container's state lives.
#[derive(Debug)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: Bundle,
    /// `<root>/<id>`: already created (and locked) by the caller; the backend may keep its own
    /// files here (exec fifo, console log, initramfs). It is removed on delete.
    pub state_dir: PathBuf,
    /// True for `run` in the foreground: the caller waits for the container's pid and needs it
    /// to be its own child.
    pub foreground: bool,
    /// Backend-specific options from the command line (`--kernel`, `--hypervisor`, …) as
    /// key/value pairs; a backend rejects keys it does not know.
    pub options: Vec<(String, String)>,
}

/// What `create` reports back; the caller records it in the state.
#[derive(Debug, Clone)]
pub struct Created {
    /// The host pid the state reports: the container's init, or the VMM process.
    pub pid: i32,
    /// Backend-private data kept in the state (cgroup paths, hypervisor, …).
    pub data: serde_json::Value,
}

/// One isolation kind. The CLI holds the state lock around every call.
pub trait Backend {
    fn kind(&self) -> BackendKind;

    /// Build the container up to the point where its process waits to be started. On error
    /// everything the call made (processes, cgroups, mounts, files) is gone again.
    fn create(&self, opts: &CreateOptions) -> Result<Created>;

    /// Release the created container's process to run the workload.
    fn start(&self, state: &State) -> Result<()>;

    /// Send `signal` to the container's process (or to every process in it with `all`).
    fn kill(&self, state: &State, signal: i32, all: bool) -> Result<()>;

    /// Remove everything the container holds on the host. The caller has already made sure
    /// it is stopped (or killed it for `--force`).
    fn delete(&self, state: &State) -> Result<()>;

    /// Host pids of the container's processes (`ps`).
    fn processes(&self, state: &State) -> Result<Vec<i32>>;

    /// Undo a `create` that never finished: its process died (or was killed) while the state
    /// was incomplete (`state.creator` is set and no longer alive). `create` records in the
    /// state directory what it makes as soon as it exists (processes, cgroups); this ends and
    /// removes exactly what was recorded, and the backend's files. Idempotent; no hooks run.
    /// The caller holds the lock and removes the state directory afterwards.
    fn delete_partial(&self, state: &State) -> Result<()>;
}
