//! The command line: runc's global flags and verbs, so containerd and podman can drive isobox.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use isobox_common::backend::HypervisorChoice;
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

impl From<Hypervisor> for HypervisorChoice {
    fn from(h: Hypervisor) -> Self {
        match h {
            Hypervisor::Auto => HypervisorChoice::Auto,
            Hypervisor::Builtin => HypervisorChoice::Builtin,
            Hypervisor::Qemu => HypervisorChoice::Qemu,
        }
    }
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
    /// An AF_UNIX socket to send the terminal's master to (process.terminal, detached).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Container id.
    pub id: String,
}

/// `update`'s flags, as runc 1.1's. Memory sizes take runc's suffixes (k, m, g, t, p; 1024
/// based) or -1 for unlimited; 0 leaves a limit as it is.
#[derive(clap::Args, Debug, Clone)]
pub struct UpdateArgs {
    /// A JSON file with the resources to set (OCI linux.resources), or - for standard
    /// input; then no other limit flag may be given.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Block I/O weight, 10 to 1000.
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CFS period, microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CFS quota per period, microseconds (-1: unlimited).
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long, visible_alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    /// Realtime period, microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime per period, microseconds.
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use (e.g. 0-2,4).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit, bytes.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_bytes)]
    pub memory: Option<i64>,
    /// Memory soft limit, bytes.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_bytes)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit, bytes (-1: unlimited swap).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_bytes)]
    pub memory_swap: Option<i64>,
    /// Most processes and threads (-1: unlimited).
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Obsolete kernel memory limit: refused.
    #[arg(long, hide = true)]
    pub kernel_memory: Option<String>,
    /// Obsolete kernel TCP memory limit: refused.
    #[arg(long, hide = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Intel RDT L3 cache schema: refused (not supported).
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema: refused (not supported).
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
    /// Container id.
    pub id: String,
}

/// A size as runc reads it (go-units RAMInBytes): a number, possibly with a fraction, and
/// an optional k, m, g, t or p (times 1024 each), optionally followed by i and b; or -1.
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    if text == "-1" {
        return Ok(-1);
    }
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(format!("{text:?} is not a size (e.g. 512m, 1g, 1048576)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512m, 1g, 1048576)"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !(0.0..=i64::MAX as f64).contains(&bytes) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as i64)
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

/// A duration as Go writes it (runc's `--interval`): numbers with units ns, us, ms, s, m
/// or h, one after another (1m30s); more than zero.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{text:?} is not a duration (e.g. 5s, 500ms, 1m30s)");
    let mut rest = text.trim();
    let mut secs = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..end].parse().map_err(|_| bad())?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        secs += value * scale;
    }
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{text:?}: the interval must be more than zero"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
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
    /// Change the resource limits of a running container.
    Update(UpdateArgs),
    /// Print a container's resource usage as runc's JSON events, one a line: a `stats`
    /// event every interval and an `oom` event when the OOM killer runs, until it stops.
    Events {
        /// Print the stats once and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats events (5s, 500ms, 1m30s).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        interval: std::time::Duration,
        id: String,
    },
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

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn durations_read_as_go_writes_them() {
        use super::parse_duration;
        use std::time::Duration;
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "5", "s", "5x", "0s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_read_as_runc_reads_them() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5kb"), Ok(1536));
        assert_eq!(parse_bytes("2 MiB"), Ok(2 << 20));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert!(parse_bytes("-2").is_err());
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999p").is_err());
    }
}
