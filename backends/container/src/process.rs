//! The last steps of every container process, the init after `start` and an `exec`'d one
//! alike: the process spec applied to the calling process, then execve.

use oci_spec::runtime::{Process, Spec};

use crate::{exec, rlimits, seccomp, user};
use isobox_common::caps::CapMasks;
use isobox_common::ioprio;

/// What the process becomes, checked and translated before it was cloned.
pub struct Finish<'a> {
    pub process: &'a Process,
    pub caps: Option<&'a CapMasks>,
    /// process.ioPriority as an ioprio value.
    pub ioprio: Option<u32>,
    /// linux.seccomp, compiled.
    pub seccomp: Option<&'a seccomp::Program>,
    /// linux.personality as a personality(2) domain.
    pub personality: Option<libc::c_ulong>,
    /// Run once the user is switched (which clears a parent-death signal set before).
    pub after_user: &'a dyn Fn(),
}

/// The personality(2) domain of linux.personality.
pub fn personality(spec: &Spec) -> Option<libc::c_ulong> {
    use oci_spec::runtime::LinuxPersonalityDomain;
    let p = spec.linux().as_ref()?.personality().as_ref()?;
    Some(match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,   // PER_LINUX
        LinuxPersonalityDomain::PerLinux32 => 0x0008, // PER_LINUX32
    })
}

/// rlimits, I/O priority, umask, groups, gid, uid, capabilities, personality,
/// noNewPrivileges, cwd, environment, the seccomp filter, execve. Returns only the reason it
/// could not become the workload.
pub fn become_workload(f: &Finish) -> String {
    let process = f.process;
    if let Err(e) = rlimits::apply(process.rlimits().as_deref().unwrap_or_default()) {
        return e.to_string();
    }
    // Before the uid changes: the real-time class needs CAP_SYS_ADMIN.
    if let Some(v) = f.ioprio {
        if let Err(e) = ioprio::apply(v) {
            return format!("process.ioPriority: ioprio_set: {e}");
        }
    }
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while the process
    // still has it (the rest of the setup then runs under the filter, as with runc).
    let nnp = process.no_new_privileges().unwrap_or(false);
    if !nnp {
        if let Some(Err(e)) = f.seccomp.map(seccomp::install) {
            return e;
        }
    }
    if let Err(e) = user::switch(process.user(), f.caps) {
        return e.to_string();
    }
    (f.after_user)();
    if let Some(p) = f.personality {
        // SAFETY: personality with a plain domain value.
        if unsafe { libc::personality(p) } == -1 {
            return format!("linux.personality: {}", std::io::Error::last_os_error());
        }
    }
    if nnp {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return format!(
                "process.noNewPrivileges: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    if let Err(e) = nix::unistd::chdir(process.cwd()) {
        return format!("process.cwd: chdir {}: {e}", process.cwd().display());
    }
    let env = exec::environment(process.env().as_deref().unwrap_or_default(), || {
        std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| user::home_of(&p, process.user().uid()))
            .unwrap_or_else(|| "/".into())
    });
    if nnp {
        if let Some(Err(e)) = f.seccomp.map(seccomp::install) {
            return e;
        }
    }
    let args = process.args().as_deref().unwrap_or_default();
    exec::exec(args, &env)
}
