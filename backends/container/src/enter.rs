//! `exec`: a new process in a running container, as runc makes it. isobox forks a helper,
//! puts it in the container's cgroup (every hierarchy), and the helper joins the init's
//! namespaces (user first, mount last) and forks the process itself: a pid namespace is only
//! entered by a child, and with CLONE_PARENT that child is isobox's own, so isobox can wait
//! for it in the foreground, and once isobox has gone it stays a descendant of whoever
//! started isobox (the engines' shims are subreapers). The helper then ends. The process
//! sets itself up with the init's own code ([`crate::process`]) and execs; its end of the
//! setup channel closes on execve, which tells isobox the process runs.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use isobox_common::child::ChildSession;
use isobox_common::{proc, Error, ExecOptions, Execed, State};
use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::error::ContainerError;
use crate::init::fail_setup;
use crate::namespaces::{self, Join};
use crate::spawn::{self, BackendData};
use crate::sync::{Channel, Msg};
use crate::terminal::Console;
use crate::{check, fds, init, process, seccomp, terminal};
use isobox_common::caps::CapMasks;

/// The namespaces of a process, in the order they are joined: user first (it grants the
/// rights for the rest), mount last.
const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

/// Where the process goes: the init's namespaces that differ from isobox's own.
struct Target {
    joins: Vec<Join>,
    /// The init's root directory, entered with chroot when there is no mount namespace to
    /// join (a container without one is chroot'ed).
    root: Option<OwnedFd>,
    user_ns: bool,
}

/// Everything the helper and the process need, computed before fork.
struct Plan<'a> {
    process: &'a Process,
    caps: Option<CapMasks>,
    ioprio: Option<u32>,
    seccomp: Option<seccomp::Program>,
    personality: Option<libc::c_ulong>,
    target: Target,
    console: Option<Console>,
}

fn same_file(a: &File, b: &Path) -> bool {
    match (a.metadata(), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Open the namespaces of the init `pid` that are not isobox's own.
fn target(state: &State) -> Result<Target, Error> {
    let pid = state.pid;
    let mut joins = Vec::new();
    let mut user_ns = false;
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{pid}/ns/{name}");
        let ns = match File::open(&path) {
            Ok(f) => f,
            // A namespace type this kernel does not have.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "time" => continue,
            Err(e) => return Err(Error::io(format!("opening {path}"), e)),
        };
        if same_file(&ns, Path::new(&format!("/proc/self/ns/{name}"))) {
            continue;
        }
        user_ns |= flag == libc::CLONE_NEWUSER;
        joins.push(Join {
            flag: CloneFlags::from_bits_retain(flag),
            fd: ns.into(),
            field: format!("the {name} namespace of container {:?} ({path})", state.id),
        });
    }
    let root = if joins.iter().any(|j| j.flag == CloneFlags::CLONE_NEWNS) {
        None
    } else {
        let path = format!("/proc/{pid}/root");
        Some(
            File::open(&path)
                .map_err(|e| Error::io(format!("opening {path}"), e))?
                .into(),
        )
    };
    // Opened by pid: make sure it was still the container's init, not a recycled pid.
    if !proc::is_alive(pid, state.pid_start_time) {
        return Err(stopped(state));
    }
    Ok(Target {
        joins,
        root,
        user_ns,
    })
}

fn stopped(state: &State) -> Error {
    Error::BadState {
        id: state.id.clone(),
        reason: "cannot exec in a stopped container".into(),
    }
}

/// Start `opts.process` in the running container `state`.
pub fn exec(state: &State, data: &BackendData, opts: &ExecOptions) -> Result<Execed, Error> {
    if !proc::is_alive(state.pid, state.pid_start_time) {
        return Err(stopped(state));
    }
    if data.cgroup.is_frozen().unwrap_or(false) {
        return Err(Error::BadState {
            id: state.id.clone(),
            reason: "cannot exec in a paused container (resume it first)".into(),
        });
    }
    if spawn::thread_count().is_some_and(|n| n > 1) {
        return Err(ContainerError::Init(
            "exec must be called from a single-threaded process (it forks)".into(),
        )
        .into());
    }
    let in_config = opts.process_file == state.bundle.join("config.json");
    let planned = check::process(&opts.process, &opts.process_file, in_config)?;
    let seccomp = data
        .seccomp
        .as_ref()
        .map(seccomp::compile)
        .transpose()
        .map_err(|(field, reason)| Error::Config {
            file: state.bundle.join("config.json"),
            field,
            reason,
        })?;
    let terminal = opts.process.terminal().unwrap_or(false);
    let socket = match (&opts.console_socket, terminal) {
        (_, false) => None,
        (Some(path), true) => Some(isobox_common::console::connect(path)?),
        (None, true) => {
            return Err(Error::Config {
                file: opts.process_file.clone(),
                field: if in_config {
                    "process.terminal"
                } else {
                    "terminal"
                }
                .into(),
                reason: "a terminal needs a console socket to send its master to".into(),
            })
        }
    };
    let plan = Plan {
        process: &opts.process,
        caps: planned.caps,
        ioprio: planned.ioprio,
        seccomp,
        personality: data.personality,
        target: target(state)?,
        console: socket.map(|s| Console::of(&opts.process, s)),
    };
    let (parent, child) = Channel::pair()?;
    let helper = spawn::clone_child(CloneFlags::empty())
        .map_err(|e| Error::io("forking the exec helper", e))?;
    if helper == 0 {
        drop(parent);
        run_helper(&plan, &child);
    }
    drop(child);
    drop(plan.console);
    let pid = started(state, data, &opts.process_file, helper, &parent)?;
    Ok(Execed {
        pid,
        console: None,
        session: Box::new(ChildSession::new(pid)),
    })
}

/// Place the helper, then wait until the process has exec'd (its channel closes) or failed.
/// Returns the process's pid; reaps the helper, and the process when it failed.
fn started(
    state: &State,
    data: &BackendData,
    file: &Path,
    helper: i32,
    chan: &Channel,
) -> Result<i32, Error> {
    let placed = data
        .cgroup
        .add(helper)
        .map_err(Error::from)
        .and_then(|()| chan.send(&Msg::Placed).map_err(Error::from));
    let mut pid = None;
    let mut failure = placed.err();
    if failure.is_none() {
        loop {
            match chan.recv() {
                Ok(Some(Msg::Go(p))) => pid = Some(p),
                Ok(Some(Msg::Error(text))) => {
                    failure = Some(
                        ContainerError::Init(format!(
                            "exec in container {:?} ({}): {text}",
                            state.id,
                            file.display()
                        ))
                        .into(),
                    );
                }
                Ok(Some(other)) => {
                    failure = Some(
                        ContainerError::Init(format!("unexpected exec message {other:?}")).into(),
                    )
                }
                // Every writer is gone: the helper ended, and the process exec'd or died.
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            }
        }
    } else {
        let _ = nix::sys::signal::kill(Pid::from_raw(helper), nix::sys::signal::SIGKILL);
    }
    let _ = waitpid(Pid::from_raw(helper), None);
    match (failure, pid) {
        (None, Some(pid)) => Ok(pid),
        (failure, pid) => {
            if let Some(p) = pid {
                let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(p), None);
            }
            Err(failure.unwrap_or_else(|| {
                ContainerError::Init("the exec helper ended without starting the process".into())
                    .into()
            }))
        }
    }
}

