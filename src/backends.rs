//! The backend instance for a kind, and states loaded with the status it reports.

use anyhow::Result;
use isobox_common::{Backend, BackendKind, State, StateStore, Status};

pub fn for_kind(kind: BackendKind) -> Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Container => Box::new(isobox_container::ContainerBackend::new()),
        BackendKind::Microvm => Box::new(isobox_microvm::MicrovmBackend::new()?),
    })
}

/// Load container `id` with its status as the host has it now, `paused` included (which
/// only its backend can tell), and its backend.
pub fn load(store: &StateStore, id: &str) -> Result<(State, Box<dyn Backend>)> {
    let mut state = store.load(id)?;
    let backend = for_kind(state.backend)?;
    if matches!(state.status, Status::Created | Status::Running) && backend.is_paused(&state)? {
        state.status = Status::Paused;
    }
    Ok((state, backend))
}
