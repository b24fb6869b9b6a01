//! create, start, run, kill, delete: the container lifecycle over the state store.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use isobox_common::child::ChildSession;
use isobox_common::state::ProcessRef;
use isobox_common::{
    proc, Backend, BackendKind, Bundle, CreateOptions, ExecSession, MicrovmOptions, State,
    StateStore, Status,
};

use crate::backends;
use crate::cli::CreateArgs;
use crate::commands::exec::check_console;
use crate::relay::OwnConsole;
use crate::{log, signals, wait};

/// Validate the bundle, make the state dir, let the backend create the container, record the
/// state. On any error nothing is left behind. Returns the state and its backend, and in the
/// foreground with a terminal the console socket its master was sent to.
pub fn create(
    store: &StateStore,
    args: &CreateArgs,
    foreground: bool,
) -> Result<(State, Box<dyn Backend>, Option<OwnConsole>)> {
    isobox_common::id::validate(&args.id)?;
    let bundle = Bundle::load(&args.bundle)?;
    let terminal = bundle.process().and_then(|p| p.terminal()).unwrap_or(false);
    check_console(!foreground, terminal, args.console_socket.as_deref())?;
    // A foreground terminal is relayed here: its master comes to a socket of our own.
    let own = (terminal && foreground).then(OwnConsole::new).transpose()?;
    let console_socket = own
        .as_ref()
        .map(OwnConsole::path)
        .or_else(|| args.console_socket.clone());
    let env = std::env::var(isobox_common::backend::BACKEND_ENV).ok();
    let program = crate::program_name();
    let kind = BackendKind::choose(
        args.backend.map(Into::into),
        &bundle,
        program.as_deref(),
        env.as_deref(),
    )?;
    log::debug(&format!(
        "creating {} with the {kind} backend from {}",
        args.id,
        bundle.dir.display()
    ));
    let backend = backends::for_kind(kind)?;
    let (state_dir, _lock) = store.create(&args.id)?;
    let console = Console {
        foreground,
        socket: console_socket,
    };
    let result = create_in(store, &*backend, args, bundle, kind, state_dir, console);
    if result.is_err() {
        // The backend cleaned up what it made; the state dir is ours.
        let _ = store.remove(&args.id);
    }
    result.map(|state| (state, backend, own))
}

/// How the container's process meets its caller: waited for in the foreground or not, and
/// the console socket its terminal's master goes to.
struct Console {
    foreground: bool,
    socket: Option<std::path::PathBuf>,
}

fn create_in(
    store: &StateStore,
    backend: &dyn Backend,
    args: &CreateArgs,
    bundle: Bundle,
    kind: BackendKind,
    state_dir: std::path::PathBuf,
    console: Console,
) -> Result<State> {
    let annotations = bundle
        .spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut state = State {
        oci_version: isobox_common::OCI_VERSION.to_string(),
        id: args.id.clone(),
        status: Status::Creating,
        pid: 0,
        bundle: bundle.dir.clone(),
        annotations,
        backend: kind,
        pid_start_time: 0,
        created: crate::clock::rfc3339(std::time::SystemTime::now(), true),
        started: false,
        state_dir: state_dir.clone(),
        data: serde_json::Value::Null,
        creator: Some(ProcessRef::current()),
    };
    // Saved before the backend makes anything: if this process dies from here on, `list` and
    // `state` show the container (creating, then stopped) and `delete --force` undoes what the
    // backend recorded in the state dir as it went.
    store.save(&state)?;
    let opts = CreateOptions {
        id: args.id.clone(),
        bundle,
        state_dir,
        foreground: console.foreground,
        console_socket: console.socket,
        microvm: MicrovmOptions {
            hypervisor: args.hypervisor.map(Into::into),
            kernel: args.kernel.clone(),
            agent: None,
        },
    };
    let created = backend.create(&opts)?;
    state.status = Status::Created;
    state.pid = created.pid;
    state.pid_start_time = proc::start_time(created.pid).unwrap_or(0);
    state.data = created.data;
    state.creator = None;
    let record = (|| -> Result<()> {
        store.save(&state)?;
        if let Some(pid_file) = &args.pid_file {
            write_pid_file(pid_file, state.pid)?;
        }
        Ok(())
    })();
    if let Err(e) = record {
        state.refresh();
        kill_and_reap(backend, &state);
        let _ = backend.delete(&state);
        return Err(e);
    }
    Ok(state)
}

