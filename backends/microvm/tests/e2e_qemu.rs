//! End to end under qemu (TCG here): a busybox bundle through the Backend trait, with the real
//! guest kernel, the static agent as /init and the VM host process. Needs root, qemu, a guest
//! kernel (`$ISOBOX_KERNEL`, the cache, or provisioned) and cargo to build the agent; skips
//! with the reason otherwise. `$ISOBOX_TEST_HYPERVISOR` (builtin, auto) drives another
//! hypervisor, as the emulated host's suite does; `$ISOBOX_TEST_PREBUILT` says the agent and
//! the VM host example are already built (cargo cannot run there).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use isobox_common::backend::HypervisorChoice;
use isobox_common::{Backend, Bundle, CreateOptions, MicrovmOptions, State, Status};
use isobox_microvm::backend::MicrovmBackend;
use isobox_microvm::record::VmRecord;
use serde_json::{json, Value};

const BUSYBOX: &str = "/bin/busybox";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The hypervisor option the tests pass: `$ISOBOX_TEST_HYPERVISOR`, else qemu, which boots
/// Linux on every host.
fn hypervisor() -> String {
    std::env::var("ISOBOX_TEST_HYPERVISOR")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "qemu".into())
}

/// Whether qemu runs the VMs: asked for, or what `auto` picks without hardware KVM.
fn uses_qemu() -> bool {
    match hypervisor().as_str() {
        "auto" => isobox_microvm::host::detect() != isobox_microvm::host::HostKind::HardwareKvm,
        h => h == "qemu",
    }
}

fn cargo_build(args: &[&str]) -> Result<(), String> {
    if std::env::var_os("ISOBOX_TEST_PREBUILT").is_some() {
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet"])
        .args(args)
        .current_dir(workspace())
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A stand-in agent of the guest crate's examples (static, like the agent: a guest whose root
/// is shared has nothing else in its initramfs to run a script with).
fn test_init(env: &Env, name: &str) -> PathBuf {
    cargo_build(&["-p", "isobox-guest", "--example", name]).unwrap();
    let p = env.vm_host.with_file_name(name);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

struct Env {
    agent: PathBuf,
    vm_host: PathBuf,
    kernel: PathBuf,
    release: Option<String>,
}

/// Everything the tests need, or why they cannot run.
fn env() -> Result<Env, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root".into());
    }
    isobox_microvm::qemu::find_binary().map_err(|e| e.to_string())?;
    if !Path::new(BUSYBOX).is_file() {
        return Err(format!("{BUSYBOX} is missing"));
    }
    let kernel = isobox_microvm::image::resolve_kernel(
        None,
        &isobox_microvm::image::ResolveOptions::default(),
    )
    .map_err(|e| format!("no guest kernel: {e}"))?;
    cargo_build(&["-p", "isobox-guest", "--bin", "isobox-agent"])?;
    cargo_build(&["-p", "isobox-microvm", "--example", "vm_host"])?;
    // Beside this test's own executable (in deps/): the target directory cargo built into.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let target = exe
        .ancestors()
        .nth(2)
        .ok_or("the test executable has no target directory")?
        .to_path_buf();
    Ok(Env {
        // $ISOBOX_AGENT picks another build (e.g. a stripped release agent for timing).
        agent: std::env::var_os("ISOBOX_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("isobox-agent")),
        vm_host: target.join("examples/vm_host"),
        kernel: kernel.path,
        release: kernel.release,
    })
}

macro_rules! need_env {
    () => {
        match env() {
            Ok(e) => e,
            Err(why) => {
                isobox_common::skip::skip(&why);
                return;
            }
        }
    };
}

fn make_bundle(dir: &Path, process: Value) -> Bundle {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "work"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "hostname", "uname", "sleep", "true", "pwd", "id", "mkdir", "grep",
    ] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    // Present and executable, but its interpreter is missing: execve fails with ENOENT.
    let broken = rootfs.join("bin/broken");
    fs::write(&broken, "#!/no/such/interpreter\n").unwrap();
    fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs"},
        "hostname": "vm-test-host",
        "linux": {"namespaces": [{"type": "uts"}, {"type": "pid"}, {"type": "mount"}, {"type": "network"}], "resources": {"memory": {"limit": 256u64 << 20}}}
    });
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
    Bundle::load(dir).unwrap()
}