/// The helper: wait to be placed in the cgroup, join the namespaces, fork the process.
fn run_helper(plan: &Plan, chan: &Channel) -> ! {
    let mut keep = vec![chan.as_fd().as_raw_fd()];
    keep.extend(plan.target.joins.iter().map(|j| j.fd.as_raw_fd()));
    keep.extend(plan.target.root.as_ref().map(|r| r.as_raw_fd()));
    keep.extend(plan.console.as_ref().map(|c| c.socket.as_raw_fd()));
    fds::close_all_except(&keep);
    match chan.recv() {
        Ok(Some(Msg::Placed)) => {}
        // isobox failed to place us and reports that itself.
        // SAFETY: leaving the child without running the parent's destructors.
        _ => unsafe { libc::_exit(1) },
    }
    if let Some(adj) = plan.process.oom_score_adj() {
        // Here, while /proc is still the host's.
        if let Err(e) = std::fs::write("/proc/self/oom_score_adj", adj.to_string()) {
            fail_setup(
                chan,
                format!("oomScoreAdj: writing /proc/self/oom_score_adj: {e}"),
            );
        }
    }
    for join in &plan.target.joins {
        if let Err(e) = namespaces::enter(join) {
            fail_setup(chan, e.to_string());
        }
    }
    if let Some(root) = &plan.target.root {
        // SAFETY: fchdir and chroot on a descriptor we own.
        let rc = unsafe {
            if libc::fchdir(root.as_raw_fd()) == 0 {
                libc::chroot(c".".as_ptr())
            } else {
                -1
            }
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            fail_setup(
                chan,
                format!("entering the container's root directory: {e}"),
            );
        }
    }
    // SAFETY: clone without a new stack behaves like fork; the child only sets itself up
    // and execs, or leaves with _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_PARENT as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        0 => run_process(plan, chan),
        p if p < 0 => {
            let e = std::io::Error::last_os_error();
            fail_setup(chan, format!("forking the process into the container: {e}"))
        }
        p => {
            let _ = chan.send(&Msg::Go(p as i32));
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
    }
}

/// The process, inside the container: its own session, its terminal, then the process spec.
fn run_process(plan: &Plan, chan: &Channel) -> ! {
    init::reset_signals();
    // SAFETY: setsid has no arguments; a new session, as runc gives every process it starts.
    unsafe { libc::setsid() };
    if plan.target.user_ns {
        // The namespace's root (when mapped) until the process spec's user is set.
        // SAFETY: id-setting syscalls.
        unsafe {
            libc::setresgid(0, 0, 0);
            libc::setresuid(0, 0, 0);
        }
    }
    if let Some(console) = &plan.console {
        // The socket itself is close-on-exec.
        if let Err(e) = terminal::attach(console, false) {
            fail_setup(chan, e.to_string());
        }
    }
    let err = process::become_workload(&process::Finish {
        process: plan.process,
        caps: plan.caps.as_ref(),
        ioprio: plan.ioprio,
        seccomp: plan.seccomp.as_ref(),
        personality: plan.personality,
        after_user: &|| {},
    });
    fail_setup(chan, err)
}
