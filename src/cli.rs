//! The command line: runc's global flags and verbs, so containerd and podman can drive isobox.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use isobox_common::BackendKind;

#[derive(Parser, Debug)]
#[command(
    name = "isobox",
    version,
    about = "Run one OCI bundle as a container or inside a KVM microVM, and measure the difference"
)]
pub struct Cli {
    /// Directory for container state.
    #[arg(
        long,
        global = true,
        default_value = "/run/isobox",
        env = "ISOBOX_ROOT"
    )]
    pub root: PathBuf,
    /// Also write log lines and errors to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the log file.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug details.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; systemd cgroup management is not supported.
    #[arg(long, global = true, hide = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Container,
    Microvm,
}

impl From<Backend> for BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Container => BackendKind::Container,
            Backend::Microvm => BackendKind::Microvm,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Hypervisor {
    Auto,
    Builtin,
    Qemu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// Flags shared by `create` and `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's host pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Isolation kind (else the annotation io.isobox.backend, else microvm when run as
    /// isobox-vm, else $ISOBOX_BACKEND, else container).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// microVM: hypervisor to use (else the annotation io.isobox.hypervisor, else auto).
    #[arg(long, value_enum)]
    pub hypervisor: Option<Hypervisor>,
    /// microVM: guest kernel (else $ISOBOX_KERNEL, else the cached or provisioned default).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Accepted for runc compatibility; only valid with process.terminal (not supported yet).
    #[arg(long, hide = true)]
    pub console_socket: Option<PathBuf>,
    /// Container id.
    pub id: String,
}

/// `exec`'s flags, as runc 1.1's.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// An OCI process JSON to run (what engines pass) instead of the container's process
    /// with the flags below applied.
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Return once the process runs, leaving it in place.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write the process's host pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// An AF_UNIX socket to send the terminal's master to (with --detach).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (NAME=VALUE); repeatable.
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// UID[:GID] to run as.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// An additional group id; repeatable.
    #[arg(long, short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Add a capability to every capability set; repeatable.
    #[arg(long = "cap", short = 'c')]
    pub caps: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// An SELinux process label: refused (not supported).
    #[arg(long)]
    pub process_label: Option<String>,
    /// An AppArmor profile: refused (not supported).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Container id.
    pub id: String,
    /// The command and its arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a default config.json into the bundle directory.
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start { id: String },
    /// Create and start a container; wait for it and exit with its exit code unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs, leaving it in place.
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Run another process in a running container; wait for it and exit with its exit code
    /// unless --detach.
    Exec(ExecArgs),
    /// Print a container's OCI state as JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to a container.
    Kill {
        /// Signal every process in the container.
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Suspend every process of a container (the cgroup freezer; a microVM's processes).
    Pause { id: String },
    /// Let a paused container run again.
    Resume { id: String },
    /// Remove a container and everything it holds on the host.
    Delete {
        /// Kill it first if it still runs.
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only the ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Show the host pids of a container's processes.
    Ps {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
    },
    /// Print the OCI features document of one backend: what it applies of a bundle.
    Features {
        /// The backend described (else microvm when run as isobox-vm, else
        /// $ISOBOX_BACKEND, else container).
        #[arg(long, value_enum)]
        backend: Option<Backend>,
    },
    /// Run the same workload under every runtime found (isobox container and microVM, runc,
    /// crun, the bare host) and show startup, memory, disk and isolation side by side.
    Compare(crate::compare::CompareArgs),
    /// Show what this host offers: KVM kind, cgroup mode, namespaces, qemu, the guest kernel.
    Check,
    /// Show which guest kernel a microVM would boot and where it comes from.
    Kernel {
        /// A kernel to inspect instead of the default.
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Download and unpack the default kernel if none is cached.
        #[arg(long)]
        fetch: bool,
    },
    /// The per-VM host process (started by `create --backend microvm`).
    #[command(hide = true)]
    VmHost {
        #[arg(long)]
        state_dir: PathBuf,
    },
}