fn process(args: &[&str]) -> Value {
    json!({
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/bin", "FOO=bar baz"],
        "cwd": "/work"
    })
}

/// A backend whose host process writes its stdout/stderr next to the state dir and reads
/// `<state>.in` as stdin, so the test can look at what the workload printed.
fn backend(env: &Env) -> MicrovmBackend {
    MicrovmBackend::with_host_command(
        "/bin/sh",
        vec![
            "-c".to_string(),
            r#"exec "$0" vm-host --state-dir "$1" <"$1.in" >"$1.out" 2>"$1.err""#.to_string(),
            env.vm_host.display().to_string(),
        ],
    )
}

struct Vm {
    _tmp: tempfile::TempDir,
    state_dir: PathBuf,
    opts: CreateOptions,
    /// The host process, killed on drop so a failing test leaves no VM behind.
    host_pid: std::cell::Cell<Option<i32>>,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(pid) = self.host_pid.get() {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                let _ = nix::sys::wait::waitpid(pid, None);
            }
        }
    }
}

fn prepare(env: &Env, args: &[&str], stdin: &str) -> Vm {
    let tmp = tempfile::tempdir().unwrap();
    let bundle_dir = tmp.path().join("bundle");
    fs::create_dir(&bundle_dir).unwrap();
    let bundle = make_bundle(&bundle_dir, process(args));
    let state_dir = tmp.path().join("state");
    fs::create_dir(&state_dir).unwrap();
    fs::write(tmp.path().join("state.in"), stdin).unwrap();
    let opts = CreateOptions {
        id: "vm1".into(),
        bundle,
        state_dir: state_dir.clone(),
        foreground: true,
        console_socket: None,
        microvm: MicrovmOptions {
            hypervisor: Some(hypervisor().parse().unwrap()),
            kernel: Some(env.kernel.clone()),
            agent: Some(env.agent.clone()),
        },
    };
    Vm {
        _tmp: tmp,
        state_dir,
        opts,
        host_pid: Default::default(),
    }
}

fn state_for(vm: &Vm, created: &isobox_common::Created) -> State {
    vm.host_pid.set(Some(created.pid));
    State {
        oci_version: isobox_common::OCI_VERSION.into(),
        id: vm.opts.id.clone(),
        status: Status::Created,
        pid: created.pid,
        bundle: vm.opts.bundle.dir.clone(),
        annotations: Default::default(),
        backend: isobox_common::BackendKind::Microvm,
        pid_start_time: isobox_common::proc::start_time(created.pid).unwrap(),
        created: "2026-01-01T00:00:00Z".into(),
        started: false,
        state_dir: vm.state_dir.clone(),
        data: created.data.clone(),
        creator: None,
    }
}

/// Wait for our child `pid`; its exit code (128+N for signal N).
fn wait_code(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    match waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap() {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        other => panic!("unexpected wait status {other:?}"),
    }
}

fn read(vm: &Vm, ext: &str) -> String {
    fs::read_to_string(vm.state_dir.with_extension(ext)).unwrap_or_default()
}

