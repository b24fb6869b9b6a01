//! The seam between the CLI and the two isolation kinds.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Bundle, Error, Result, State};

/// Annotation in config.json that picks the backend (`container` or `microvm`).
pub const BACKEND_ANNOTATION: &str = "io.isobox.backend";
/// Environment variable that picks the backend when neither flag, annotation nor program
/// name does.
pub const BACKEND_ENV: &str = "ISOBOX_BACKEND";
/// The program name (a symlink to isobox) whose default backend is the microVM, for engines
/// that can only name a runtime binary (dockerd's --add-runtime, containerd's BinaryName,
/// Kubernetes RuntimeClass handlers).
pub const MICROVM_PROGRAM: &str = "isobox-vm";

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

    /// The backend a program name (argv[0]'s file name) stands for: [`MICROVM_PROGRAM`]
    /// means the microVM; any other name, none.
    pub fn for_program(program: &str) -> Option<Self> {
        (program == MICROVM_PROGRAM).then_some(BackendKind::Microvm)
    }

    /// First match wins: the `--backend` flag, the bundle's annotation (the workload's own
    /// choice), the program name isobox runs as ([`BackendKind::for_program`]: the engine's
    /// runtime), the environment (the host's default), else `container`. `program` and `env`
    /// are passed in so callers and tests control them.
    pub fn choose(
        flag: Option<BackendKind>,
        bundle: &Bundle,
        program: Option<&str>,
        env: Option<&str>,
    ) -> Result<Self> {
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
        Self::host_default(program, env)
    }

    /// The backend when neither a flag nor a bundle says: the program name, the environment,
    /// else `container` (also what `features` describes).
    pub fn host_default(program: Option<&str>, env: Option<&str>) -> Result<Self> {
        if let Some(kind) = program.and_then(BackendKind::for_program) {
            return Ok(kind);
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
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: Bundle,
    /// `<root>/<id>`: already created (and locked) by the caller; the backend may keep its own
    /// files here (exec fifo, console log, initramfs). It is removed on delete.
    pub state_dir: PathBuf,
    /// True for `run` in the foreground: the caller waits for the container's pid and needs it
    /// to be its own child.
    pub foreground: bool,
    /// With `process.terminal`: the Unix socket the pty master is sent to while the container
    /// is created (runc's protocol; the caller's own socket when it relays the terminal).
    pub console_socket: Option<PathBuf>,
    /// The microVM's choices from the command line; the container backend refuses any that
    /// is set.
    pub microvm: MicrovmOptions,
}

/// What the command line picks for a microVM (`--hypervisor`, `--kernel`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicrovmOptions {
    /// `--hypervisor`: else the bundle's annotation, else [`HypervisorChoice::Auto`].
    pub hypervisor: Option<HypervisorChoice>,
    /// `--kernel`: else `$ISOBOX_KERNEL`, else the cached or provisioned default.
    pub kernel: Option<PathBuf>,
    /// The static guest agent: else `$ISOBOX_AGENT`, else the one next to the executable.
    pub agent: Option<PathBuf>,
}

impl MicrovmOptions {
    /// The command-line flag of the first option that is set, for a backend that takes none.
    pub fn first_set(&self) -> Option<&'static str> {
        [
            (self.hypervisor.is_some(), "--hypervisor"),
            (self.kernel.is_some(), "--kernel"),
            (self.agent.is_some(), "agent"),
        ]
        .into_iter()
        .find_map(|(set, flag)| set.then_some(flag))
    }
}

/// Which hypervisor runs a microVM, as the user asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypervisorChoice {
    /// isobox's own VMM on /dev/kvm.
    Builtin,
    Qemu,
    /// Built-in on hardware KVM, else qemu with software emulation.
    Auto,
}

impl FromStr for HypervisorChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "builtin" | "isobox" => Ok(HypervisorChoice::Builtin),
            "qemu" => Ok(HypervisorChoice::Qemu),
            "auto" | "" => Ok(HypervisorChoice::Auto),
            other => Err(format!(
                "unknown hypervisor {other:?} (expected \"builtin\", \"qemu\" or \"auto\")"
            )),
        }
    }
}

/// What `create` reports back; the caller records it in the state.
#[derive(Debug, Clone)]
pub struct Created {
    /// The host pid the state reports: the container's init, or the VMM process.
    pub pid: i32,
    /// The backend's record kept in the state (cgroup paths, hypervisor, …), read back
    /// with [`State::backend_data`].
    pub data: serde_json::Value,
}

