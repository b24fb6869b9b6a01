//! state, list, ps: read-only views of the state store.

use anyhow::Result;
use isobox_common::StateStore;

use crate::backends;
use crate::cli::ListFormat;

pub fn state(store: &StateStore, id: &str) -> Result<()> {
    let (st, _) = backends::load(store, id)?;
    let mut doc = st.oci_json();
    if !st.data.is_null() {
        doc["isobox"] = st.data.clone();
    }
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

pub fn list(store: &StateStore, format: ListFormat, quiet: bool) -> Result<()> {
    let mut states = Vec::new();
    for id in store.list()? {
        match backends::load(store, &id) {
            Ok((st, _)) => states.push(st),
            // A container deleted meanwhile is simply not listed; one whose backend cannot
            // tell whether it is paused is listed as its state file has it.
            Err(e) => match store.load(&id) {
                Ok(st) => {
                    ::log::warn!("{id}: {e:#}");
                    states.push(st);
                }
                Err(_) => continue,
            },
        }
    }
    if quiet {
        states.iter().for_each(|s| println!("{}", s.id));
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            let docs: Vec<_> = states.iter().map(|s| s.oci_json()).collect();
            println!("{}", serde_json::to_string_pretty(&docs)?);
        }
        ListFormat::Table => {
            println!(
                "{:<20} {:>8} {:<8} {:<9} {:<30} BUNDLE",
                "ID", "PID", "STATUS", "BACKEND", "CREATED"
            );
            for s in &states {
                let pid = if s.status == isobox_common::Status::Stopped {
                    0
                } else {
                    s.pid
                };
                println!(
                    "{:<20} {:>8} {:<8} {:<9} {:<30} {}",
                    s.id,
                    pid,
                    s.status,
                    s.backend,
                    s.created,
                    s.bundle.display()
                );
            }
        }
    }
    Ok(())
}

pub fn ps(store: &StateStore, id: &str, format: ListFormat) -> Result<()> {
    let (st, backend) = backends::load(store, id)?;
    // An incomplete state has no container process of its own yet.
    let pids = if st.status == isobox_common::Status::Stopped || st.is_incomplete() {
        Vec::new()
    } else {
        backend.processes(&st)?
    };
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string(&pids)?),
        ListFormat::Table => {
            println!("{:>8} CMD", "PID");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| {
                        String::from_utf8_lossy(&b)
                            .replace('\0', " ")
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_default();
                println!("{pid:>8} {cmd}");
            }
        }
    }
    Ok(())
}
