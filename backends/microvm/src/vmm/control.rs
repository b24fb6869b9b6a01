//! Shared run state of a VM: how it ended (first reason wins), the "stopping" flag every thread
//! checks, and the event the owner waits on.

use super::VmExit;
use crate::error::MicrovmError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

pub struct Control {
    outcome: Mutex<Option<Result<VmExit, MicrovmError>>>,
    stopping: Arc<AtomicBool>,
    /// Written once per exit request; the owner blocks reading it.
    pub exit_evt: EventFd,
}

impl Control {
    pub fn new() -> std::io::Result<Self> {
        Ok(Control {
            outcome: Mutex::new(None),
            stopping: Arc::new(AtomicBool::new(false)),
            exit_evt: EventFd::new(libc::EFD_CLOEXEC)?,
        })
    }

    /// Records why the VM ends (unless a reason is already recorded) and wakes the owner.
    pub fn finish(&self, outcome: Result<VmExit, MicrovmError>) {
        {
            let mut o = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
            if o.is_none() {
                *o = Some(outcome);
            }
        }
        self.stopping.store(true, Ordering::Release);
        let _ = self.exit_evt.write(1);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn stopping_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    pub fn take_outcome(&self) -> Option<Result<VmExit, MicrovmError>> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The i8042's reset line: ends the VM with [`VmExit::Reset`].
pub struct ResetTrigger(pub Arc<Control>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.finish(Ok(VmExit::Reset));
        Ok(())
    }
}