fn assert_clean(vm: &Vm, state: &State) {
    // qemu is a process of its own; the built-in VMM is the host process itself.
    let record: VmRecord = state.backend_data().unwrap();
    let (hv, start) = match record.hypervisor_process {
        Some(p) => (p.pid, p.start_time),
        None => (state.pid, state.pid_start_time),
    };
    assert!(
        !isobox_common::proc::is_alive(hv, start),
        "hypervisor {hv} still runs"
    );
    let left: Vec<_> = fs::read_dir(&vm.state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the state dir: {left:?}");
}

#[test]
fn workload_output_hostname_kernel_env_cwd_stdin_and_exit_code() {
    let env = need_env!();
    let script = "echo out; echo err >&2; hostname; uname -r; echo \"$FOO\"; pwd; \
                  read line; echo \"in:$line\"; exit 3";
    let vm = prepare(&env, &["sh", "-c", script], "typed\n");
    let b = backend(&env);
    let created = b.create(&vm.opts).unwrap();
    let state = state_for(&vm, &created);
    let (name, processes) = if uses_qemu() {
        ("qemu", 2)
    } else {
        ("builtin", 1)
    };
    assert_eq!(created.data["hypervisor"], name);
    assert!(["tcg", "kvm"].contains(&created.data["accelerator"].as_str().unwrap()));
    assert_eq!(
        b.processes(&state).unwrap().len(),
        processes,
        "the host process, and qemu if it runs the VM"
    );
    b.start(&state).unwrap();
    assert_eq!(wait_code(created.pid), 3, "stderr: {}", read(&vm, "err"));
    let out = read(&vm, "out");
    let lines: Vec<&str> = out.lines().collect();
    let host_release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    assert_eq!(lines.len(), 6, "{out:?}");
    assert_eq!(lines[0], "out");
    assert_eq!(lines[1], "vm-test-host");
    // The guest kernel's release, not the host's.
    match &env.release {
        Some(r) => assert_eq!(lines[2], r),
        None => assert!(!lines[2].is_empty()),
    }
    if env.release.as_deref() != Some(host_release.as_str()) {
        assert_ne!(lines[2], host_release);
    }
    assert_eq!(lines[3], "bar baz");
    assert_eq!(lines[4], "/work");
    assert_eq!(lines[5], "in:typed");
    assert_eq!(read(&vm, "err"), "err\n");
    b.delete(&state).unwrap();
    assert_clean(&vm, &state);
}

#[test]
fn sigterm_to_the_host_process_stops_the_workload() {
    let env = need_env!();
    let vm = prepare(&env, &["sleep", "100"], "");
    let b = backend(&env);
    let created = b.create(&vm.opts).unwrap();
    let state = state_for(&vm, &created);
    b.start(&state).unwrap();
    // Give the agent time to start sleep; a signal before Exec arrives would end the VM too.
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    b.kill(&state, libc::SIGTERM, false).unwrap();
    assert_eq!(
        wait_code(created.pid),
        128 + libc::SIGTERM,
        "stderr: {}",
        read(&vm, "err")
    );
    eprintln!("stopped {:?} after SIGTERM", t.elapsed());
    b.delete(&state).unwrap();
    assert_clean(&vm, &state);
}

#[test]
fn unrunnable_executable_reports_an_error_and_exit_127() {
    let env = need_env!();
    let vm = prepare(&env, &["/bin/broken"], "");
    let b = backend(&env);
    let created = b.create(&vm.opts).unwrap();
    let state = state_for(&vm, &created);
    b.start(&state).unwrap();
    assert_eq!(wait_code(created.pid), 127);
    assert!(
        read(&vm, "err").contains("/bin/broken"),
        "{}",
        read(&vm, "err")
    );
    b.delete(&state).unwrap();
    assert_clean(&vm, &state);
}

#[test]
fn true_end_to_end_wall_time() {
    let env = need_env!();
    let vm = prepare(&env, &["true"], "");
    let b = backend(&env);
    let t = Instant::now();
    let created = b.create(&vm.opts).unwrap();
    let booted = t.elapsed();
    let state = state_for(&vm, &created);
    b.start(&state).unwrap();
    assert_eq!(wait_code(created.pid), 0);
    let total = t.elapsed();
    b.delete(&state).unwrap();
    assert_clean(&vm, &state);
    eprintln!(
        "true under {} {}: create {booted:?}, create+start+exit {total:?}",
        hypervisor(),
        created.data["accelerator"]
    );
}

#[test]
fn create_errors_leave_nothing_behind() {
    let env = need_env!();
    // Not a kernel.
    let vm = prepare(&env, &["true"], "");
    let not_kernel = vm.opts.bundle.config_path.clone();
    let mut o = vm.opts.clone();
    o.microvm.kernel = Some(not_kernel);
    let err = backend(&env).create(&o).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    assert_eq!(fs::read_dir(&vm.state_dir).unwrap().count(), 0);

    // An /init that ends the VM without ever saying Hello.
    let fake = test_init(&env, "silent_init");
    let mut o = vm.opts.clone();
    o.microvm.agent = Some(fake);
    let err = backend(&env).create(&o).unwrap_err().to_string();
    assert!(err.contains("before the guest agent said Hello"), "{err}");
    assert!(
        err.contains("fake init here"),
        "the console tail is in the error: {err}"
    );
    assert_eq!(fs::read_dir(&vm.state_dir).unwrap().count(), 0);
}

/// Put `profile` at linux.seccomp of the VM's bundle.
fn set_seccomp(vm: &mut Vm, profile: Value) {
    let path = vm.opts.bundle.config_path.clone();
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config["linux"]["seccomp"] = profile;
    fs::write(&path, config.to_string()).unwrap();
    vm.opts.bundle = Bundle::load(&vm.opts.bundle.dir).unwrap();
}

#[test]
fn seccomp_profile_confines_the_workload_in_the_guest() {
    let env = need_env!();
    let script = "grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo rc=$?; \
                  [ -d /tmp/x ] && echo made; grep Seccomp: /proc/1/status";
    let mut vm = prepare(&env, &["sh", "-c", script], "");
    set_seccomp(
        &mut vm,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }),
    );
    let b = backend(&env);
    let created = b.create(&vm.opts).unwrap();
    let state = state_for(&vm, &created);
    b.start(&state).unwrap();
    assert_eq!(wait_code(created.pid), 0, "stderr: {}", read(&vm, "err"));
    let out = read(&vm, "out");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert_eq!(lines[0], "Seccomp:\t2", "the workload runs under a filter");
    assert!(lines[1].contains("Operation not permitted"), "{out:?}");
    assert_eq!(lines[2], "rc=1");
    // The agent (PID 1 of the guest) is not filtered.
    assert_eq!(lines[3], "Seccomp:\t0");
    b.delete(&state).unwrap();
    assert_clean(&vm, &state);
}

