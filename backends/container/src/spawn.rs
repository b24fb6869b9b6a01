//! The runtime side of `create`: plan everything, clone the init straight from the calling
//! process, write its id maps, put it in its cgroup, run the runtime hooks, and wait until it
//! reports "created" — or undo everything if it reports an error.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use isobox_common::state::ProcessRef;
use isobox_common::{hooks, CreateOptions, Created, Error};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroups::{self, Cgroup};
use crate::error::ContainerError;
use crate::init::{self, InitPlan};
use crate::sync::{self, Channel, Msg};
use crate::terminal::Console;
use crate::{check, devices, namespaces};

/// What `delete`, `kill`, `ps` and `start` need later, kept in the container state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendData {
    pub cgroup: Cgroup,
    #[serde(default)]
    pub poststart: Vec<oci_spec::runtime::Hook>,
    #[serde(default)]
    pub poststop: Vec<oci_spec::runtime::Hook>,
    /// config.json has no process: the container can be created but not started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_process: bool,
    /// The limits in force: config.json's linux.resources, changed by each `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    /// linux.seccomp, which every `exec`'d process gets too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// linux.personality as a personality(2) domain, for `exec`'d processes too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personality: Option<libc::c_ulong>,
}

/// Map a backend error to the shared one, naming config.json for resource limits.
pub fn to_common(e: ContainerError, config: &Path) -> Error {
    match e {
        ContainerError::Resource { field, reason } => Error::Config {
            file: config.to_path_buf(),
            field,
            reason,
        },
        other => other.into(),
    }
}

/// The number of threads of this process: clone without fork's bookkeeping is only safe in a
/// single-threaded process (another thread could hold the allocator's lock).
pub(crate) fn thread_count() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(17)?.parse().ok()
}

fn build_plan<'a>(opts: &'a CreateOptions, fifo: OwnedFd) -> Result<InitPlan<'a>, Error> {
    let bundle = &opts.bundle;
    if let Some(flag) = opts.microvm.first_set() {
        return Err(Error::Config {
            file: "command line".into(),
            field: flag.into(),
            reason: "applies to the microVM backend only (--backend microvm)".into(),
        });
    }
    let parsed = check::parse(bundle, true)?;
    let console = match (bundle.process(), &opts.console_socket) {
        (Some(p), Some(path)) if p.terminal() == Some(true) => {
            Some(Console::of(p, isobox_common::console::connect(path)?))
        }
        (Some(p), None) if p.terminal() == Some(true) => {
            return Err(Error::Config {
                file: bundle.config_path.clone(),
                field: "process.terminal".into(),
                reason: "a terminal needs a console socket to send its master to".into(),
            })
        }
        _ => None,
    };
    let cgroup_mode = if parsed.mounts.iter().any(|m| m.typ == "cgroup") {
        Some(cgroups::detect().map_err(|e| to_common(e, &bundle.config_path))?)
    } else {
        None
    };
    Ok(InitPlan {
        id: &opts.id,
        bundle,
        ns: parsed
            .ns
            .expect("namespaces are planned when they may be opened"),
        mounts: parsed.mounts,
        propagation: parsed.propagation,
        devices: parsed.devices,
        caps: parsed.caps,
        ioprio: parsed.ioprio,
        seccomp: parsed.seccomp,
        cgroup_mode,
        fifo,
        foreground: opts.foreground,
        console,
    })
}

/// clone(2) with fork semantics (the child continues on a copy of this stack).
pub(crate) fn clone_child(flags: CloneFlags) -> std::io::Result<i32> {
    // SAFETY: raw clone without a new stack behaves like fork; the child only runs the init
    // and leaves with _exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret as i32)
}

/// Enter the pid namespace to join for the next clone, returning our own to come back to.
fn enter_pid_ns(plan: &InitPlan) -> Result<Option<OwnedFd>, Error> {
    let Some(join) = plan.ns.pid_join.as_ref() else {
        return Ok(None);
    };
    let own: OwnedFd = std::fs::File::open("/proc/self/ns/pid")
        .map_err(|e| Error::io("opening /proc/self/ns/pid", e))?
        .into();
    namespaces::enter(join).map_err(|e| to_common(e, &plan.bundle.config_path))?;
    Ok(Some(own))
}

