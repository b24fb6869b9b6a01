//! Drive the container backend directly: create, start, wait, delete one bundle.
//!
//! `cargo run -p isobox-container --example drive -- BUNDLE [ID]` (as root). Prints the exit
//! status and how long each step took.

use std::path::PathBuf;
use std::time::Instant;

use isobox_common::{proc, Backend, BackendKind, Bundle, CreateOptions, State, Status};
use isobox_container::ContainerBackend;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bundle_dir = PathBuf::from(args.next().ok_or("usage: drive BUNDLE [ID]")?);
    let id = args
        .next()
        .unwrap_or_else(|| format!("drive-{}", std::process::id()));
    let t0 = Instant::now();
    let bundle = Bundle::load(&bundle_dir)?;
    let state_dir = std::env::temp_dir().join(format!("isobox-drive-{id}"));
    std::fs::create_dir_all(&state_dir)?;
    let backend = ContainerBackend::new();
    let opts = CreateOptions {
        id: id.clone(),
        bundle: bundle.clone(),
        state_dir: state_dir.clone(),
        foreground: true,
        console_socket: None,
        microvm: Default::default(),
    };
    let created = match backend.create(&opts) {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&state_dir);
            return Err(e.into());
        }
    };
    let t_create = t0.elapsed();
    let mut state = State {
        oci_version: isobox_common::OCI_VERSION.into(),
        id: id.clone(),
        status: Status::Created,
        pid: created.pid,
        bundle: bundle.dir.clone(),
        annotations: Default::default(),
        backend: BackendKind::Container,
        pid_start_time: proc::start_time(created.pid).unwrap_or(0),
        created: String::new(),
        started: false,
        state_dir: state_dir.clone(),
        data: created.data,
        creator: None,
    };
    println!("created pid {} in {:?}", created.pid, t_create);
    backend.start(&state)?;
    state.started = true;
    let t_start = t0.elapsed();
    let status = waitpid(Pid::from_raw(created.pid), None)?;
    let t_exit = t0.elapsed();
    state.status = Status::Stopped;
    backend.delete(&state)?;
    let _ = std::fs::remove_dir_all(&state_dir);
    println!(
        "exit {:?}; create {:?}, start {:?}, exit {:?}, delete {:?}",
        match status {
            WaitStatus::Exited(_, c) => format!("code {c}"),
            WaitStatus::Signaled(_, s, _) => format!("signal {s}"),
            other => format!("{other:?}"),
        },
        t_create,
        t_start - t_create,
        t_exit - t_start,
        t0.elapsed() - t_exit
    );
    Ok(())
}