impl Created {
    /// `pid` with the backend's typed record.
    pub fn new<T: Serialize>(pid: i32, data: &T) -> Self {
        Created {
            pid,
            data: serde_json::to_value(data).expect("backend data serializes"),
        }
    }
}

/// What `exec` needs: the process to start in a running container.
#[derive(Debug)]
pub struct ExecOptions {
    /// The process, already validated: the `--process` file's, or the container's own with
    /// the command-line overrides applied (runc's rules).
    pub process: oci_spec::runtime::Process,
    /// Where `process` came from (the `--process` file, or the bundle's config.json): errors
    /// about its fields name this file.
    pub process_file: PathBuf,
    /// `--detach`: the caller returns once the process runs and drops the session. The
    /// process must stay a descendant of the caller (engines that are subreapers wait for
    /// the pid in `--pid-file`).
    pub detach: bool,
    /// With `process.terminal`: the Unix socket the pty master is sent to (runc's protocol):
    /// the engine's `--console-socket`, or the caller's own when it relays the terminal in the
    /// foreground.
    pub console_socket: Option<PathBuf>,
}

/// A process `exec` started.
pub struct Execed {
    /// The host pid the caller writes to `--pid-file`: the process itself, or a host process
    /// that stands for it and ends with its exit status.
    pub pid: i32,
    /// A terminal's master side handed back here instead of over the console socket (bytes in
    /// are the process's input, bytes out its output); the caller relays it.
    pub console: Option<OwnedFd>,
    /// Waits for the process, relays signals and window sizes to it.
    pub session: Box<dyn ExecSession>,
}

impl std::fmt::Debug for Execed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execed")
            .field("pid", &self.pid)
            .field("console", &self.console)
            .finish_non_exhaustive()
    }
}

/// A running exec'd process, as the foreground caller sees it.
pub trait ExecSession {
    /// A descriptor that polls readable when [`ExecSession::try_wait`] may have news (a pidfd,
    /// a socket); None: the caller polls `try_wait` on a short timer.
    fn ready_fd(&self) -> Option<BorrowedFd<'_>>;
    /// The exit code once the process has ended (128+N when signal N ended it), else None.
    fn try_wait(&mut self) -> Result<Option<i32>>;
    /// Deliver `signal` to the process.
    fn signal(&mut self, signal: i32) -> Result<()>;
    /// Set the window size of the process's terminal (only with `process.terminal`).
    fn resize(&mut self, rows: u16, cols: u16) -> Result<()>;
}

/// One isolation kind. The CLI holds the state lock around every call.
pub trait Backend {
    fn kind(&self) -> BackendKind;

    /// What this backend applies of a bundle, for `features`: taken from the tables and
    /// checks its validation uses, so the document cannot promise what `create` refuses.
    fn support(&self) -> crate::features::Support;

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

    /// Start another process in the running container (`exec`): it joins the container's
    /// namespaces and cgroup and gets what its process spec asks for.
    fn exec(&self, state: &State, opts: &ExecOptions) -> Result<Execed>;

    /// Host pids of the container's processes (`ps`).
    fn processes(&self, state: &State) -> Result<Vec<i32>>;

    /// Stop every process of the created or running container where it is (`pause`);
    /// returns once all are stopped. Signals sent meanwhile wait until `resume`, but SIGKILL
    /// still ends the container.
    fn pause(&self, state: &State) -> Result<()>;

    /// Let a paused container's processes run again.
    fn resume(&self, state: &State) -> Result<()>;

    /// Whether the container is paused now, as the host sees it (the cgroup freezer, the
    /// VM's processes): `state`, `list` and the verbs report `paused` from this.
    fn is_paused(&self, state: &State) -> Result<bool>;

    /// Change the limits of the live container (`update`): `resources` is OCI
    /// linux.resources as `runc update` reads it, and fields absent or zero stay as they
    /// are. Validated as `create` validates; what cannot change is an error naming the
    /// field. The limits now in force are recorded in `state.data`, which the caller saves.
    fn update(
        &self,
        state: &mut State,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()>;

    /// The container's resource usage now (`events`).
    fn stats(&self, state: &State) -> Result<crate::Stats>;

    /// Undo a `create` that never finished: its process died (or was killed) while the state
    /// was incomplete (`state.creator` is set and no longer alive). `create` records in the
    /// state directory what it makes as soon as it exists (processes, cgroups); this ends and
    /// removes exactly what was recorded, and the backend's files. Idempotent; no hooks run.
    /// The caller holds the lock and removes the state directory afterwards.
    fn delete_partial(&self, state: &State) -> Result<()>;
}
