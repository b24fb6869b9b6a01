//! One function per verb.

mod events;
pub(crate) mod exec;
mod features;
mod host;
pub(crate) mod lifecycle;
mod pause;
mod query;
mod spec;
mod update;

use anyhow::Result;
use isobox_common::StateStore;

use crate::cli::{Cli, Command};

/// Run the parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        anyhow::bail!(
            "--systemd-cgroup: systemd cgroup management is not supported; use cgroupfs paths"
        );
    }
    let store = StateStore::new(&cli.root);
    match cli.command {
        Command::Spec { bundle } => spec::write_default(&bundle).map(|_| 0),
        Command::Create(args) => lifecycle::create(&store, &args, false).map(|_| 0),
        Command::Start { id } => lifecycle::start(&store, &id).map(|_| 0),
        Command::Run { create, detach } => lifecycle::run(&store, &create, detach),
        Command::Exec(args) => exec::exec(&store, &args),
        Command::State { id } => query::state(&store, &id).map(|_| 0),
        Command::Kill { all, id, signal } => lifecycle::kill(&store, &id, &signal, all).map(|_| 0),
        Command::Pause { id } => pause::pause(&store, &id).map(|_| 0),
        Command::Resume { id } => pause::resume(&store, &id).map(|_| 0),
        Command::Update(args) => update::update(&store, &args).map(|_| 0),
        Command::Events {
            stats,
            interval,
            id,
        } => events::events(&store, &id, stats, interval).map(|_| 0),
        Command::Delete { force, id } => lifecycle::delete(&store, &id, force).map(|_| 0),
        Command::List { format, quiet } => query::list(&store, format, quiet).map(|_| 0),
        Command::Ps { format, id } => query::ps(&store, &id, format).map(|_| 0),
        Command::Features { backend } => features::print(backend.map(Into::into)).map(|_| 0),
        Command::Compare(args) => crate::compare::run(&args).map(|_| 0),
        Command::Check => host::check().map(|_| 0),
        Command::Kernel { kernel, fetch } => host::kernel(kernel.as_deref(), fetch).map(|_| 0),
        Command::VmHost { state_dir } => Ok(isobox_microvm::vm_host_main(&state_dir)),
    }
}
