//! Backend-level lifecycle tests on real namespaces and cgroups (root only; skipped
//! otherwise). They run without the libtest harness because `create` must be called from a
//! single-threaded process.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use isobox_common::{proc, Backend, BackendKind, Bundle, CreateOptions, State, Status};
use isobox_container::{BackendData, ContainerBackend};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

const BUSYBOX: &str = "/bin/busybox";

struct Fixture {
    dir: tempfile::TempDir,
    config: Value,
}

impl Fixture {
    fn sh(script: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("isobox-ctr-")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("rootfs/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for app in [
            "sh", "echo", "cat", "id", "hostname", "sleep", "touch", "ls", "grep", "mount",
            "uname", "ionice",
        ] {
            symlink("busybox", bin.join(app)).unwrap();
        }
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();
        let config = json!({
            "ociVersion": "1.2.0",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", script],
                "env": ["PATH=/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"],
                    "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
                },
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"},
            "hostname": "ctr-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/out", "type": "bind", "source": out.to_str().unwrap(), "options": ["rbind", "rw"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"]
            }
        });
        let f = Fixture { dir, config };
        f.write();
        f
    }

    fn write(&self) {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    fn out(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join("out").join(name)).unwrap_or_default()
    }
}

struct Running {
    state: State,
    state_dir: tempfile::TempDir,
}

fn options(f: &Fixture, id: &str, state_dir: &Path) -> CreateOptions {
    CreateOptions {
        id: id.into(),
        bundle: Bundle::load(f.dir.path()).unwrap(),
        state_dir: state_dir.to_path_buf(),
        foreground: true,
        console_socket: None,
        microvm: Default::default(),
    }
}

fn create(f: &Fixture, id: &str) -> Result<Running, (isobox_common::Error, tempfile::TempDir)> {
    let state_dir = tempfile::tempdir().unwrap();
    let opts = options(f, id, state_dir.path());
    match ContainerBackend.create(&opts) {
        Ok(c) => Ok(Running {
            state: State {
                oci_version: isobox_common::OCI_VERSION.into(),
                id: id.into(),
                status: Status::Created,
                pid: c.pid,
                bundle: opts.bundle.dir.clone(),
                annotations: Default::default(),
                backend: BackendKind::Container,
                pid_start_time: proc::start_time(c.pid).unwrap(),
                created: String::new(),
                started: false,
                state_dir: state_dir.path().to_path_buf(),
                data: c.data,
                creator: None,
            },
            state_dir,
        }),
        Err(e) => Err((e, state_dir)),
    }
}

/// Start, wait for the exit code, delete; checks the cgroup is gone afterwards.
fn run_to_exit(f: &Fixture, id: &str) -> i32 {
    let mut r = create(f, id).map_err(|(e, _)| e).expect("create");
    ContainerBackend.start(&r.state).expect("start");
    r.state.started = true;
    let code = match waitpid(Pid::from_raw(r.state.pid), None).unwrap() {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        other => panic!("unexpected {other:?}"),
    };
    delete(&mut r);
    code
}

fn delete(r: &mut Running) {
    r.state.status = Status::Stopped;
    ContainerBackend.delete(&r.state).expect("delete");
    let data: BackendData = serde_json::from_value(r.state.data.clone()).unwrap();
    for p in &data.cgroup.paths {
        assert!(!p.exists(), "cgroup {} left behind", p.display());
    }
    let _ = &r.state_dir;
}

fn no_children_left() {
    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        Err(nix::errno::Errno::ECHILD) => {}
        other => panic!("a child process was left behind: {other:?}"),
    }
}

/// No directory named after `id` under the host's cgroup hierarchies.
fn no_cgroup_named(id: &str) {
    fn walk(dir: &Path, id: &str, depth: usize) {
        if depth == 0 {
            return;
        }
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && !p.is_symlink() {
                assert_ne!(
                    e.file_name().to_str(),
                    Some(id),
                    "cgroup {} left behind",
                    p.display()
                );
                walk(&p, id, depth - 1);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), id, 4);
}

fn test_exit_code_and_isolation() {
    let f = Fixture::sh(
        "hostname > /out/host; id -u > /out/uid; echo $$ > /out/pid; ls /dev > /out/dev; exit 3",
    );
    assert_eq!(run_to_exit(&f, "ctr-exit"), 3);
    assert_eq!(f.out("host").trim(), "ctr-test");
    assert_eq!(
        f.out("pid").trim(),
        "1",
        "the workload is pid 1 of its pid namespace"
    );
    let dev = f.out("dev");
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "stdin", "fd",
    ] {
        assert!(dev.lines().any(|l| l == d), "/dev/{d} missing: {dev}");
    }
    no_children_left();
}

