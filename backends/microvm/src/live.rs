//! What `pause`, `resume`, `update` and `events` do to a running microVM from outside it.
//!
//! A pause stops the VM's host processes with SIGSTOP: the hypervisor first (qemu, when it
//! is one), then the host process, which runs the built-in VMM's vCPU threads or waits for
//! qemu. The guest's vCPUs stop with them (a vCPU thread leaves KVM_RUN for the stop);
//! there is no control channel into the VMM to pause the vCPUs alone. The guest's clock jumps
//! by the paused time on resume. SIGKILL still ends a paused VM; other signals for the
//! workload wait in the host process until it continues.

use std::time::{Duration, Instant};

use isobox_common::{proc, Error, State, Stats};
use oci_spec::runtime::LinuxResources;

use crate::backend::live_hypervisor;
use crate::error::MicrovmError;
use crate::host_process::RESUME_VALUE;
use crate::record::VmRecord;

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

/// Nothing changes live: the VM's RAM and vCPUs are fixed at boot, and the guest has no
/// cgroups of the container's. An update that sets nothing (absent or zero fields, as runc
/// reads them) is fine; any other names its first field.
pub(crate) fn update(resources: &LinuxResources) -> Result<(), Error> {
    let doc = serde_json::to_value(resources).expect("resources serialize");
    match first_set(&doc, "linux.resources") {
        Some(field) => Err(MicrovmError::Resource {
            field,
            reason: "cannot be changed on a running microVM (its memory and vCPUs are fixed \
                     at boot)"
                .into(),
        }
        .into()),
        None => Ok(()),
    }
}

/// The path of the first value in `v` that sets something: not null, 0, "", false, nor
/// an empty list or object.
fn first_set(v: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(false) => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) => o
            .iter()
            .find_map(|(k, v)| first_set(v, &format!("{path}.{k}"))),
        _ => Some(path.to_string()),
    }
}

/// The VMM's usage, from /proc: the VM has no cgroup of its own, so these are the host
/// processes that run it (the host process with the built-in VMM's vCPU threads, and qemu):
/// their CPU time (a vCPU's guest time included) and resident memory. `memory.raw` says so
/// with its keys: `vmm_rss`, `vmm_processes` and `guest_ram` (the RAM the guest was given).
/// The guest's own processes are not counted (no `pids`).
pub(crate) fn stats(state: &State) -> Result<Stats, Error> {
    let pids = processes(state);
    if !pids.contains(&state.pid) {
        return Err(not_running(state));
    }
    let mut s = Stats::default();
    let mut rss = 0;
    for &pid in &pids {
        let (user, kernel) = proc::cpu_time_ns(pid).unwrap_or_default();
        s.cpu.usage.user += user;
        s.cpu.usage.kernel += kernel;
        rss += proc::rss_bytes(pid).unwrap_or(0);
    }
    s.cpu.usage.total = s.cpu.usage.user + s.cpu.usage.kernel;
    s.memory.usage.usage = rss;
    s.memory.raw.insert("vmm_rss".into(), rss);
    s.memory
        .raw
        .insert("vmm_processes".into(), pids.len() as u64);
    let record: VmRecord = state.backend_data()?;
    s.memory
        .raw
        .insert("guest_ram".into(), record.mem_mib << 20);
    Ok(s)
}

pub(crate) fn is_paused(state: &State) -> bool {
    proc::is_alive(state.pid, state.pid_start_time) && is_stopped(state.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_refused_by_its_first_field_unless_it_sets_nothing() {
        let parse = |j: serde_json::Value| serde_json::from_value::<LinuxResources>(j).unwrap();
        // What dockerd sends for an update that changes nothing.
        let zeros = parse(serde_json::json!({
            "memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0, "cpus": ""},
            "blockIO": {"weight": 0}, "pids": {"limit": 0}
        }));
        assert!(update(&zeros).is_ok());
        let err = update(&parse(
            serde_json::json!({"memory": {"limit": 0}, "pids": {"limit": 5}}),
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "linux.resources.pids.limit: cannot be changed on a running microVM (its memory \
             and vCPUs are fixed at boot)"
        );
    }
}
