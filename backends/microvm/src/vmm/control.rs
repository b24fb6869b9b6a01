//! Shared run state of a VM: how it ended (first reason wins), the "stopping" flag every thread
//! checks, and the event the owner waits on.

use super::VmExit;
use crate::error::MicrovmError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

pub struct Control {
    outcome: Mutex<Option<Result<VmExit, MicrovmError>>>,
    stopping: Arc<AtomicBool>,
    /// Written once per exit request; the owner blocks reading it.
    pub exit_evt: EventFd,
    /// Port I/O exits of all vCPUs: the guest talking to its devices, the watchdog's measure
    /// of progress.
    pub io_exits: AtomicU64,
    /// Raised to ask every vCPU for a description of its state.
    dump_generation: AtomicU64,
    dumps: Mutex<Dumps>,
}

/// The vCPU threads that can be kicked, and the descriptions they gave.
#[derive(Default)]
struct Dumps {
    /// Registered by each vCPU thread while it runs; kicking happens under the lock, and a
    /// thread deregisters under it too, so only live threads are signalled.
    threads: Vec<(u8, libc::pthread_t)>,
    /// (generation, vCPU, description).
    lines: Vec<(u64, u8, String)>,
}

impl Control {
    pub fn new() -> std::io::Result<Self> {
        Ok(Control {
            outcome: Mutex::new(None),
            stopping: Arc::new(AtomicBool::new(false)),
            exit_evt: EventFd::new(libc::EFD_CLOEXEC)?,
            io_exits: AtomicU64::new(0),
            dump_generation: AtomicU64::new(0),
            dumps: Mutex::new(Dumps::default()),
        })
    }

    fn dumps(&self) -> std::sync::MutexGuard<'_, Dumps> {
        self.dumps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by vCPU `id`'s own thread before it first enters the guest.
    pub fn register_vcpu(&self, id: u8) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.dumps().threads.push((id, me));
    }

    /// Called by vCPU `id`'s thread as it ends (also when it unwinds).
    pub fn deregister_vcpu(&self, id: u8) {
        self.dumps().threads.retain(|(v, _)| *v != id);
    }

    pub fn dump_generation(&self) -> u64 {
        self.dump_generation.load(Ordering::Acquire)
    }

    /// A vCPU's answer to dump request `generation`.
    pub fn record_dump(&self, generation: u64, id: u8, line: String) {
        self.dumps().lines.push((generation, id, line));
    }

    /// Ask every running vCPU to describe itself (kicking it out of KVM_RUN) and collect the
    /// answers, waiting up to `timeout`; a vCPU that does not answer is named as such.
    pub fn dump_vcpus(&self, kick_signal: i32, timeout: Duration) -> Vec<String> {
        let (generation, ids) = {
            let mut d = self.dumps();
            let generation = self.dump_generation.fetch_add(1, Ordering::AcqRel) + 1;
            d.lines.clear();
            for (_, t) in &d.threads {
                // SAFETY: the thread is registered, so it has not returned: it deregisters
                // under this lock before it ends.
                unsafe { libc::pthread_kill(*t, kick_signal) };
            }
            (
                generation,
                d.threads.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            )
        };
        let deadline = Instant::now() + timeout;
        loop {
            let answered: Vec<(u8, String)> = self
                .dumps()
                .lines
                .iter()
                .filter(|(g, _, _)| *g == generation)
                .map(|(_, id, l)| (*id, l.clone()))
                .collect();
            if answered.len() >= ids.len() || Instant::now() >= deadline {
                let mut out: Vec<String> = ids
                    .iter()
                    .map(|id| match answered.iter().find(|(a, _)| a == id) {
                        Some((_, l)) => l.clone(),
                        None => format!("vCPU {id}: no answer within {timeout:?}"),
                    })
                    .collect();
                out.sort();
                return out;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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
