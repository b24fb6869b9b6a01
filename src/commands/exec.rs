//! `exec`: another process in a running container, as runc 1.1 takes it. The process is the
//! `--process` file's, or the container's own (from its config.json) with the command and
//! the flags applied.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use isobox_common::bundle::{parse_process, parse_spec, validate_process};
use isobox_common::{ExecOptions, StateStore, Status};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process};

use crate::cli::ExecArgs;
use crate::commands::lifecycle::write_pid_file;
use crate::relay::OwnConsole;
use crate::{backends, log, wait};

pub fn exec(store: &StateStore, args: &ExecArgs) -> Result<i32> {
    let lock = store.lock(&args.id)?;
    let (state, backend) = backends::load(store, &args.id)?;
    match state.status {
        Status::Created | Status::Running => {}
        Status::Paused => bail!(
            "container {:?}: cannot exec in a paused container (resume it first)",
            args.id
        ),
        other => bail!(
            "container {:?}: cannot exec in a {other} container",
            args.id
        ),
    }
    let (process, process_file) = process(args, &state.bundle)?;
    let terminal = process.terminal().unwrap_or(false);
    check_console(args.detach, terminal, args.console_socket.as_deref())?;
    log::debug(&format!(
        "exec in {}: {:?}",
        args.id,
        process.args().as_deref().unwrap_or_default()
    ));
    // A foreground terminal is relayed here: its master comes to a socket of our own.
    let own = (terminal && !args.detach)
        .then(OwnConsole::new)
        .transpose()?;
    let opts = ExecOptions {
        process,
        process_file,
        detach: args.detach,
        console_socket: own
            .as_ref()
            .map(OwnConsole::path)
            .or_else(|| args.console_socket.clone()),
    };
    let mut execed = backend.exec(&state, &opts)?;
    let console = match (execed.console.take(), &own) {
        (Some(master), _) => Some(master),
        (None, Some(own)) => own.receive()?,
        (None, None) => None,
    };
    // Other verbs may run while the process does.
    drop(lock);
    if let Some(path) = &args.pid_file {
        if let Err(e) = write_pid_file(path, execed.pid) {
            let _ = execed.session.signal(libc::SIGKILL);
            return Err(e);
        }
    }
    if args.detach {
        return Ok(0);
    }
    wait::wait_session(&mut *execed.session, console)
}

/// runc's rules: a terminal of a detached process goes to a console socket, and a console
/// socket is only for a detached process's terminal.
pub fn check_console(detach: bool, terminal: bool, socket: Option<&Path>) -> Result<()> {
    match (detach, terminal, socket) {
        (true, true, None) => bail!(
            "process.terminal: cannot allocate a terminal for a detached process without --console-socket"
        ),
        (_, false, Some(s)) => bail!(
            "--console-socket {}: only for a process with a terminal (process.terminal or --tty)",
            s.display()
        ),
        (false, true, Some(s)) => bail!(
            "--console-socket {}: only with --detach (in the foreground isobox relays the terminal itself)",
            s.display()
        ),
        _ => Ok(()),
    }
}

/// The process to run and the file its fields come from.
fn process(args: &ExecArgs, bundle: &Path) -> Result<(Process, PathBuf)> {
    let (mut p, file, prefix) = match &args.process {
        Some(path) => {
            if !args.command.is_empty() {
                bail!(
                    "--process {}: give either a process file or a command, not both",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--process {}", path.display()))?;
            (parse_process(path, &text)?, path.clone(), "")
        }
        None => {
            if args.command.is_empty() {
                bail!("exec: no command given (and no --process file)");
            }
            let config = bundle.join("config.json");
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let spec = parse_spec(&config, &text)?;
            let Some(mut p) = spec.process().clone() else {
                bail!(
                    "{}: process: missing, so there is nothing to run a command like; use --process",
                    config.display()
                );
            };
            p.set_args(Some(args.command.clone()));
            // runc's: a terminal only with --tty.
            p.set_terminal(Some(false));
            (p, config, "process.")
        }
    };
    apply_flags(&mut p, args)?;
    validate_process(&p, &file, prefix)?;
    Ok((p, file))
}

/// The command-line overrides, as runc applies them.
fn apply_flags(p: &mut Process, args: &ExecArgs) -> Result<()> {
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(label) = &args.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    if let Some(profile) = &args.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if args.tty {
        p.set_terminal(Some(true));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !args.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &args.env {
            let Some((name, _)) = kv.split_once('=') else {
                bail!("--env {kv:?}: not NAME=VALUE");
            };
            // Last one wins, as runc's environment has each name once.
            env.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(name));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if !args.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_else(empty_caps);
        for name in &args.caps {
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(name.clone()))
                    .map_err(|_| anyhow::anyhow!("--cap {name:?}: not a capability name"))?;
            let add = |set: &Option<Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_inheritable(add(caps.inheritable()));
            caps.set_permitted(add(caps.permitted()));
            caps.set_ambient(add(caps.ambient()));
        }
        p.set_capabilities(Some(caps));
    }
    let mut user = p.user().clone();
    if let Some(spec) = &args.user {
        let (uid, gid) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec.as_str(), None),
        };
        let number = |v: &str| -> Result<u32> {
            v.parse()
                .map_err(|_| anyhow::anyhow!("--user {spec:?}: not UID[:GID] (numbers)"))
        };
        user.set_uid(number(uid)?);
        if let Some(g) = gid {
            user.set_gid(number(g)?);
        }
    }
    if !args.additional_gids.is_empty() {
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&args.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);
    Ok(())
}

fn empty_caps() -> LinuxCapabilities {
    serde_json::from_str("{}").expect("an empty capability object parses")
}