fn test_user_and_capabilities() {
    let mut f = Fixture::sh("id -u > /out/uid; id -G > /out/groups; grep -E 'Cap(Eff|Bnd|Amb)|NoNewPrivs' /proc/self/status > /out/caps");
    f.config["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [1002]});
    // A non-root user keeps only ambient capabilities across execve.
    f.config["process"]["capabilities"]["inheritable"] = json!(["CAP_KILL"]);
    f.config["process"]["capabilities"]["ambient"] = json!(["CAP_KILL"]);
    f.write();
    assert_eq!(run_to_exit(&f, "ctr-user"), 0);
    assert_eq!(f.out("uid").trim(), "1000");
    assert_eq!(
        f.out("groups").split_whitespace().collect::<Vec<_>>(),
        ["1001", "1002"]
    );
    let caps = f.out("caps");
    // Bounding: KILL (5), SETGID (6), SETUID (7), NET_BIND_SERVICE (10); after execve as uid
    // 1000 only the ambient KILL is left effective.
    assert!(caps.contains("CapEff:\t0000000000000020"), "{caps}");
    assert!(caps.contains("CapAmb:\t0000000000000020"), "{caps}");
    assert!(caps.contains("CapBnd:\t00000000000004e0"), "{caps}");
    assert!(caps.contains("NoNewPrivs:\t1"), "{caps}");
}

fn test_user_namespace() {
    let mut f = Fixture::sh("cat /proc/self/uid_map > /out/map; id -u > /out/uid");
    f.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    f.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    f.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    f.write();
    let rootfs = f.dir.path().join("rootfs");
    nix::unistd::chown(
        &rootfs,
        Some(nix::unistd::Uid::from_raw(100000)),
        Some(nix::unistd::Gid::from_raw(100000)),
    )
    .unwrap();
    assert_eq!(run_to_exit(&f, "ctr-userns"), 0);
    assert_eq!(
        f.out("map").split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(f.out("uid").trim(), "0");
}

fn test_readonly_root_and_masks() {
    let mut f = Fixture::sh("touch /x 2>/dev/null && echo writable > /out/root; cat /proc/version | wc -c > /out/version; ls /proc/sys/fs | wc -l > /out/fs; (echo 1 > /proc/sys/kernel/ns_last_pid && echo rw > /out/sys) 2>/dev/null; exit 0");
    f.config["root"]["readonly"] = json!(true);
    f.config["linux"]["maskedPaths"] =
        json!(["/proc/version", "/proc/sys/fs", "/proc/nonexistent"]);
    f.write();
    symlink("busybox", f.dir.path().join("rootfs/bin/wc")).unwrap();
    assert_eq!(run_to_exit(&f, "ctr-ro"), 0);
    assert_eq!(f.out("root"), "", "the root is read-only");
    assert_eq!(
        f.out("version").trim(),
        "0",
        "/proc/version is masked by /dev/null"
    );
    assert_eq!(
        f.out("fs").trim(),
        "0",
        "/proc/sys/fs is masked by an empty tmpfs"
    );
    assert_eq!(f.out("sys"), "", "/proc/sys is read-only");
}

fn test_hooks_in_order() {
    let mut f = Fixture::sh("echo workload >> /out/log");
    let out = f.dir.path().join("out");
    let host_hook = |kind: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{kind}.json; echo {kind} >> {}/log", out.display(), out.display())]});
    f.config["hooks"] = json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /out/log"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")]
    });
    f.write();
    let mut r = create(&f, "ctr-hooks").map_err(|(e, _)| e).expect("create");
    ContainerBackend.start(&r.state).expect("start");
    waitpid(Pid::from_raw(r.state.pid), None).unwrap();
    delete(&mut r);
    let log = f.out("log");
    let order: Vec<&str> = log.lines().collect();
    // poststart runs after start returns, concurrently with the workload.
    let mut expected = vec![
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
    ];
    assert_eq!(&order[..4], &expected[..], "{log}");
    expected = vec!["poststart", "workload"];
    let mut mid = order[4..6].to_vec();
    mid.sort();
    assert_eq!(mid, expected, "{log}");
    assert_eq!(order[6], "poststop", "{log}");
    let st: Value = serde_json::from_str(&f.out("createRuntime.json")).unwrap();
    assert_eq!(st["id"], "ctr-hooks");
    assert_eq!(st["pid"], r.state.pid);
    assert_eq!(st["status"], "creating");
}

