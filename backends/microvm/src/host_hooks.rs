//! The bundle's hooks for a microVM: run on the host as for a container, at the same points
//! of the lifecycle, with the VM host process as the state's pid. The hooks are recorded in
//! the state at create, for `start` and `delete`.

use isobox_common::state::Status;
use isobox_common::{hooks, CreateOptions, State};
use oci_spec::runtime::{Hook, Hooks};

use crate::record::VmRecord;

/// prestart, createRuntime and createContainer, in that order, once the VM is up.
pub fn on_create(opts: &CreateOptions, pid: i32) -> isobox_common::Result<()> {
    let Some(h) = opts.bundle.spec.hooks() else {
        return Ok(());
    };
    let state = hooks::state_json(&opts.id, "creating", pid, &opts.bundle);
    for (kind, list) in [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
    ] {
        hooks::run(kind, list.as_deref().unwrap_or_default(), &state)?;
    }
    Ok(())
}

/// startContainer, before the workload starts; its failure is `start`'s.
pub fn start_container(state: &State) -> isobox_common::Result<()> {
    hooks::run(
        "startContainer",
        &recorded(state, Hooks::start_container),
        &state_bytes(state),
    )
}

/// poststart once the workload runs: a failure is a warning, and the rest still run
/// (runtime-spec lifecycle, step 9).
pub fn poststart(state: &State) {
    warn_all(state, "poststart", Hooks::poststart, Status::Running);
}

/// poststop once the container is deleted (runtime-spec lifecycle, step 13), the same way.
pub fn poststop(state: &State) {
    warn_all(state, "poststop", Hooks::poststop, Status::Stopped);
}

fn warn_all(state: &State, kind: &str, pick: fn(&Hooks) -> &Option<Vec<Hook>>, status: Status) {
    let mut now = state.clone();
    now.status = status;
    for e in hooks::run_all(kind, &recorded(state, pick), &state_bytes(&now)) {
        log::warn!("container {}: {e}", state.id);
    }
}

/// The hooks of one kind recorded at create.
fn recorded(state: &State, pick: fn(&Hooks) -> &Option<Vec<Hook>>) -> Vec<Hook> {
    state
        .backend_data::<VmRecord>()
        .ok()
        .and_then(|r| r.hooks)
        .and_then(|h| pick(&h).clone())
        .unwrap_or_default()
}

fn state_bytes(state: &State) -> Vec<u8> {
    serde_json::to_vec(&state.oci_json()).expect("state serializes")
}
