//! pause, resume: freeze a container where it is and let it go on.

use anyhow::{bail, Result};
use isobox_common::{StateStore, Status};

use crate::backends;

pub fn pause(store: &StateStore, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let (state, backend) = backends::load(store, id)?;
    match state.status {
        // As runc: a created container can be paused too (and is started once resumed).
        Status::Created | Status::Running => backend.pause(&state)?,
        Status::Paused => bail!("container {id:?} is already paused"),
        other => {
            bail!("container {id:?} is {other}: only a running or created container can be paused")
        }
    }
    Ok(())
}

pub fn resume(store: &StateStore, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let (state, backend) = backends::load(store, id)?;
    if state.status != Status::Paused {
        bail!(
            "container {id:?} is {}, not paused: only a paused container can be resumed",
            state.status
        );
    }
    backend.resume(&state)?;
    Ok(())
}
