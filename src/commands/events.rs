//! events: a container's usage and OOM kills as runc prints them, one JSON object a line.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use isobox_common::stats::Event;
use isobox_common::{StateStore, Stats, Status};

use crate::backends;

/// How often the OOM counter is read between stats events.
const OOM_POLL: Duration = Duration::from_millis(250);

/// Print one event; false once nobody reads our output any more.
fn emit(kind: &'static str, id: &str, data: Option<&Stats>) -> Result<bool> {
    let line = serde_json::to_string(&Event { kind, id, data })?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to standard output"),
    }
}

pub fn events(store: &StateStore, id: &str, stats_only: bool, interval: Duration) -> Result<()> {
    let (state, backend) = backends::load(store, id)?;
    match state.status {
        Status::Created | Status::Running | Status::Paused => {}
        other => bail!("container {id:?} is {other}: there is no usage to report"),
    }
    if stats_only {
        emit("stats", id, Some(&backend.stats(&state)?))?;
        return Ok(());
    }
    // A stats event each interval (the first after one interval, as runc), and an `oom`
    // event for each OOM kill seen since the start, until the container stops or is gone.
    let mut next_stats = Instant::now() + interval;
    let mut oom_kills = backend.stats(&state)?.memory.oom_kills;
    loop {
        std::thread::sleep(OOM_POLL.min(next_stats.saturating_duration_since(Instant::now())));
        let (state, backend) = match backends::load(store, id) {
            Ok(v) => v,
            Err(e) if super::lifecycle::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Read before the status is acted on: an OOM kill may be what stopped it.
        let stats = match backend.stats(&state) {
            Ok(s) => s,
            Err(_) if state.status == Status::Stopped => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if let (Some(before), Some(now)) = (oom_kills, stats.memory.oom_kills) {
            for _ in before..now {
                if !emit("oom", id, None)? {
                    return Ok(());
                }
            }
        }
        oom_kills = stats.memory.oom_kills.or(oom_kills);
        if state.status == Status::Stopped {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            if !emit("stats", id, Some(&stats))? {
                return Ok(());
            }
            next_stats += interval;
        }
    }
}