/// File in the state dir where `create` records what it has made so far.
pub const PROGRESS_FILE: &str = "progress.json";

/// What `create` has made on the host so far, recorded in the state dir as soon as each part
/// exists: if the creating process dies midway, `delete --force` ends and removes exactly
/// this ([`undo_recorded`]).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Progress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<ProcessRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
}

impl Progress {
    fn save(&self, state_dir: &Path) -> Result<(), Error> {
        let body = serde_json::to_vec(self).expect("progress serializes");
        isobox_common::state::write_atomic(&state_dir.join(PROGRESS_FILE), &body)
    }

    /// What a create recorded in `state_dir`; the default (nothing) when it recorded nothing.
    pub fn load(state_dir: &Path) -> Result<Progress, Error> {
        let path = state_dir.join(PROGRESS_FILE);
        match std::fs::read(&path) {
            Ok(body) => serde_json::from_slice(&body).map_err(|e| {
                Error::io(
                    format!("reading {}", path.display()),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
}

/// End and remove what an interrupted create recorded in `state_dir` (its init, everything
/// in its cgroup, the cgroup), and the backend's files there. Idempotent.
pub fn undo_recorded(state_dir: &Path) -> Result<(), Error> {
    let progress = Progress::load(state_dir)?;
    if let Some(init) = progress.init {
        init.kill_and_wait(std::time::Duration::from_secs(10));
    }
    if let Some(cg) = &progress.cgroup {
        // Kills whatever else is in it and waits until it is empty.
        cg.destroy().map_err(Error::from)?;
    }
    let _ = std::fs::remove_file(state_dir.join(sync::EXEC_FIFO));
    let _ = std::fs::remove_file(state_dir.join(PROGRESS_FILE));
    Ok(())
}

/// Everything `create` made on the host so far, undone in reverse on failure.
struct Undo<'a> {
    fifo: &'a Path,
    state_dir: &'a Path,
    cgroup: Option<Cgroup>,
    pid: Option<i32>,
    progress: Progress,
}

impl Undo<'_> {
    /// The init exists: undo kills it, and so does `delete --force` should we die now.
    fn made_init(&mut self, pid: i32) -> Result<(), Error> {
        self.pid = Some(pid);
        // Our unreaped child: its start time cannot belong to another process yet.
        self.progress.init = ProcessRef::of(pid);
        self.progress.save(self.state_dir)
    }

    /// The cgroup exists (in every hierarchy).
    fn made_cgroup(&mut self, cg: Cgroup) -> Result<(), Error> {
        self.progress.cgroup = Some(cg.clone());
        self.cgroup = Some(cg);
        self.progress.save(self.state_dir)
    }

    fn run(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.destroy();
        }
        let _ = std::fs::remove_file(self.fifo);
        let _ = std::fs::remove_file(self.state_dir.join(PROGRESS_FILE));
    }
}

/// setns back to the runtime's own pid namespace after cloning into a joined one: later
/// children (hooks) must not land in the container's namespace.
fn return_to_pid_ns(own: &OwnedFd) -> Result<(), Error> {
    // SAFETY: setns on a descriptor we own; it changes only where later children go.
    if unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
        return Err(Error::io(
            "returning to isobox's own pid namespace after cloning the init (setns)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// After a runtime-side failure: stop the init and report its own error if it had already
/// failed (that is the cause), else `err`.
fn init_error_or(chan: &Channel, pid: Option<i32>, err: Error) -> Error {
    // None: already reaped, and the pid may belong to someone else by now.
    if let Some(pid) = pid {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    while let Ok(Some(msg)) = chan.recv() {
        if let Msg::Error(text) = msg {
            return ContainerError::Init(text).into();
        }
    }
    err
}

pub fn create(opts: &CreateOptions) -> Result<Created, Error> {
    if thread_count().is_some_and(|n| n > 1) {
        return Err(Error::Backend(Box::new(ContainerError::Init(
            "create must be called from a single-threaded process (the init is cloned from it)"
                .into(),
        ))));
    }
    let config = &opts.bundle.config_path;
    let fifo = opts.state_dir.join(sync::EXEC_FIFO);
    sync::make_fifo(&fifo).map_err(|e| to_common(e, config))?;
    let mut undo = Undo {
        fifo: &fifo,
        state_dir: &opts.state_dir,
        cgroup: None,
        pid: None,
        progress: Progress::default(),
    };
    let plan = sync::open_fifo(&fifo)
        .map_err(|e| to_common(e, config))
        .and_then(|fd| build_plan(opts, fd));
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            undo.run();
            return Err(e);
        }
    };
    let result = create_in(&plan, opts, &mut undo);
    if result.is_err() {
        undo.run();
    }
    result
}

fn create_in(plan: &InitPlan, opts: &CreateOptions, undo: &mut Undo) -> Result<Created, Error> {
    let bundle = &opts.bundle;
    let config = &bundle.config_path;
    let (parent, child) = Channel::pair().map_err(|e| to_common(e, config))?;
    let own_pid_ns = enter_pid_ns(plan)?;
    let cloned = clone_child(plan.ns.clone_flags);
    if let Ok(0) = cloned {
        drop(parent);
        init::run(plan, child);
    }
    let returned = own_pid_ns.as_ref().map_or(Ok(()), return_to_pid_ns);
    drop(child);
    let pid = cloned.map_err(|e| {
        Error::io(
            format!(
                "clone of the container init (flags {:?})",
                plan.ns.clone_flags
            ),
            e,
        )
    })?;
    // Recorded first, so the failures below (and our own death) still end the init.
    undo.made_init(pid)?;
    // A failure leaves us in the container's pid namespace: undo kills the init.
    returned?;
    let cg = match setup_init(plan, opts, pid, &parent, undo) {
        Ok(cg) => cg,
        // The init's own error, if it sent one, is the cause.
        Err(e) => return Err(init_error_or(&parent, undo.pid, e)),
    };
    let hooks = bundle.spec.hooks().as_ref();
    let data = BackendData {
        cgroup: cg,
        poststart: hooks
            .and_then(|h| h.poststart().clone())
            .unwrap_or_default(),
        poststop: hooks.and_then(|h| h.poststop().clone()).unwrap_or_default(),
        no_process: bundle.process().is_none(),
        resources: bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone()),
        seccomp: bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone()),
        personality: crate::process::personality(&bundle.spec),
    };
    Ok(Created::new(pid, &data))
}

/// The runtime's half of the setup protocol, after clone: id maps, cgroup, runtime hooks,
/// until the init reports created. Returns the container's cgroup.
fn setup_init(
    plan: &InitPlan,
    opts: &CreateOptions,
    pid: i32,
    parent: &Channel,
    undo: &mut Undo,
) -> Result<Cgroup, Error> {
    let bundle = &opts.bundle;
    let config = &bundle.config_path;
    let linux = bundle.spec.linux().as_ref();

    if plan.ns.new_user() {
        let l = linux.expect("user namespace implies linux");
        namespaces::write_id_maps(
            pid,
            l.uid_mappings().as_deref().unwrap_or_default(),
            l.gid_mappings().as_deref().unwrap_or_default(),
        )
        .map_err(|e| to_common(e, config))?;
    }
    if let Some(adj) = bundle.process().and_then(|p| p.oom_score_adj()) {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string()).map_err(|e| {
            Error::io(
                format!("process.oomScoreAdj: writing /proc/{pid}/oom_score_adj"),
                e,
            )
        })?;
    }
    parent
        .send(&Msg::Go(pid))
        .map_err(|e| to_common(e, config))?;
    // The cgroup is made and joined while the init sets up its mounts.
    // Always with device rules: the default deny holds without linux.resources too.
    let resources = devices::cgroup_resources_of(linux);
    let cg = Cgroup::create(
        linux.and_then(|l| l.cgroups_path().as_deref()),
        &opts.id,
        Some(&resources),
    )
    .map_err(|e| to_common(e, config))?;
    undo.made_cgroup(cg.clone())?;
    cg.add(pid).map_err(|e| to_common(e, config))?;
    parent
        .send(&Msg::Placed)
        .map_err(|e| to_common(e, config))?;
    loop {
        match parent.recv().map_err(|e| to_common(e, config))? {
            Some(Msg::RuntimeHooks) => {
                let state = isobox_common::hooks::state_json(&opts.id, "creating", pid, bundle);
                let hooks = bundle.spec.hooks().as_ref();
                for (kind, list) in [
                    ("prestart", hooks.and_then(|h| h.prestart().as_deref())),
                    (
                        "createRuntime",
                        hooks.and_then(|h| h.create_runtime().as_deref()),
                    ),
                ] {
                    hooks::run(kind, list.unwrap_or_default(), &state)?;
                }
                parent
                    .send(&Msg::Continue)
                    .map_err(|e| to_common(e, config))?;
            }
            Some(Msg::Created) => break,
            Some(Msg::Error(text)) => return Err(ContainerError::Init(text).into()),
            Some(other) => {
                return Err(
                    ContainerError::Init(format!("unexpected setup message {other:?}")).into(),
                )
            }
            None => {
                let status = waitpid(Pid::from_raw(pid), None);
                undo.pid = None;
                let how = match status {
                    Ok(WaitStatus::Exited(_, code)) => format!("exited with {code}"),
                    Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
                    Ok(other) => format!("ended ({other:?})"),
                    Err(e) => format!("could not be waited for ({e})"),
                };
                let limit = linux
                    .and_then(|l| l.resources().as_ref())
                    .and_then(|r| r.memory().as_ref())
                    .and_then(|m| m.limit())
                    .filter(|&l| l > 0);
                if let (Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)), Some(limit)) =
                    (status, limit)
                {
                    return Err(Error::Config {
                        file: config.clone(),
                        field: "linux.resources.memory.limit".into(),
                        reason: format!(
                            "the container init was killed (SIGKILL) while being set up, \
                             most likely by the out-of-memory killer: {limit} bytes is too low"
                        ),
                    });
                }
                return Err(ContainerError::Init(format!(
                    "the init {how} before reporting created"
                ))
                .into());
            }
        }
    }
    // The init closes its end right after "created": waiting for that means `create` returns
    // once the init holds nothing but stdio and the exec fifo.
    let _ = parent.recv();
    Ok(cg)
}