fn test_kill_processes_and_start_twice() {
    let f = Fixture::sh("sleep 100");
    let mut r = create(&f, "ctr-kill").map_err(|(e, _)| e).expect("create");
    ContainerBackend.start(&r.state).expect("start");
    r.state.started = true;
    r.state.refresh();
    assert_eq!(r.state.status, Status::Running);
    let err = ContainerBackend.start(&r.state).unwrap_err();
    assert!(err.to_string().contains("running"), "{err}");
    let pids = ContainerBackend.processes(&r.state).unwrap();
    assert!(pids.contains(&r.state.pid), "{pids:?}");
    ContainerBackend
        .kill(&r.state, libc::SIGKILL, false)
        .unwrap();
    assert!(matches!(
        waitpid(Pid::from_raw(r.state.pid), None).unwrap(),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    delete(&mut r);
}

fn test_bad_mount_leaves_nothing() {
    let mut f = Fixture::sh("true");
    f.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/bad", "type": "nosuchfs", "source": "none"}));
    f.write();
    let (err, state_dir) = match create(&f, "ctr-badmount") {
        Ok(_) => panic!("a mount of an unknown filesystem type must fail"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.contains("mounts[3]") && msg.contains("/bad"), "{msg}");
    assert!(
        !state_dir.path().join("exec.fifo").exists(),
        "fifo left behind"
    );
    no_children_left();
    no_cgroup_named("ctr-badmount");
}

fn test_bad_exec_exits_127() {
    let f = Fixture::sh("true");
    // Executable bits but not a program: execve fails with ENOEXEC after start.
    let bad = f.dir.path().join("rootfs/bin/bad");
    fs::write(&bad, b"\x01\x02garbage").unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o755)).unwrap();
    let mut f = f;
    f.config["process"]["args"] = json!(["bad"]);
    f.write();
    // The message goes to the container's stderr: capture ours for the duration.
    let log = f.dir.path().join("stderr");
    let file = fs::File::create(&log).unwrap();
    let saved = nix::unistd::dup(std::io::stderr()).unwrap();
    nix::unistd::dup2_stderr(&file).unwrap();
    let code = run_to_exit(&f, "ctr-badexec");
    nix::unistd::dup2_stderr(&saved).unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(code, 127, "{text}");
    assert!(
        text.contains("\"bad\"") && text.contains("PATH=/bin"),
        "{text}"
    );
}

fn test_resource_error_names_config() {
    let mut f = Fixture::sh("true");
    f.config["linux"]["resources"] = json!({"cpu": {"cpus": "4096"}});
    f.write();
    match create(&f, "ctr-res") {
        Ok(mut r) => {
            // A host that has the CPU accepts it; nothing to check then.
            let _ = ContainerBackend.kill(&r.state, libc::SIGKILL, false);
            let _ = waitpid(Pid::from_raw(r.state.pid), None);
            delete(&mut r);
        }
        Err((e, _)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("config.json") && msg.contains("linux.resources.cpu"),
                "{msg}"
            );
        }
    }
    no_children_left();
    no_cgroup_named("ctr-res");
}

fn flock(file: &fs::File, flags: i32) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open file.
    unsafe { libc::flock(file.as_raw_fd(), flags) == 0 }
}

fn test_init_does_not_hold_callers_descriptors() {
    let f = Fixture::sh("true");
    // Like the CLI: hold the state lock around create, then let it go.
    let lock_path = f.dir.path().join("lock");
    let lock = fs::File::create(&lock_path).unwrap();
    assert!(flock(&lock, libc::LOCK_EX));
    let mut r = create(&f, "ctr-fds").map_err(|(e, _)| e).expect("create");
    drop(lock);
    let other = fs::File::open(&lock_path).unwrap();
    assert!(
        flock(&other, libc::LOCK_EX | libc::LOCK_NB),
        "the created init still holds the caller's lock"
    );
    let fds: Vec<String> = fs::read_dir(format!("/proc/{}/fd", r.state.pid))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(fds.len(), 4, "stdio and the exec fifo only: {fds:?}");
    ContainerBackend.start(&r.state).expect("start");
    waitpid(Pid::from_raw(r.state.pid), None).unwrap();
    delete(&mut r);
}

