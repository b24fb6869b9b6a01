//! The container init: what the cloned child does, from namespaces to execve. Everything up
//! to "created" reports errors to the parent over the setup channel; after `start` releases
//! it, errors go to the container's stderr and the process exits 127.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use isobox_common::{hooks, Bundle};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::Hook;

use crate::cgroups::Mode as CgroupMode;
use crate::devices::{self, Node};
use crate::error::{ContainerError, Result};
use crate::mounts::{self, MountContext, PlannedMount};
use crate::namespaces::{self, NsPlan};
use crate::sync::{self, Channel, Msg};
use crate::terminal::{self, Console};
use crate::{fds, process, rootfs, seccomp};
use isobox_common::caps::CapMasks;

/// Everything the init needs, computed and validated by the parent before clone.
pub struct InitPlan<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub ns: NsPlan,
    pub mounts: Vec<PlannedMount>,
    pub propagation: MsFlags,
    pub devices: Vec<Node>,
    pub caps: Option<CapMasks>,
    /// process.ioPriority as an ioprio value.
    pub ioprio: Option<u32>,
    /// linux.seccomp, compiled.
    pub seccomp: Option<seccomp::Program>,
    pub cgroup_mode: Option<CgroupMode>,
    /// The exec fifo, open read-write (see `sync::open_fifo`).
    pub fifo: OwnedFd,
    pub foreground: bool,
    /// process.terminal: where the master goes.
    pub console: Option<Console>,
}

fn hooks_of<'a>(
    bundle: &'a Bundle,
    pick: impl Fn(&'a oci_spec::runtime::Hooks) -> &'a Option<Vec<Hook>>,
) -> &'a [Hook] {
    bundle
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| pick(h).as_deref())
        .unwrap_or_default()
}

/// Restore default signal handling: the caller may have handlers or a blocked mask that must
/// not reach the workload (ignored signals would survive execve).
pub(crate) fn reset_signals() {
    // SAFETY: plain signal-state syscalls on the calling process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

fn set_pdeathsig(plan: &InitPlan) {
    // Without a pid namespace nothing kills the workload when a foreground `run` dies.
    if plan.foreground && !plan.ns.new_pid() && plan.ns.pid_join.is_none() {
        // SAFETY: prctl with integer arguments.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
    }
}

fn expect(chan: &Channel, want: &str) -> Result<Msg> {
    match chan.recv()? {
        Some(m) => Ok(m),
        None => Err(ContainerError::Init(format!(
            "the runtime went away while the init waited for {want}"
        ))),
    }
}

/// The child's entry point after clone. Never returns.
pub fn run(plan: &InitPlan, chan: Channel) -> ! {
    reset_signals();
    // The caller's descriptors must not live on in the init: a held flock (the state lock)
    // would block the next `start` until the workload execs.
    let mut keep = vec![chan.as_fd().as_raw_fd(), plan.fifo.as_raw_fd()];
    keep.extend(plan.ns.joins.iter().map(|j| j.fd.as_raw_fd()));
    keep.extend(plan.console.as_ref().map(|c| c.socket.as_raw_fd()));
    fds::close_all_except(&keep);
    let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(plan, &chan)));
    let host_pid = match setup {
        Ok(Ok(pid)) => pid,
        Ok(Err(e)) => fail_setup(&chan, e.to_string()),
        Err(panic) => fail_setup(&chan, format!("panicked: {}", panic_text(&panic))),
    };
    drop(chan);
    let err = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        after_start(plan, host_pid)
    })) {
        Ok(msg) => msg,
        Err(panic) => format!("panicked: {}", panic_text(&panic)),
    };
    eprintln!("isobox: container {}: {err}", plan.id);
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(127) }
}

/// Hand `text` to the waiting `start` (see [`sync::release`]) and end the init; if it cannot
/// be handed over, it goes to the container's stderr as other errors after start do.
fn report_to_start(plan: &InitPlan, text: &str) -> ! {
    if !sync::report_start_error(&plan.fifo, text) {
        eprintln!("isobox: container {}: {text}", plan.id);
    }
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(127) }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Report `text` to the runtime over the setup channel and end this child.
pub(crate) fn fail_setup(chan: &Channel, text: String) -> ! {
    // The parent wraps the text in ContainerError::Init again: say "container init" once.
    let text = text
        .strip_prefix("container init: ")
        .map_or(text.clone(), str::to_string);
    let _ = chan.send(&Msg::Error(text));
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(1) }
}

