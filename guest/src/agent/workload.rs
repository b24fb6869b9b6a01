//! Starting a session's process from an Exec request: environment, directory, credentials,
//! limits, and its stdio (pipes, or a new pseudo-terminal).

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use isobox_common::protocol::{ExecRequest, Rlimit};
use isobox_common::{caps, seccomp};

/// PATH when the workload's environment has none (runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Map an OCI rlimit name to its resource number.
pub fn rlimit_resource(kind: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match kind {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

/// Split `KEY=value` entries; entries without `=` are an error.
pub fn parse_env(env: &[String]) -> Result<Vec<(String, String)>, String> {
    env.iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("environment entry {e:?} is not KEY=value")),
        })
        .collect()
}

/// Find `program` the way runc does: a name with a slash is taken as is, else the first
/// executable regular file of that name in the workload's `PATH`.
pub fn resolve_program(program: &str, env: &[(String, String)]) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| format!("executable {program:?} not found in $PATH ({path})"))
}

/// argv/envp for execve, with the strings they point into.
struct ExecPtrs {
    _strings: (Vec<CString>, Vec<CString>),
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the pointers refer into the heap buffers of `_strings`, owned alongside them and
// never mutated; they are only read in the forked child.
unsafe impl Send for ExecPtrs {}
// SAFETY: as for Send: shared references only read the pointers.
unsafe impl Sync for ExecPtrs {}

impl ExecPtrs {
    fn new(args: Vec<CString>, env: Vec<CString>) -> Self {
        let ptrs = |v: &[CString]| {
            let mut p: Vec<*const libc::c_char> = v.iter().map(|s| s.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        ExecPtrs {
            argv: ptrs(&args),
            envp: ptrs(&env),
            _strings: (args, env),
        }
    }
}

fn cstring(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} {s:?} contains a NUL byte"))
}

/// Build the process's command: stdio piped (the caller replaces it for a terminal),
/// credentials and limits applied in the child, which then calls execve itself (no shell
/// fallback on ENOEXEC, unlike execvp).
pub fn command(req: &ExecRequest, cgroup: Option<RawFd>) -> Result<Command, String> {
    let program = req
        .args
        .first()
        .ok_or_else(|| "process.args is empty".to_string())?;
    let env = parse_env(&req.env)?;
    let path = resolve_program(program, &env)?;
    let c_path = cstring(&path.to_string_lossy(), "executable")?;
    let c_args: Vec<CString> = req
        .args
        .iter()
        .map(|a| cstring(a, "argument"))
        .collect::<Result<_, _>>()?;
    let c_env: Vec<CString> = req
        .env
        .iter()
        .map(|e| cstring(e, "environment entry"))
        .collect::<Result<_, _>>()?;
    // Pointer arrays built before fork: the child allocates nothing.
    let exec_ptrs = ExecPtrs::new(c_args, c_env);
    let mut limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = Vec::new();
    for Rlimit { kind, soft, hard } in &req.rlimits {
        let res = rlimit_resource(kind).ok_or_else(|| format!("unknown rlimit {kind:?}"))?;
        limits.push((
            res,
            libc::rlimit {
                rlim_cur: *soft,
                rlim_max: *hard,
            },
        ));
    }
    let mut cmd = Command::new(program);
    cmd.args(&req.args[1..])
        .env_clear()
        .envs(env)
        .current_dir(if req.cwd.is_empty() { "/" } else { &req.cwd })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (uid, gid, groups, umask) = (req.uid, req.gid, req.additional_gids.clone(), req.umask);
    let filter = req.seccomp.as_deref().map(seccomp::Program::from);
    let terminal = req.terminal.is_some();
    let caps = req
        .capabilities
        .as_deref()
        .map(|m| m.for_kernel(caps::last_cap()));
    let nnp = req.no_new_privileges;
    let ioprio = req.ioprio;
    let oom = req.oom_score_adj.map(|v| v.to_string());
    // SAFETY: the closure only makes async-signal-safe system calls on data prepared above.
    unsafe {
        cmd.pre_exec(move || {
            // A new session so a Signal to the process group reaches what the workload forks.
            libc::setsid();
            // Into the workload's cgroup, before anything it runs can fork.
            if let Some(fd) = cgroup {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Its terminal (already its stdin) becomes the new session's controlling one.
            if terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Default dispositions for every signal, whatever was ignored before. The raw
            // syscall (kernel struct sigaction: handler, flags, restorer, mask, all zero =
            // SIG_DFL) also reaches the two real-time signals glibc reserves for itself.
            let dfl = [0u64; 4];
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0usize, 8usize);
                }
            }
            // And no signal blocked: the agent blocks SIGCHLD for its signalfd, and a shell
            // that inherited that would wait for its children forever.
            let none = [0u64; 1];
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                none.as_ptr(),
                0usize,
                8usize,
            );
            for (res, lim) in &limits {
                if libc::setrlimit(*res, lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            // Both before the uid and the capabilities change: the real-time I/O class needs
            // CAP_SYS_ADMIN, a lower OOM score CAP_SYS_RESOURCE (the container's order).
            if let Some(v) = ioprio {
                isobox_common::ioprio::apply(v)?;
            }
            if let Some(adj) = &oom {
                let fd = libc::open(
                    c"/proc/self/oom_score_adj".as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                );
                if fd < 0 || libc::write(fd, adj.as_ptr().cast(), adj.len()) != adj.len() as isize {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            // The order of the container's processes (runc's): without noNewPrivileges the
            // filter goes on while the agent still holds CAP_SYS_ADMIN, and the rest of the
            // setup runs under it; with it, last, after no_new_privs.
            if !nnp {
                if let Some(prog) = &filter {
                    seccomp::load(prog).map_err(|(_, e)| e)?;
                }
            }
            // The bounding set needs CAP_SETPCAP: dropped before the uid changes, which
            // keeps the permitted set (PR_SET_KEEPCAPS) for capset to narrow after it.
            // (The agent is single-threaded: the error paths may allocate.)
            if let Some(m) = &caps {
                caps::drop_bounding(m).map_err(std::io::Error::other)?;
                if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(m) = &caps {
                libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
                caps::apply(m).map_err(std::io::Error::other)?;
            }
            if nnp {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(prog) = &filter {
                    seccomp::load(prog).map_err(|(_, e)| e)?;
                }
            }
            // Borrow the whole struct so the closure captures it, not its raw-pointer fields.
            let ptrs = &exec_ptrs;
            libc::execve(c_path.as_ptr(), ptrs.argv.as_ptr(), ptrs.envp.as_ptr());
            Err(std::io::Error::last_os_error())
        });
    }
    Ok(cmd)
}

/// A started process: with pipes its stdin, stdout and stderr are in `child`; with a
/// terminal they are all the pty, whose master is `master`.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub master: Option<OwnedFd>,
}

/// Set the hostname (if any) and spawn the process.
pub fn spawn(req: &ExecRequest, cgroup: Option<RawFd>) -> Result<Spawned, String> {
    if let Some(name) = req.hostname.as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(name).map_err(|e| format!("sethostname {name:?}: {e}"))?;
    }
    let mut cmd = command(req, cgroup)?;
    let master = match req.terminal {
        None => None,
        Some(size) => {
            let pty = isobox_common::pty::open()
                .map_err(|e| format!("opening a pseudo-terminal: {e}"))?;
            isobox_common::pty::set_window_size(std::os::fd::AsFd::as_fd(&pty.master), size)
                .map_err(|e| format!("setting the terminal's size: {e}"))?;
            let dup = |fd: &OwnedFd| {
                fd.try_clone()
                    .map_err(|e| format!("duplicating the terminal: {e}"))
            };
            cmd.stdin(dup(&pty.slave)?)
                .stdout(dup(&pty.slave)?)
                .stderr(pty.slave);
            Some(pty.master)
        }
    };
    let child = cmd.spawn().map_err(|e| {
        format!(
            "starting {:?} (cwd {:?}, uid {}, gid {}): {e}",
            req.args[0], req.cwd, req.uid, req.gid
        )
    })?;
    // The slave's copies went with `cmd`: the master reads EOF (EIO) once the process and
    // its children have closed it.
    drop(cmd);
    Ok(Spawned { child, master })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn req(args: &[&str]) -> ExecRequest {
        ExecRequest {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=hi there".into()],
            cwd: "/".into(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            additional_gids: vec![],
            umask: Some(0o027),
            rlimits: vec![Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                soft: 77,
                hard: 77,
            }],
            hostname: None,
            seccomp: None,
            terminal: None,
            capabilities: None,
            no_new_privileges: false,
            ioprio: None,
            oom_score_adj: None,
            limits: None,
        }
    }

    #[test]
    fn env_cwd_umask_and_rlimits_reach_the_child() {
        if !nix::unistd::getuid().is_root() {
            isobox_common::skip::skip("setgroups needs root");
            return;
        }
        let mut r = req(&["sh", "-c", "echo $GREETING; pwd; umask; ulimit -n"]);
        r.cwd = "/tmp".into();
        let mut child = spawn(&r, None).unwrap().child;
        drop(child.stdin.take());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(out, "hi there\n/tmp\n0027\n77\n");
    }

    #[test]
    fn workload_starts_with_default_signal_dispositions_and_mask() {
        if !nix::unistd::getuid().is_root() {
            isobox_common::skip::skip("setgroups needs root");
            return;
        }
        let r = req(&["sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"]);
        let mut child = spawn(&r, None).unwrap().child;
        drop(child.stdin.take());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            out,
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
        );
    }

