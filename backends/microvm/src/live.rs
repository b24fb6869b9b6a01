//! What `pause` and `resume` do to a running microVM from outside it.
//!
//! A pause stops the VM's host processes with SIGSTOP: the hypervisor first (qemu, when it
//! is one), then the host process, which runs the built-in VMM's vCPU threads or waits for
//! qemu. The guest's vCPUs stop with them (a vCPU thread leaves KVM_RUN for the stop);
//! there is no control channel into the VMM to pause the vCPUs alone. The guest's clock jumps
//! by the paused time on resume. SIGKILL still ends a paused VM; other signals for the
//! workload wait in the host process until it continues.

use std::time::{Duration, Instant};

use isobox_common::{proc, Error, State};

use crate::backend::live_hypervisor;
use crate::error::MicrovmError;
use crate::host_process::RESUME_VALUE;

/// How long the processes may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The VM's live host processes: the hypervisor (if separate), then the host process.
fn processes(state: &State) -> Vec<i32> {
    let mut pids: Vec<i32> = live_hypervisor(state).into_iter().collect();
    if proc::is_alive(state.pid, state.pid_start_time) {
        pids.push(state.pid);
    }
    pids
}

/// Every thread of `pid` stopped (a group stop reaches the threads one by one).
fn is_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        t.file_name()
            .to_str()
            .and_then(|tid| tid.parse().ok())
            .is_some_and(|tid| proc::state_letter(tid) == Some('T'))
    })
}

fn send(pid: i32, signal: i32, value: usize) -> std::io::Result<()> {
    let value = libc::sigval {
        sival_ptr: value as *mut libc::c_void,
    };
    // SAFETY: sigqueue with integer arguments and a plain value.
    if unsafe { libc::sigqueue(pid, signal, value) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn not_running(state: &State) -> Error {
    Error::BadState {
        id: state.id.clone(),
        reason: "the VM host process is not running".into(),
    }
}

pub(crate) fn pause(state: &State) -> Result<(), Error> {
    let pids = processes(state);
    if !pids.contains(&state.pid) {
        return Err(not_running(state));
    }
    for &pid in &pids {
        if let Err(e) = send(pid, libc::SIGSTOP, 0) {
            resume_pids(&pids);
            return Err(MicrovmError::io(format!("stopping VM process {pid}"), e).into());
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while let Some(&pid) = pids.iter().find(|p| !is_stopped(**p)) {
        if Instant::now() > deadline {
            resume_pids(&pids);
            return Err(MicrovmError::io(
                format!("VM process {pid} did not stop within {STOP_TIMEOUT:?} of SIGSTOP"),
                std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Continue the host process first, so it relays again before the guest runs.
fn resume_pids(pids: &[i32]) -> Vec<(i32, std::io::Error)> {
    pids.iter()
        .rev()
        .filter_map(|&pid| {
            send(pid, libc::SIGCONT, RESUME_VALUE)
                .err()
                .map(|e| (pid, e))
        })
        .collect()
}

pub(crate) fn resume(state: &State) -> Result<(), Error> {
    let pids = processes(state);
    if !pids.contains(&state.pid) {
        return Err(not_running(state));
    }
    match resume_pids(&pids).into_iter().next() {
        Some((pid, e)) => Err(MicrovmError::io(format!("continuing VM process {pid}"), e).into()),
        None => Ok(()),
    }
}

pub(crate) fn is_paused(state: &State) -> bool {
    proc::is_alive(state.pid, state.pid_start_time) && is_stopped(state.pid)
}