#[cfg(test)]
mod create_tests {
    use super::*;

    #[test]
    fn a_failed_return_to_the_own_pid_namespace_is_an_error() {
        // Not a namespace descriptor: setns fails, and that must not pass unnoticed.
        let not_ns: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let err = return_to_pid_ns(&not_ns).unwrap_err().to_string();
        assert!(err.contains("own pid namespace"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn progress_is_recorded_and_undone() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Progress::load(dir.path()).unwrap().init.is_none());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fifo = dir.path().join(sync::EXEC_FIFO);
        std::fs::write(&fifo, "").unwrap();
        let mut undo = Undo {
            fifo: &fifo,
            state_dir: dir.path(),
            cgroup: None,
            pid: None,
            progress: Progress::default(),
        };
        undo.made_init(child.id() as i32).unwrap();
        let recorded = Progress::load(dir.path()).unwrap().init.unwrap();
        assert_eq!(recorded.pid, child.id() as i32);
        assert!(recorded.is_alive());
        undo_recorded(dir.path()).unwrap();
        assert!(!recorded.is_alive(), "the recorded init was not ended");
        assert!(!fifo.exists() && !dir.path().join(PROGRESS_FILE).exists());
        undo_recorded(dir.path()).unwrap();
        let _ = child.wait(); // already reaped: ECHILD
    }
}