    #[test]
    fn seccomp_filter_confines_only_the_workload() {
        if !nix::unistd::getuid().is_root() {
            isobox_common::skip::skip("setgroups needs root");
            return;
        }
        let profile = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }))
        .unwrap();
        let prog = seccomp::compile(&profile).unwrap();
        let mode = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find(|l| l.starts_with("Seccomp:"))
                .map(String::from)
        };
        let before = mode();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        let script = format!(
            "grep ^Seccomp: /proc/self/status; mkdir {} 2>&1; echo rc=$?",
            target.display()
        );
        let mut r = req(&["sh", "-c", &script]);
        r.seccomp = Some(Box::new((&prog).into()));
        let mut child = spawn(&r, None).unwrap().child;
        drop(child.stdin.take());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert!(out.starts_with("Seccomp:\t2\n"), "{out}");
        assert!(out.contains("Operation not permitted"), "{out}");
        assert!(out.ends_with("rc=1\n"), "{out}");
        assert!(!target.exists());
        // The agent itself stays as it was.
        assert_eq!(mode(), before);
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(command(&req(&[]), None)
            .unwrap_err()
            .contains("args is empty"));
        let mut r = req(&["true"]);
        r.env.push("NOEQUALS".into());
        assert!(command(&r, None).unwrap_err().contains("NOEQUALS"));
        let mut r = req(&["true"]);
        r.rlimits[0].kind = "RLIMIT_BOGUS".into();
        assert!(command(&r, None).unwrap_err().contains("RLIMIT_BOGUS"));
        assert!(command(&req(&["no-such-program-here"]), None)
            .unwrap_err()
            .contains("not found in $PATH"));
        if nix::unistd::getuid().is_root() {
            let err = spawn(&req(&["/no/such/binary"]), None).unwrap_err();
            assert!(err.contains("/no/such/binary"), "{err}");
            // A file of NULs is not run through a shell (execvp would do that).
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("zeros");
            std::fs::write(&f, [0u8; 32]).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
            let err = spawn(&req(&[f.to_str().unwrap()]), None).unwrap_err();
            assert!(err.contains("Exec format error"), "{err}");
        }
    }
}