fn test_join_namespaces_by_path() {
    let first = Fixture::sh("sleep 100");
    let mut a = create(&first, "ctr-join-a")
        .map_err(|(e, _)| e)
        .expect("create a");
    ContainerBackend.start(&a.state).expect("start a");
    let mut f = Fixture::sh("hostname > /out/host; echo $$ > /out/pid");
    let ns = |t: &str, n: &str| json!({"type": t, "path": format!("/proc/{}/ns/{n}", a.state.pid)});
    f.config["linux"]["namespaces"] =
        json!([ns("uts", "uts"), ns("pid", "pid"), {"type": "mount"}]);
    f.config.as_object_mut().unwrap().remove("hostname");
    f.write();
    let code = run_to_exit(&f, "ctr-join-b");
    ContainerBackend
        .kill(&a.state, libc::SIGKILL, false)
        .unwrap();
    waitpid(Pid::from_raw(a.state.pid), None).unwrap();
    delete(&mut a);
    assert_eq!(code, 0);
    assert_eq!(
        f.out("host").trim(),
        "ctr-test",
        "joined the first container's uts namespace"
    );
    let pid: i32 = f.out("pid").trim().parse().unwrap();
    assert!(
        pid > 1,
        "joined the first container's pid namespace (pid {pid})"
    );
}

fn test_process_settings() {
    let mut f = Fixture::sh(
        "ulimit -n > /out/nofile; umask > /out/umask; pwd > /out/cwd; echo \"$HOME $GREETING\" > /out/env; \
         cat /proc/sys/net/ipv4/ip_forward > /out/sysctl; cat /proc/self/cgroup > /out/cgroup; uname -m > /out/arch; ionice > /out/ionice",
    );
    f.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]);
    f.config["process"]["user"]["umask"] = json!(0o027);
    f.config["process"]["cwd"] = json!("/out");
    f.config["process"]["env"] = json!(["PATH=/bin", "GREETING=hi"]);
    f.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    f.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    f.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    f.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    f.write();
    assert_eq!(run_to_exit(&f, "ctr-proc"), 0);
    assert_eq!(f.out("nofile").trim(), "321");
    assert_eq!(f.out("umask").trim(), "0027");
    assert_eq!(f.out("cwd").trim(), "/out");
    assert_eq!(
        f.out("env").trim(),
        "/ hi",
        "HOME defaults to / without /etc/passwd"
    );
    assert_eq!(
        f.out("sysctl").trim(),
        "1",
        "sysctl written in the container's network namespace"
    );
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(f.out("arch").trim(), "i686", "linux.personality LINUX32");
    }
    assert_eq!(f.out("ionice").trim(), "best-effort: prio 6");
    let cgroup = f.out("cgroup");
    assert!(
        !cgroup.is_empty() && cgroup.lines().all(|l| l.ends_with(":/")),
        "the cgroup namespace is rooted at the container's cgroup: {cgroup}"
    );
}

fn test_seccomp_errno_rule() {
    // noNewPrivileges off: the init loads the filter while it still has CAP_SYS_ADMIN (the
    // workload's capabilities lack it).
    let mut f = Fixture::sh(
        "/bin/busybox mkdir /out/made 2> /out/err; echo $? > /out/code; \
         grep Seccomp: /proc/self/status > /out/status",
    );
    f.config["process"]["noNewPrivileges"] = json!(false);
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    f.write();
    assert_eq!(run_to_exit(&f, "ctr-seccomp-errno"), 0);
    assert!(
        f.out("err").contains("Operation not permitted"),
        "{}",
        f.out("err")
    );
    assert_eq!(f.out("code").trim(), "1");
    assert!(!f.dir.path().join("out/made").exists());
    let status = f.out("status");
    assert!(status.contains("Seccomp:\t2"), "{status}");
}

