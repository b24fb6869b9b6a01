//! `ContainerBackend`: the `Backend` trait on top of spawn (create) and the state kept in it.

use isobox_common::features::Support;
use isobox_common::{
    hooks, proc, Backend, BackendKind, CreateOptions, Created, Error, Result, State, Status,
};

use oci_spec::runtime::LinuxResources;

use crate::error::ContainerError;
use crate::spawn::{self, BackendData};
use crate::sync;

/// Containers as host processes in namespaces and cgroups, cloned straight from the caller.
#[derive(Debug, Default, Clone, Copy)]
pub struct ContainerBackend;

impl ContainerBackend {
    pub fn new() -> Self {
        ContainerBackend
    }
}

fn data(state: &State) -> Result<BackendData> {
    state.backend_data()
}

fn state_bytes(state: &State) -> Vec<u8> {
    serde_json::to_vec(&state.oci_json()).expect("state serializes")
}

fn warn_all(state: &State, errors: Vec<Error>) {
    for e in errors {
        log::warn!("container {}: {e}", state.id);
    }
}

/// Wait (bounded) until the container's init is gone, so its state reads stopped.
fn wait_gone(state: &State) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while proc::is_alive(state.pid, state.pid_start_time) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Send `signal` to the container's init only.
fn signal_init(state: &State, signal: i32) -> Result<()> {
    if !proc::is_alive(state.pid, state.pid_start_time) {
        return Err(Error::BadState {
            id: state.id.clone(),
            reason: "the container's process is not running".into(),
        });
    }
    // libc::kill rather than nix's Signal: real-time signals are valid too.
    // SAFETY: kill with integer arguments.
    if unsafe { libc::kill(state.pid, signal) } != 0 {
        return Err(Error::io(
            format!(
                "sending signal {signal} to pid {} of container {:?}",
                state.pid, state.id
            ),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

impl Backend for ContainerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Container
    }

    fn support(&self) -> Support {
        Support {
            kind: BackendKind::Container,
            mount_options: isobox_common::mount_opts::applied(),
            namespaces: crate::namespaces::creatable(),
            capabilities: true,
            cgroup_v1: true,
            cgroup_v2: true,
            rdma: true,
            annotations: Vec::new(),
        }
    }

    fn create(&self, opts: &CreateOptions) -> Result<Created> {
        spawn::create(opts)
    }

    fn start(&self, state: &State) -> Result<()> {
        if state.status != Status::Created {
            return Err(Error::BadState {
                id: state.id.clone(),
                reason: format!("cannot start a container that is {}", state.status),
            });
        }
        let d = data(state)?;
        if d.no_process {
            // The init keeps waiting: the container stays created (runtime-spec: process
            // is required by start).
            return Err(Error::Config {
                file: state.bundle.join("config.json"),
                field: "process".into(),
                reason: "missing; a container without a process cannot be started".into(),
            });
        }
        let fifo = state.state_dir.join(sync::EXEC_FIFO);
        if let Err(e) = sync::release(&fifo) {
            // A startContainer hook failed and the init is ending: the container is stopped
            // once `start` reports it (runtime-spec lifecycle, step 7).
            wait_gone(state);
            return Err(e.into());
        }
        let mut running = state.clone();
        running.status = Status::Running;
        // A failing poststart hook is only a warning, and the rest still run (runtime-spec
        // lifecycle, step 9).
        warn_all(
            state,
            hooks::run_all("poststart", &d.poststart, &state_bytes(&running)),
        );
        Ok(())
    }

    fn kill(&self, state: &State, signal: i32, all: bool) -> Result<()> {
        let cg = data(state)?.cgroup;
        if all {
            cg.signal_all(signal)?;
        } else {
            signal_init(state, signal)?;
        }
        // A frozen task dies of SIGKILL only once thawed on v1, and a killed container stays
        // paused for no one (runc thaws too); other signals wait for `resume`.
        if signal == libc::SIGKILL && cg.is_frozen().unwrap_or(false) {
            cg.thaw()?;
        }
        Ok(())
    }

    fn delete(&self, state: &State) -> Result<()> {
        let d = data(state)?;
        d.cgroup.destroy().map_err(Error::from)?;
        let mut stopped = state.clone();
        stopped.status = Status::Stopped;
        // A failing poststop hook is only a warning, and the rest still run (runtime-spec
        // lifecycle, step 13).
        warn_all(
            state,
            hooks::run_all("poststop", &d.poststop, &state_bytes(&stopped)),
        );
        Ok(())
    }

    fn exec(
        &self,
        state: &State,
        opts: &isobox_common::ExecOptions,
    ) -> Result<isobox_common::Execed> {
        crate::enter::exec(state, &data(state)?, opts)
    }

    fn delete_partial(&self, state: &State) -> Result<()> {
        spawn::undo_recorded(&state.state_dir)
    }

    fn processes(&self, state: &State) -> Result<Vec<i32>> {
        data(state)?
            .cgroup
            .pids()
            .map_err(|e: ContainerError| e.into())
    }

    fn pause(&self, state: &State) -> Result<()> {
        let cg = data(state)?.cgroup;
        if !cg.freeze()? {
            return Err(ContainerError::Cgroup {
                path: cg.paths.first().cloned().unwrap_or_default(),
                reason: "cannot pause: this host has neither cgroup v2's cgroup.freeze nor \
                         the v1 freezer controller"
                    .into(),
            }
            .into());
        }
        Ok(())
    }

    fn resume(&self, state: &State) -> Result<()> {
        data(state)?.cgroup.thaw().map_err(Into::into)
    }

    fn is_paused(&self, state: &State) -> Result<bool> {
        data(state)?.cgroup.is_frozen().map_err(Into::into)
    }

    fn update(&self, state: &mut State, resources: &LinuxResources) -> Result<()> {
        let mut d = data(state)?;
        let now = d.cgroup.update(d.resources.as_ref(), resources)?;
        d.resources = Some(now);
        state.set_backend_data(&d);
        Ok(())
    }

    fn stats(&self, state: &State) -> Result<isobox_common::Stats> {
        data(state)?.cgroup.stats().map_err(Into::into)
    }
}