#[test]
fn unsupported_seccomp_profile_fails_create_before_any_vm() {
    let env = need_env!();
    let mut vm = prepare(&env, &["true"], "");
    set_seccomp(&mut vm, json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    let err = backend(&env).create(&vm.opts).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("linux.seccomp.defaultAction"),
        "{err}"
    );
    assert!(err.contains("SCMP_ACT_NOTIFY"), "{err}");
    assert_eq!(fs::read_dir(&vm.state_dir).unwrap().count(), 0);
    // No host process was started, so nothing wrote its output files.
    assert!(!vm.state_dir.with_extension("out").exists());
    assert!(!vm.state_dir.with_extension("err").exists());
}

/// The built-in VMM boots the same guest on hardware KVM; where the host cannot (a nested PVM
/// hypervisor, no KVM) create must fail with the reason and leave nothing behind.
#[test]
fn builtin_vmm_runs_the_workload_or_fails_cleanly() {
    let env = need_env!();
    let vm = prepare(&env, &["sh", "-c", "echo builtin; exit 4"], "");
    let mut o = vm.opts.clone();
    o.microvm.hypervisor = Some(HypervisorChoice::Builtin);
    let b = backend(&env);
    match b.create(&o) {
        Ok(created) => {
            let state = state_for(&vm, &created);
            assert_eq!(created.data["hypervisor"], "builtin");
            b.start(&state).unwrap();
            assert_eq!(wait_code(created.pid), 4, "stderr: {}", read(&vm, "err"));
            assert_eq!(read(&vm, "out"), "builtin\n");
            b.delete(&state).unwrap();
        }
        Err(e) => {
            let host = isobox_microvm::host::detect();
            isobox_common::skip::skip_for_hardware(&format!(
                "needs hardware KVM for the built-in VMM end to end ({host:?}: {e})"
            ));
            assert_ne!(host, isobox_microvm::host::HostKind::HardwareKvm, "{e}");
            assert!(e.to_string().contains("builtin"), "{e}");
            assert_eq!(fs::read_dir(&vm.state_dir).unwrap().count(), 0);
        }
    }
}