/// Namespaces, mounts, devices, hooks, pivot_root and the paths after it. Returns the host
/// pid the parent reported.
fn setup(plan: &InitPlan, chan: &Channel) -> Result<i32> {
    set_pdeathsig(plan);
    // The parent writes the id maps first; it moves us into the cgroup while we set up
    // (a cgroup v1 migration waits for an RCU grace period, ~10 ms, worth overlapping).
    let host_pid = match expect(chan, "its id maps")? {
        Msg::Go(pid) => pid,
        other => {
            return Err(ContainerError::Init(format!(
                "unexpected setup message {other:?}"
            )))
        }
    };
    for join in &plan.ns.joins {
        namespaces::enter(join)?;
    }
    if !plan.ns.unshare_flags.is_empty() {
        nix::sched::unshare(plan.ns.unshare_flags).map_err(|e| {
            ContainerError::io(
                format!(
                    "unsharing {:?} in the joined user namespace",
                    plan.ns.unshare_flags
                ),
                e.into(),
            )
        })?;
    }
    if plan.ns.in_user_ns() {
        // Become the namespace's root (when it is mapped) so files made during setup are
        // owned by it.
        // SAFETY: id-setting syscalls.
        unsafe {
            libc::setresgid(0, 0, 0);
            libc::setresuid(0, 0, 0);
        }
    }
    if plan.ns.creates(CloneFlags::CLONE_NEWNET) {
        namespaces::loopback_up()?;
    }
    let mut placed = false;
    let spec = &plan.bundle.spec;
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(|e| {
            ContainerError::io(
                format!("hostname: sethostname({})", isobox_common::text::quote(h)),
                e.into(),
            )
        })?;
    }
    if let Some(d) = spec.domainname() {
        // SAFETY: setdomainname with a valid buffer and length.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(ContainerError::io(
                format!("domainname: setdomainname({d:?})"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    let rootfs = plan.bundle.rootfs.as_path();
    // Without a mount namespace nothing is mounted (create refused what would need it):
    // the rootfs is entered with chroot below.
    let own_mounts = plan.ns.has(CloneFlags::CLONE_NEWNS);
    if own_mounts {
        rootfs::prepare(rootfs, plan.propagation)?;
    } else if !plan.mounts.is_empty() || !plan.devices.is_empty() {
        return Err(ContainerError::Init(
            "mounts or devices planned without a mount namespace".into(),
        ));
    }
    let ctx = MountContext {
        rootfs: rootfs.to_path_buf(),
        cgroup_mode: plan.cgroup_mode,
        cgroup_ns: plan.ns.has(CloneFlags::CLONE_NEWCGROUP),
    };
    // A cgroup filesystem must be mounted inside the cgroup namespace: wait for the cgroup
    // only when the first one comes (runc's default spec mounts it last).
    mounts::mount_all(&plan.mounts, &ctx, &mut || {
        wait_placed(plan, chan, &mut placed)
    })?;
    let in_user_ns = plan.ns.in_user_ns();
    if mounts::mounts_dev(&plan.mounts) {
        devices::create(rootfs, &devices::defaults(), in_user_ns)?;
        devices::links(rootfs)?;
    }
    devices::create(rootfs, &plan.devices, in_user_ns)?;

    wait_placed(plan, chan, &mut placed)?;
    let has_runtime_hooks = !hooks_of(plan.bundle, |h| h.prestart()).is_empty()
        || !hooks_of(plan.bundle, |h| h.create_runtime()).is_empty();
    if has_runtime_hooks {
        chan.send(&Msg::RuntimeHooks)?;
        match expect(chan, "the createRuntime hooks")? {
            Msg::Continue => {}
            other => {
                return Err(ContainerError::Init(format!(
                    "unexpected setup message {other:?}"
                )))
            }
        }
    }
    let create_container = hooks_of(plan.bundle, |h| h.create_container());
    if !create_container.is_empty() {
        let state = hooks::state_json(plan.id, "creating", host_pid, plan.bundle);
        hooks::run("createContainer", create_container, &state)?;
    }

    if !own_mounts {
        // The host's /proc still shows this process's namespaces: write them before chroot.
        if let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
            rootfs::sysctl(sysctl)?;
        }
        rootfs::chroot(rootfs)?;
        if let Some(c) = &plan.console {
            terminal::attach(c, false)?;
        }
        chan.send(&Msg::Created)?;
        return Ok(host_pid);
    }
    rootfs::pivot(rootfs, plan.propagation)?;
    // Before the paths go read-only: the slave is bound on /dev/console.
    if let Some(c) = &plan.console {
        terminal::attach(c, true)?;
    }
    if let Some(linux) = spec.linux() {
        if let Some(sysctl) = linux.sysctl() {
            rootfs::sysctl(sysctl)?;
        }
        rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default())?;
        rootfs::masked_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::readonly_root()?;
    }
    chan.send(&Msg::Created)?;
    Ok(host_pid)
}

/// Wait until the parent has put us in the cgroup, then enter a new cgroup namespace rooted
/// there if one is asked for.
fn wait_placed(plan: &InitPlan, chan: &Channel, placed: &mut bool) -> Result<()> {
    if *placed {
        return Ok(());
    }
    match expect(chan, "its cgroup")? {
        Msg::Placed => *placed = true,
        other => {
            return Err(ContainerError::Init(format!(
                "unexpected setup message {other:?}"
            )))
        }
    }
    if plan.ns.new_cgroup {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| ContainerError::io("unsharing the cgroup namespace", e.into()))?;
    }
    Ok(())
}

/// Wait for `start`, then become the workload. Returns only the reason it could not.
fn after_start(plan: &InitPlan, host_pid: i32) -> String {
    if let Err(e) = sync::wait_for_start(&plan.fifo) {
        return e.to_string();
    }
    // The fifo stays open (close-on-exec) until the workload execs: `start` waits for that
    // hang-up so poststart hooks run after the workload started, as the runtime-spec says.
    let Some(process) = plan.bundle.process() else {
        // `start` refuses this before releasing the fifo; tell it anyway if released.
        let text = format!(
            "{}: process: missing; a container without a process cannot be started",
            plan.bundle.config_path.display()
        );
        report_to_start(plan, &text);
    };
    let start_container = hooks_of(plan.bundle, |h| h.start_container());
    if !start_container.is_empty() {
        let state = hooks::state_json(plan.id, "running", host_pid, plan.bundle);
        if let Err(e) = hooks::run("startContainer", start_container, &state) {
            // The runtime-spec makes this an error of `start`, which waits for our answer.
            report_to_start(plan, &e.to_string());
        }
    }
    process::become_workload(&process::Finish {
        process,
        caps: plan.caps.as_ref(),
        ioprio: plan.ioprio,
        seccomp: plan.seccomp.as_ref(),
        personality: process::personality(&plan.bundle.spec),
        after_user: &|| set_pdeathsig(plan),
    })
}
