//! The backend instance for a kind.

use anyhow::Result;
use isobox_common::{Backend, BackendKind};

pub fn for_kind(kind: BackendKind) -> Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Container => Box::new(isobox_container::ContainerBackend::new()),
        BackendKind::Microvm => Box::new(isobox_microvm::MicrovmBackend::new()?),
    })
}