/// `kill` of a created (not started) container stops its VM.
#[test]
fn sigterm_before_start_stops_the_vm() {
    let env = need_env!();
    let vm = prepare(&env, &["true"], "");
    let b = backend(&env);
    let created = b.create(&vm.opts).unwrap();
    let state = state_for(&vm, &created);
    b.kill(&state, libc::SIGTERM, false).unwrap();
    assert_eq!(wait_code(created.pid), 128 + libc::SIGTERM);
    assert!(b.processes(&state).unwrap().is_empty());
    b.delete(&state).unwrap();
    assert_clean(&vm, &state);
}

/// Stray bytes on the agent line are a clear create error, and the VM is gone afterwards.
#[test]
fn garbage_on_the_agent_line_fails_create_cleanly() {
    let env = need_env!();
    let vm = prepare(&env, &["true"], "");
    let fake = test_init(&env, "noisy_init");
    let mut o = vm.opts.clone();
    o.microvm.agent = Some(fake);
    let err = backend(&env).create(&o).unwrap_err().to_string();
    assert!(err.contains("bad frame magic"), "{err}");
    assert_eq!(fs::read_dir(&vm.state_dir).unwrap().count(), 0);
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let state = vm.state_dir.display().to_string();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(&state),
        "a process still refers to {state}"
    );
}

/// Every byte value survives both directions; large output is relayed completely.
#[test]
fn stdio_is_8_bit_clean_both_ways() {
    let env = need_env!();
    let input: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let script = "md5sum >&2; head -c 300000 /dev/urandom >/tmp/x; md5sum </tmp/x >&2; cat /tmp/x";
    let vm = prepare(&env, &["sh", "-c", script], "");
    fs::write(vm.state_dir.with_extension("in"), &input).unwrap();
    let b = backend(&env);
    let created = b.create(&vm.opts).unwrap();
    let state = state_for(&vm, &created);
    let t = Instant::now();
    b.start(&state).unwrap();
    assert_eq!(wait_code(created.pid), 0, "stderr: {}", read(&vm, "err"));
    eprintln!("200 kB in, 300 kB out in {:?}", t.elapsed());
    let md5 = |data: &[u8]| {
        let f = vm.state_dir.with_extension("md5-input");
        fs::write(&f, data).unwrap();
        let out = Command::new(BUSYBOX)
            .args(["md5sum"])
            .arg(&f)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)[..32].to_string()
    };
    let err = read(&vm, "err");
    let sums: Vec<&str> = err.lines().map(|l| &l[..32]).collect();
    assert_eq!(sums.len(), 2, "{err}");
    assert_eq!(sums[0], md5(&input), "stdin reached the guest intact");
    let out = fs::read(vm.state_dir.with_extension("out")).unwrap();
    assert_eq!(out.len(), 300_000, "stderr: {err}");
    assert_eq!(sums[1], md5(&out), "stdout reached the host intact");
    b.delete(&state).unwrap();
    assert_clean(&vm, &state);
}

/// qemu dying under a running workload is a clear error (exit 255), and delete cleans up.
#[test]
fn hypervisor_death_mid_run_is_a_clear_error() {
    let env = need_env!();
    if !uses_qemu() {
        isobox_common::skip::not_applicable("kills qemu's own process; the VMs run on builtin");
        return;
    }
    let vm = prepare(&env, &["sh", "-c", "echo running; exec sleep 100"], "");
    let b = backend(&env);
    let created = b.create(&vm.opts).unwrap();
    let state = state_for(&vm, &created);
    b.start(&state).unwrap();
    // Under the workload, not before it: wait until it has printed.
    let t = Instant::now();
    while !read(&vm, "out").contains("running") && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        read(&vm, "out"),
        "running\n",
        "stderr: {}",
        read(&vm, "err")
    );
    let record: VmRecord = state.backend_data().unwrap();
    let qemu = record.hypervisor_process.unwrap().pid;
    // SAFETY: plain syscall on the VM's qemu.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    assert_eq!(wait_code(created.pid), 255);
    let err = read(&vm, "err");
    assert!(
        err.contains(
            "the VM stopped before the workload's exit was reported (qemu was killed by signal 9)"
        ),
        "{err}"
    );
    b.delete(&state).unwrap();
    assert_clean(&vm, &state);
}