pub(crate) fn write_pid_file(path: &std::path::Path, pid: i32) -> Result<()> {
    // Write then rename, so a reader never sees a partial pid (runc does the same).
    let tmp = path.with_extension("isobox-tmp");
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("--pid-file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("--pid-file {}", path.display()))
}

pub fn start(store: &StateStore, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let (mut state, backend) = backends::load(store, id)?;
    start_loaded(store, &mut state, &*backend)
}

fn start_loaded(store: &StateStore, state: &mut State, backend: &dyn Backend) -> Result<()> {
    match state.status {
        Status::Created => {}
        other => bail!(
            "container {:?} is {other}, not created: only a created container can be started",
            state.id
        ),
    }
    backend.start(state)?;
    state.started = true;
    state.status = Status::Running;
    store.save(state)?;
    Ok(())
}

pub fn run(store: &StateStore, args: &CreateArgs, detach: bool) -> Result<i32> {
    let (mut state, backend, own) = create(store, args, !detach)?;
    // Sent while the container was created.
    let master = match own.as_ref().map(OwnConsole::receive).transpose() {
        Ok(m) => m.flatten(),
        Err(e) => {
            kill_and_reap(&*backend, &state);
            let _ = backend.delete(&state);
            let _ = store.remove(&state.id);
            return Err(e);
        }
    };
    if let Err(e) = start_loaded(store, &mut state, &*backend) {
        kill_and_reap(&*backend, &state);
        let _ = backend.delete(&state);
        let _ = store.remove(&state.id);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = {
        let mut session = RunSession {
            child: ChildSession::new(state.pid),
            backend: &*backend,
            state: &state,
        };
        wait::wait_session(&mut session, master)
    };
    state.refresh();
    let cleanup = backend.delete(&state).map_err(anyhow::Error::from);
    store.remove(&state.id)?;
    let code = code?;
    cleanup?;
    Ok(code)
}

/// The container's process as a foreground `run` waits for it: isobox's own child, signalled
/// through its backend.
struct RunSession<'a> {
    child: ChildSession,
    backend: &'a dyn Backend,
    state: &'a State,
}

impl ExecSession for RunSession<'_> {
    fn ready_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.child.ready_fd()
    }
    fn try_wait(&mut self) -> isobox_common::Result<Option<i32>> {
        self.child.try_wait()
    }
    fn signal(&mut self, signal: i32) -> isobox_common::Result<()> {
        self.backend.kill(self.state, signal, false)
    }
    fn resize(&mut self, rows: u16, cols: u16) -> isobox_common::Result<()> {
        self.child.resize(rows, cols)
    }
}

pub fn kill(store: &StateStore, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = signals::parse(signal)?;
    let (state, backend) = backends::load(store, id)?;
    match state.status {
        Status::Stopped => bail!("container {id:?} is stopped: there is no process to signal"),
        Status::Creating => {
            bail!("container {id:?} is being created: there is no process to signal yet")
        }
        // A paused container's processes get the signal once resumed; SIGKILL ends it.
        Status::Created | Status::Running | Status::Paused => {}
    }
    backend.kill(&state, sig, all)?;
    Ok(())
}

pub fn delete(store: &StateStore, id: &str, force: bool) -> Result<()> {
    match delete_existing(store, id, force) {
        // runc's rule, which podman and containerd rely on when they clean up.
        Err(e) if force && is_not_found(&e) => {
            log::debug(&format!("delete --force {id}: no such container"));
            Ok(())
        }
        other => other,
    }
}

pub(super) fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<isobox_common::Error>(),
        Some(isobox_common::Error::NotFound(_))
    )
}

fn delete_existing(store: &StateStore, id: &str, force: bool) -> Result<()> {
    let state = store.load(id)?;
    if let (Status::Creating, Some(creator)) = (state.status, state.creator) {
        if !force {
            bail!(
                "container {id:?} is being created (by isobox pid {}): delete it with --force to stop that",
                creator.pid
            );
        }
        // The creating process holds the lock: end it, then undo what it made.
        if !creator.kill_and_wait(Duration::from_secs(10)) {
            bail!(
                "container {id:?}: its creating process {} did not end after SIGKILL",
                creator.pid
            );
        }
    }
    let _lock = store.lock(id)?;
    let (state, backend) = backends::load(store, id)?;
    if state.is_incomplete() {
        if state.status != Status::Stopped {
            bail!("container {id:?} is being created again: retry the delete");
        }
        backend.delete_partial(&state)?;
        store.remove(id)?;
        return Ok(());
    }
    match state.status {
        Status::Stopped => {}
        // Only a stopped container may be deleted (runtime spec, "delete").
        other if !force => bail!(
            "container {id:?} is {other}: only a stopped container can be deleted; stop it with kill, or delete it with --force"
        ),
        _ => kill_and_reap(&*backend, &state),
    }
    backend.delete(&state)?;
    store.remove(id)?;
    Ok(())
}

/// SIGKILL everything in the container and wait (bounded) until its process is gone.
fn kill_and_reap(backend: &dyn Backend, state: &State) {
    let _ = backend.kill(state, libc::SIGKILL, true);
    let _ = backend.kill(state, libc::SIGKILL, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc::is_alive(state.pid, state.pid_start_time) && Instant::now() < deadline {
        // Reap it if it is our child; harmless otherwise.
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(state.pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
