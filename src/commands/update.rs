//! update: change a live container's resource limits, from runc's flags or an OCI
//! linux.resources document.

use std::io::Read;

use anyhow::{bail, Context, Result};
use isobox_common::{StateStore, Status};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::backends;
use crate::cli::UpdateArgs;

pub fn update(store: &StateStore, args: &UpdateArgs) -> Result<()> {
    let (resources, source) = match &args.resources {
        Some(path) => {
            if has_limit_flags(args) {
                bail!(
                    "--resources: the limit flags cannot be given with it (runc would ignore them)"
                );
            }
            (
                read_resources(path)?,
                format!("--resources {}", path.display()),
            )
        }
        None => (from_flags(args)?, "the command line".to_string()),
    };
    let id = &args.id;
    let _lock = store.lock(id)?;
    let (mut state, backend) = backends::load(store, id)?;
    match state.status {
        Status::Created | Status::Running | Status::Paused => {}
        other => bail!("container {id:?} is {other}: there are no limits to update"),
    }
    backend
        .update(&mut state, &resources)
        .with_context(|| format!("updating container {id:?} from {source}"))?;
    store.save(&state)?;
    Ok(())
}

fn read_resources(path: &std::path::Path) -> Result<LinuxResources> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("--resources -: reading standard input")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("--resources {}", path.display()))?;
    }
    let name = if path.as_os_str() == "-" {
        std::path::Path::new("standard input")
    } else {
        path
    };
    Ok(isobox_common::bundle::parse_resources(name, &text)?)
}

fn has_limit_flags(a: &UpdateArgs) -> bool {
    a.blkio_weight.is_some()
        || a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_share.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
        || a.memory.is_some()
        || a.memory_reservation.is_some()
        || a.memory_swap.is_some()
        || a.pids_limit.is_some()
        || a.kernel_memory.is_some()
        || a.kernel_memory_tcp.is_some()
        || a.l3_cache_schema.is_some()
        || a.mem_bw_schema.is_some()
}

/// The flags as linux.resources: each flag given sets its field, the others stay absent.
fn from_flags(a: &UpdateArgs) -> Result<LinuxResources> {
    for (flag, given, why) in [
        (
            "--kernel-memory",
            a.kernel_memory.is_some(),
            "kernel memory limits are obsolete (Linux 5.4) and not supported",
        ),
        (
            "--kernel-memory-tcp",
            a.kernel_memory_tcp.is_some(),
            "kernel TCP memory limits are not supported by update",
        ),
        (
            "--l3-cache-schema",
            a.l3_cache_schema.is_some(),
            "Intel RDT is not supported",
        ),
        (
            "--mem-bw-schema",
            a.mem_bw_schema.is_some(),
            "Intel RDT is not supported",
        ),
    ] {
        if given {
            bail!("{flag}: {why}");
        }
    }
    let mut memory = LinuxMemory::default();
    memory.set_limit(a.memory);
    memory.set_reservation(a.memory_reservation);
    memory.set_swap(a.memory_swap);
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(a.cpu_share);
    cpu.set_quota(a.cpu_quota);
    cpu.set_period(a.cpu_period);
    cpu.set_realtime_period(a.cpu_rt_period);
    cpu.set_realtime_runtime(a.cpu_rt_runtime);
    cpu.set_cpus(a.cpuset_cpus.clone());
    cpu.set_mems(a.cpuset_mems.clone());
    let mut block_io = LinuxBlockIo::default();
    block_io.set_weight(a.blkio_weight);
    let mut r = LinuxResources::default();
    if memory != LinuxMemory::default() {
        r.set_memory(Some(memory));
    }
    if cpu != LinuxCpu::default() {
        r.set_cpu(Some(cpu));
    }
    if block_io != LinuxBlockIo::default() {
        r.set_block_io(Some(block_io));
    }
    if let Some(limit) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        r.set_pids(Some(pids));
    }
    Ok(r)
}
