//! Assembles the probe's findings into one JSON object.

use serde::Serialize;

use super::caps::Capabilities;
use super::containment::Containment;
use super::identity::User;
use super::kernel::Kernel;
use super::net::Network;
use super::procs::Processes;
use super::reach::Reachable;
use super::syscalls::SyscallReport;
use super::{caps, containment, identity, kernel, net, procs, reach, syscalls};

/// Version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// What to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also run the memory and fork containment checks.
    pub containment: bool,
}

/// The whole report; see the module documentation of `probe` for every key.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub probe_version: &'static str,
    pub kernel: Kernel,
    pub processes: Processes,
    pub network: Network,
    pub hostname: Option<String>,
    pub user: User,
    pub capabilities: Capabilities,
    pub reachable: Reachable,
    pub syscalls: SyscallReport,
    pub containment: Option<Containment>,
    /// Every check that could not be made, as "<section>: <step>: <reason>".
    pub errors: Vec<String>,
}

impl Report {
    /// Serializes the report; `pretty` indents it.
    pub fn to_json(&self, pretty: bool) -> serde_json::Result<String> {
        if pretty {
            serde_json::to_string_pretty(self)
        } else {
            serde_json::to_string(self)
        }
    }
}

/// Runs every check (the containment ones only when asked) and returns the report.
pub fn run(opts: Options) -> Report {
    let mut errors = Vec::new();
    let (kernel, hostname, e) = kernel::probe();
    errors.extend(e);
    let (processes, e) = procs::probe(kernel.shared_kernel);
    errors.extend(e);
    let (network, e) = net::probe();
    errors.extend(e);
    let (user, e) = identity::probe();
    errors.extend(e);
    let (capabilities, e) = caps::probe();
    errors.extend(e);
    let reachable = reach::probe();
    let syscalls = syscalls::probe(capabilities.seccomp == "filter");
    let containment = opts.containment.then(containment::probe);
    if let Some(c) = &containment {
        errors.extend(c.errors.iter().map(|e| format!("containment: {e}")));
        errors.extend(c.memory.error.clone());
        errors.extend(c.pids.error.clone());
    }
    reap_orphans();
    Report {
        schema: SCHEMA_VERSION,
        probe_version: env!("CARGO_PKG_VERSION"),
        kernel,
        processes,
        network,
        hostname,
        user,
        capabilities,
        reachable,
        syscalls,
        containment,
        errors,
    }
}

/// As pid 1 of a sandbox we inherit orphans (e.g. a fork check's sleepers whose leader died):
/// reap whatever has exited so nothing is left as a zombie.
fn reap_orphans() {
    if std::process::id() != 1 {
        return;
    }
    let mut status = 0;
    // SAFETY: WNOHANG reaping of our own (inherited) children.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}