fn test_seccomp_default_deny() {
    let mut f = Fixture::sh(
        "echo hi > /out/hi; /bin/busybox mkdir /out/made 2> /out/err; \
         grep Seccomp: /proc/self/status > /out/status",
    );
    let allowed = [
        "access",
        "arch_prctl",
        "brk",
        "close",
        "close_range",
        "dup",
        "dup2",
        "dup3",
        "execve",
        "exit",
        "exit_group",
        "fcntl",
        "fstat",
        "futex",
        "getcwd",
        "getegid",
        "geteuid",
        "getgid",
        "getpgrp",
        "getpid",
        "getppid",
        "getrandom",
        "getuid",
        "ioctl",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "newfstatat",
        "open",
        "openat",
        "pread64",
        "prctl",
        "prlimit64",
        "read",
        "readlink",
        "rseq",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "sendfile",
        "set_robust_list",
        "set_tid_address",
        "stat",
        "statx",
        "uname",
        "vfork",
        "clone",
        "clone3",
        "wait4",
        "write",
        "writev",
    ];
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [{"names": allowed.as_slice(), "action": "SCMP_ACT_ALLOW"}]
    });
    f.write();
    assert_eq!(run_to_exit(&f, "ctr-seccomp-deny"), 0);
    assert_eq!(f.out("hi"), "hi\n");
    assert!(
        f.out("err").contains("Function not implemented"),
        "{}",
        f.out("err")
    );
    assert!(!f.dir.path().join("out/made").exists());
    assert!(
        f.out("status").contains("Seccomp:\t2"),
        "{}",
        f.out("status")
    );
}

/// The default profile of podman/containers-common 0.50 (Apache-2.0), as podman hands it to
/// the runtime for x86-64 and a workload without extra capabilities: 437 names, argument
/// conditions on clone, personality and socket.
const PODMAN_PROFILE: &str = include_str!("data/podman-default-seccomp.json");

fn test_seccomp_podman_default_profile() {
    // noNewPrivileges off, as podman runs by default: the filter goes in before the
    // capabilities are dropped, and the rest of the setup runs under it.
    let mut f = Fixture::sh(
        "echo hi > /out/hi; /bin/busybox mkdir /out/made; hostname other 2> /out/err; \
         hostname > /out/host; grep Seccomp: /proc/self/status > /out/status",
    );
    f.config["process"]["noNewPrivileges"] = json!(false);
    // With CAP_SYS_ADMIN the kernel would let it set the hostname of its own UTS namespace:
    // the profile's sethostname rule (errnoRet 1) is what refuses it.
    for set in ["bounding", "effective", "permitted"] {
        f.config["process"]["capabilities"][set] = json!(["CAP_SYS_ADMIN"]);
    }
    f.config["linux"]["seccomp"] = serde_json::from_str(PODMAN_PROFILE).unwrap();
    f.write();
    assert_eq!(run_to_exit(&f, "ctr-seccomp-podman"), 0);
    assert_eq!(f.out("hi"), "hi\n");
    assert!(f.dir.path().join("out/made").is_dir());
    assert!(
        f.out("err").contains("Operation not permitted"),
        "{}",
        f.out("err")
    );
    assert_eq!(f.out("host"), "ctr-test\n");
    assert!(
        f.out("status").contains("Seccomp:\t2"),
        "{}",
        f.out("status")
    );
}

fn test_seccomp_unsupported_leaves_nothing() {
    let mut f = Fixture::sh("true");
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
    });
    f.write();
    match create(&f, "ctr-seccomp-bad") {
        Ok(_) => panic!("SCMP_ACT_NOTIFY must be refused"),
        Err((e, state)) => {
            let text = e.to_string();
            assert!(text.contains("config.json"), "{text}");
            assert!(text.contains("linux.seccomp.syscalls[0].action"), "{text}");
            assert!(text.contains("SCMP_ACT_NOTIFY"), "{text}");
            assert_eq!(fs::read_dir(state.path()).unwrap().count(), 0);
        }
    }
    // An action the runtime-spec does not define fails when the bundle is loaded.
    f.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_MAYBE"});
    f.write();
    let err = Bundle::load(f.dir.path()).unwrap_err().to_string();
    assert!(err.contains("linux.seccomp.defaultAction"), "{err}");
    let mut f = Fixture::sh("true");
    f.config["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 1});
    f.write();
    match create(&f, "ctr-seccomp-bad") {
        Ok(_) => panic!("process.scheduler must be refused"),
        Err((e, _)) => assert!(e.to_string().contains("process.scheduler"), "{e}"),
    }
    no_children_left();
    no_cgroup_named("ctr-seccomp-bad");
}

fn test_join_a_user_namespace() {
    let mut first = Fixture::sh("sleep 100");
    let maps = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    first.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    first.config["linux"]["uidMappings"] = maps.clone();
    first.config["linux"]["gidMappings"] = maps;
    first.write();
    let owner = || {
        (
            Some(nix::unistd::Uid::from_raw(300000)),
            Some(nix::unistd::Gid::from_raw(300000)),
        )
    };
    let (u, g) = owner();
    nix::unistd::chown(&first.dir.path().join("rootfs"), u, g).unwrap();
    let mut a = create(&first, "ctr-userjoin-a")
        .map_err(|(e, _)| e)
        .expect("create a");
    ContainerBackend.start(&a.state).expect("start a");
    let mut f = Fixture::sh("cat /proc/self/uid_map > /out/map; hostname > /out/host");
    let ns = |t: &str, n: &str| json!({"type": t, "path": format!("/proc/{}/ns/{n}", a.state.pid)});
    // New mount and uts namespaces, owned by the joined user namespace.
    f.config["linux"]["namespaces"] = json!([
        ns("user", "user"),
        ns("pid", "pid"),
        {"type": "mount"},
        {"type": "uts"}
    ]);
    f.write();
    let (u, g) = owner();
    nix::unistd::chown(&f.dir.path().join("rootfs"), u, g).unwrap();
    let code = run_to_exit(&f, "ctr-userjoin-b");
    ContainerBackend
        .kill(&a.state, libc::SIGKILL, false)
        .unwrap();
    waitpid(Pid::from_raw(a.state.pid), None).unwrap();
    delete(&mut a);
    assert_eq!(code, 0);
    assert_eq!(
        f.out("map").split_whitespace().collect::<Vec<_>>(),
        ["0", "300000", "65536"]
    );
    assert_eq!(f.out("host").trim(), "ctr-test");
}

fn test_kill_all() {
    let f = Fixture::sh("sleep 100 & sleep 100 & wait");
    let mut r = create(&f, "ctr-killall")
        .map_err(|(e, _)| e)
        .expect("create");
    ContainerBackend.start(&r.state).expect("start");
    // Wait (bounded) until both sleeps are in the cgroup.
    for _ in 0..500 {
        if ContainerBackend.processes(&r.state).unwrap().len() >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(ContainerBackend.processes(&r.state).unwrap().len() >= 3);
    ContainerBackend
        .kill(&r.state, libc::SIGKILL, true)
        .unwrap();
    waitpid(Pid::from_raw(r.state.pid), None).unwrap();
    delete(&mut r);
}

fn main() {
    let tests: &[(&str, fn())] = &[
        ("exit_code_and_isolation", test_exit_code_and_isolation),
        ("user_and_capabilities", test_user_and_capabilities),
        ("user_namespace", test_user_namespace),
        ("readonly_root_and_masks", test_readonly_root_and_masks),
        ("hooks_in_order", test_hooks_in_order),
        (
            "kill_processes_and_start_twice",
            test_kill_processes_and_start_twice,
        ),
        ("bad_mount_leaves_nothing", test_bad_mount_leaves_nothing),
        ("bad_exec_exits_127", test_bad_exec_exits_127),
        (
            "resource_error_names_config",
            test_resource_error_names_config,
        ),
        (
            "init_does_not_hold_callers_descriptors",
            test_init_does_not_hold_callers_descriptors,
        ),
        ("join_namespaces_by_path", test_join_namespaces_by_path),
        ("process_settings", test_process_settings),
        ("kill_all", test_kill_all),
        ("join_a_user_namespace", test_join_a_user_namespace),
        ("seccomp_errno_rule", test_seccomp_errno_rule),
        ("seccomp_default_deny", test_seccomp_default_deny),
        (
            "seccomp_podman_default_profile",
            test_seccomp_podman_default_profile,
        ),
        (
            "seccomp_unsupported_leaves_nothing",
            test_seccomp_unsupported_leaves_nothing,
        ),
    ];
    let skip = if !nix::unistd::geteuid().is_root() {
        Some("not root")
    } else if !Path::new(BUSYBOX).exists() {
        Some("no /bin/busybox")
    } else {
        None
    };
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        if let Some(why) = skip {
            isobox_common::skip::skip_named(name, why);
            println!("test {name} ... skipped ({why})");
            skipped += 1;
            continue;
        }
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    let _ = PathBuf::new();
    if failed > 0 {
        std::process::exit(1);
    }
}
