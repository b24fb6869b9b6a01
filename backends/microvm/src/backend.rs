//! `MicrovmBackend`: the Backend trait over one host process per VM (see [`crate::host_process`]).

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use isobox_common::features::Support;
use isobox_common::protocol::MountRequest;
use isobox_common::state::ProcessRef;
use isobox_common::{Backend, BackendKind, CreateOptions, Created, State};

use crate::cmdline::kernel_cmdline;
use crate::error::{MicrovmError, Result};
use crate::host_process::config::{
    VmHostConfig, ALL_FILES, CONSOLE_LOG, HYPERVISOR_PID, INITRAMFS, READY_FD_ENV, START_FIFO,
    VM_HOST_PID,
};
use crate::host_process::ready::parse_report;
use crate::hypervisor::{
    host_support, select, Accelerator, Hypervisor, HypervisorChoice, HYPERVISOR_ANNOTATION,
};
use crate::network::{self, NetNs};
use crate::record::VmRecord;
use crate::{host_hooks, image, qemu, virtiofs, vmspec};

/// Option keys `create` accepts in `CreateOptions::options`.
/// Environment variable naming the guest agent binary.
pub const AGENT_ENV: &str = "ISOBOX_AGENT";
/// File name of the static guest agent.
pub const AGENT_NAME: &str = "isobox-agent";

/// How long the agent may take to say Hello (software emulation is slow).
const HELLO_TIMEOUT_TCG: u64 = 60;
const HELLO_TIMEOUT_KVM: u64 = 20;
/// Seconds to allow instead, for hosts slower than their kind suggests (the emulated host's
/// KVM is itself emulated).
pub const HELLO_TIMEOUT_ENV: &str = "ISOBOX_HELLO_TIMEOUT";

/// The Hello timeout for `accelerator`, or `$ISOBOX_HELLO_TIMEOUT`'s.
fn hello_timeout(accelerator: Accelerator, env: Option<&str>) -> Result<u64> {
    match env.filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=3600).contains(s))
            .ok_or_else(|| MicrovmError::InvalidOption {
                key: format!("${HELLO_TIMEOUT_ENV}"),
                reason: format!("{v:?} is not a number of seconds from 1 to 3600"),
            }),
        None => Ok(match accelerator {
            Accelerator::Tcg => HELLO_TIMEOUT_TCG,
            Accelerator::Kvm => HELLO_TIMEOUT_KVM,
        }),
    }
}

/// The microVM backend. Each container is one host process (the isobox binary re-executed
/// as `vm-host --state-dir DIR`), which owns the VM.
#[derive(Debug, Clone)]
pub struct MicrovmBackend {
    program: PathBuf,
    args: Vec<OsString>,
}

impl MicrovmBackend {
    /// Re-execute the running binary as `<exe> vm-host --state-dir DIR`.
    pub fn new() -> Result<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| MicrovmError::io("finding the running executable", e))?;
        Ok(Self::with_host_command(exe, ["vm-host", "--state-dir"]))
    }

    /// Run `<program> <args…> DIR` as the host process (for tests and other front ends).
    pub fn with_host_command<I, S>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        MicrovmBackend {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// The static agent: the `agent` option, `$ISOBOX_AGENT`, or `isobox-agent` next to the
/// running executable (or one directory up, for test binaries in `deps/`).
pub fn find_agent(explicit: Option<&Path>) -> Result<PathBuf> {
    let check = |p: PathBuf, how: &str| {
        if p.is_file() {
            Ok(p)
        } else {
            Err(MicrovmError::Agent(format!(
                "{how} {}: no such file",
                p.display()
            )))
        }
    };
    if let Some(p) = explicit {
        return check(p.to_path_buf(), "agent option");
    }
    if let Some(p) = std::env::var_os(AGENT_ENV).filter(|v| !v.is_empty()) {
        return check(PathBuf::from(p), &format!("${AGENT_ENV}"));
    }
    let exe = std::env::current_exe().map_err(|e| MicrovmError::io("current_exe", e))?;
    let dirs: Vec<&Path> = exe.ancestors().skip(1).take(2).collect();
    dirs.iter()
        .map(|d| d.join(AGENT_NAME))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            MicrovmError::Agent(format!(
                "{AGENT_NAME} not found next to {} (build it with `cargo build -p isobox-guest --bin {AGENT_NAME}` or set ${AGENT_ENV})",
                exe.display()
            ))
        })
}

fn config_err(opts: &CreateOptions, field: &str, reason: String) -> isobox_common::Error {
    isobox_common::Error::Config {
        file: opts.bundle.config_path.clone(),
        field: field.to_string(),
        reason,
    }
}

/// End the VM host process of a create that failed after it started, and its hypervisor.
fn end_launched(state_dir: &Path, pid: i32) {
    let hv = ProcessRef::load(&state_dir.join(HYPERVISOR_PID));
    // SAFETY: plain syscalls; `pid` is our unreaped child, the hypervisor its.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    if let Some(hv) = hv {
        if isobox_common::proc::is_alive(hv.pid, hv.start_time) {
            // SAFETY: as above, on a live recorded pid.
            unsafe { libc::kill(hv.pid, libc::SIGKILL) };
            wait_gone(hv.pid, hv.start_time, Duration::from_secs(5));
        }
    }
}

/// Remove every file the backend puts in a state directory.
fn remove_files(state_dir: &Path) {
    for f in ALL_FILES {
        let _ = std::fs::remove_file(state_dir.join(f));
    }
}

impl MicrovmBackend {
    fn prepare(
        &self,
        opts: &CreateOptions,
    ) -> isobox_common::Result<(VmHostConfig, Option<String>)> {
        let o = &opts.microvm;
        // Compiled first, so a bad profile fails before anything is made.
        let seccomp = vmspec::seccomp(&opts.bundle).map_err(|(f, r)| config_err(opts, &f, r))?;
        vmspec::validate(&opts.bundle).map_err(|(f, r)| config_err(opts, &f, r))?;
        let choice: HypervisorChoice =
            match (o.hypervisor, opts.bundle.annotation(HYPERVISOR_ANNOTATION)) {
                (Some(choice), _) => choice,
                (None, Some(v)) => v.parse().map_err(|r| {
                    config_err(opts, &format!("annotations.{HYPERVISOR_ANNOTATION}"), r)
                })?,
                (None, None) => HypervisorChoice::Auto,
            };
        let network = network::plan(&opts.bundle);
        if let Some((i, NetNs::Join(path))) = &network {
            network::check_joinable(path)
                .map_err(|r| config_err(opts, &format!("linux.namespaces[{i}].path"), r))?;
        }
        let network = network.map(|(_, ns)| ns);
        let mut sel = select(choice, &host_support())?;
        // Bind mounts need virtio-fs, and a joined namespace's interfaces a network device,
        // which only qemu has so far: `auto` takes qemu then.
        if choice == HypervisorChoice::Auto
            && sel.hypervisor == Hypervisor::Builtin
            && (virtiofs::first_bind(&opts.bundle).is_some()
                || matches!(network, Some(NetNs::Join(_))))
        {
            sel.hypervisor = Hypervisor::Qemu;
        }
        let kernel = image::resolve_kernel(o.kernel.as_deref(), &image::ResolveOptions::default())?;
        let agent = find_agent(o.agent.as_deref())?;
        let qemu_binary = match sel.hypervisor {
            Hypervisor::Qemu => Some(qemu::find_binary()?),
            Hypervisor::Builtin => None,
        };
        let mem_mib = vmspec::mem_mib(&opts.bundle);
        let (shares, mounts) =
            virtiofs::plan(&opts.bundle).map_err(|(f, r)| config_err(opts, &f, r))?;
        // qemu shares the rootfs and the bind mounts live (virtio-fs); the built-in VMM has
        // no virtio devices yet, so it packs the rootfs into the initramfs and takes no binds.
        let (initramfs, initramfs_bytes, shares, mounts, virtiofsd) = match sel.hypervisor {
            Hypervisor::Qemu => {
                let virtiofsd = virtiofs::find_binary()?;
                let initramfs = virtiofs::agent_initramfs(&kernel, &agent)?;
                (initramfs, 0, shares, Some(mounts), Some(virtiofsd))
            }
            Hypervisor::Builtin => {
                if let Some(i) = virtiofs::first_bind(&opts.bundle) {
                    return Err(config_err(
                        opts,
                        &format!("mounts[{i}]"),
                        "the built-in VMM cannot share bind mounts with the guest yet (it has \
                         no virtio-fs); use --hypervisor qemu"
                            .into(),
                    ));
                }
                let initramfs = opts.state_dir.join(INITRAMFS);
                let info = image::build_initramfs_for_ram(
                    &opts.bundle.rootfs,
                    &agent,
                    &initramfs,
                    mem_mib,
                )?;
                // The root is the initramfs: no shares, but the rest of the request holds.
                let mounts = MountRequest {
                    root_tag: String::new(),
                    volumes: Vec::new(),
                    ..mounts
                };
                (initramfs, info.size_bytes, Vec::new(), Some(mounts), None)
            }
        };
        let exec = vmspec::exec_request(&opts.bundle).map(|mut e| {
            e.seccomp = seccomp.map(Box::new);
            e
        });
        let cfg = VmHostConfig {
            hypervisor: sel.hypervisor,
            accelerator: sel.accelerator,
            qemu_binary,
            kernel: kernel.path.clone(),
            initramfs,
            cmdline: kernel_cmdline(sel.hypervisor, !shares.is_empty()),
            vcpus: vmspec::vcpus(&opts.bundle),
            mem_mib,
            console_log: opts.state_dir.join(CONSOLE_LOG),
            initramfs_bytes,
            hello_timeout_secs: hello_timeout(
                sel.accelerator,
                std::env::var(HELLO_TIMEOUT_ENV).ok().as_deref(),
            )?,
            exec,
            shares,
            virtiofsd,
            mounts,
            network,
        };
        cfg.save(&opts.state_dir)?;
        nix::unistd::mkfifo(
            &opts.state_dir.join(START_FIFO),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| {
            MicrovmError::io(
                format!("creating {}", opts.state_dir.join(START_FIFO).display()),
                e.into(),
            )
        })?;
        Ok((cfg, sel.warning))
    }

    /// Spawn the host process (its stdio on `terminal` when given) and wait for its
    /// readiness report.
    fn launch(
        &self,
        opts: &CreateOptions,
        cfg: &VmHostConfig,
        terminal: Option<OwnedFd>,
    ) -> Result<i32> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| MicrovmError::io("creating the readiness pipe", e.into()))?;
        let wfd = w.as_raw_fd();
        let detach = !opts.foreground;
        let parent = std::process::id() as libc::pid_t;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .arg(&opts.state_dir)
            .env(READY_FD_ENV, wfd.to_string());
        if let Some(slave) = terminal {
            let dup = |fd: &OwnedFd| {
                fd.try_clone()
                    .map_err(|e| MicrovmError::io("duplicating the terminal", e))
            };
            cmd.stdin(dup(&slave)?).stdout(dup(&slave)?).stderr(slave);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if detach {
                    libc::setsid();
                }
                // Until its readiness report, the host process (and with it the hypervisor,
                // which has its own parent-death signal) dies with this thread: a `create`
                // killed during boot leaves no VM behind. The host clears it when ready.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then nobody would signal us.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                if libc::fcntl(wfd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            MicrovmError::io(
                format!("starting the VM host process {}", self.program.display()),
                e,
            )
        })?;
        drop(w);
        // Recorded at once, so `delete --force` finds it should this process die before the
        // state is complete. Our unreaped child: its start time cannot be another's.
        let recorded = ProcessRef::of(child.id() as i32)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))
            .and_then(|p| {
                p.save(&opts.state_dir.join(VM_HOST_PID))
                    .map_err(std::io::Error::other)
            });
        if let Err(e) = recorded {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MicrovmError::io(
                format!(
                    "recording the VM host process in {}",
                    opts.state_dir.join(VM_HOST_PID).display()
                ),
                e,
            ));
        }
        let timeout = Duration::from_secs(cfg.hello_timeout_secs + 30);
        match read_report(r, timeout).and_then(|t| parse_report(&t)) {
            Ok(()) => Ok(child.id() as i32),
            Err(reason) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(MicrovmError::Hypervisor {
                    hypervisor: cfg.hypervisor.as_str().into(),
                    reason,
                })
            }
        }
    }
}

/// Read the readiness pipe to EOF, for at most `timeout`.
fn read_report(fd: OwnedFd, timeout: Duration) -> std::result::Result<String, String> {
    let deadline = Instant::now() + timeout;
    // SAFETY: we own the descriptor.
    let mut f = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the VM host process did not report within {} s",
                timeout.as_secs()
            ));
        }
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("waiting for the VM host process: {e}"));
        }
        if n == 0 {
            continue;
        }
        match f.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the VM host process's report: {e}")),
        }
    }
}

/// The hypervisor's pid, if it still runs as the process we recorded.
pub(crate) fn live_hypervisor(state: &State) -> Option<i32> {
    let hv = state.backend_data::<VmRecord>().ok()?.hypervisor_process?;
    hv.is_alive().then_some(hv.pid)
}

fn wait_gone(pid: i32, start: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while isobox_common::proc::is_alive(pid, start) {
        if isobox_common::proc::state_letter(pid) == Some('Z') {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

impl Backend for MicrovmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Microvm
    }

    /// The guest applies the process spec with the container init's code (capabilities
    /// included), mounts with the same option table (propagation holds inside the guest
    /// only), and limits in a cgroup v2 of its own. Of the namespaces it takes only the
    /// network one, new or joined, where the VM lives (see crate::network); the workload's
    /// others are the guest kernel's, and joining a host one is refused.
    fn support(&self) -> Support {
        Support {
            kind: BackendKind::Microvm,
            mount_options: isobox_common::mount_opts::applied(),
            namespaces: vec![oci_spec::runtime::LinuxNamespaceType::Network],
            capabilities: true,
            cgroup_v1: false,
            cgroup_v2: true,
            rdma: false,
            annotations: vec![(
                "io.isobox.hypervisors",
                [Hypervisor::Builtin, Hypervisor::Qemu]
                    .map(Hypervisor::as_str)
                    .join(","),
            )],
        }
    }

    fn create(&self, opts: &CreateOptions) -> isobox_common::Result<Created> {
        let terminal = opts.bundle.process().and_then(|p| p.terminal()) == Some(true);
        if terminal && opts.console_socket.is_none() {
            return Err(config_err(
                opts,
                "process.terminal",
                "a terminal needs --console-socket, where its master is sent".into(),
            ));
        }
        let result = self.prepare(opts).and_then(|(cfg, warning)| {
            if let Some(w) = warning {
                log::warn!("{}", w.strip_prefix("warning: ").unwrap_or(&w));
            }
            // The host side of the workload's terminal is the host process's stdio.
            let slave = match (
                cfg.exec.as_ref().and_then(|e| e.terminal),
                &opts.console_socket,
            ) {
                (Some(size), Some(socket)) => Some(crate::terminal::host_side(size, socket)?.0),
                _ => None,
            };
            let pid = self.launch(opts, &cfg, slave)?;
            // The hooks run on the host, as for a container, once the VM is up and its
            // files are mounted; the state they read names the VM host process.
            if let Err(e) = host_hooks::on_create(opts, pid) {
                end_launched(&opts.state_dir, pid);
                return Err(e);
            }
            Ok((cfg, pid))
        });
        let (cfg, pid) = match result {
            Ok(v) => v,
            Err(e) => {
                remove_files(&opts.state_dir);
                return Err(e);
            }
        };
        let record = VmRecord {
            hypervisor: cfg.hypervisor,
            accelerator: cfg.accelerator,
            kernel: cfg.kernel,
            vcpus: cfg.vcpus,
            mem_mib: cfg.mem_mib,
            console_log: cfg.console_log,
            initramfs_bytes: cfg.initramfs_bytes,
            hypervisor_process: ProcessRef::load(&opts.state_dir.join(HYPERVISOR_PID)),
            no_process: cfg.exec.is_none(),
            hooks: opts.bundle.spec.hooks().clone(),
        };
        Ok(Created::new(pid, &record))
    }

    fn start(&self, state: &State) -> isobox_common::Result<()> {
        if state.backend_data::<VmRecord>()?.no_process {
            // The VM keeps waiting: the container stays created (runtime-spec: process is
            // required by start).
            return Err(isobox_common::Error::Config {
                file: state.bundle.join("config.json"),
                field: "process".into(),
                reason: "missing; a container without a process cannot be started".into(),
            });
        }
        let path = state.state_dir.join(START_FIFO);
        // Non-blocking: with no reader (the host process is gone or already started) the
        // open fails with ENXIO instead of hanging.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ENXIO) {
                    isobox_common::Error::BadState {
                        id: state.id.clone(),
                        reason:
                            "the VM host process is not waiting for start (already started or gone)"
                                .into(),
                    }
                } else {
                    MicrovmError::io(format!("opening {}", path.display()), e).into()
                }
            })?;
        // A failing startContainer hook stops the container (runtime-spec lifecycle, step 7).
        if let Err(e) = host_hooks::start_container(state) {
            let _ = self.kill(state, libc::SIGKILL, false);
            wait_gone(state.pid, state.pid_start_time, Duration::from_secs(5));
            return Err(e);
        }
        std::io::Write::write_all(&mut f, b"s")
            .map_err(|e| MicrovmError::io(format!("writing {}", path.display()), e))?;
        host_hooks::poststart(state);
        Ok(())
    }

    fn kill(&self, state: &State, signal: i32, all: bool) -> isobox_common::Result<()> {
        // The host process relays the signal to the workload (SIGKILL ends the VM at once);
        // with `all`, the queued value asks it to signal every process in the guest.
        let value = libc::sigval {
            sival_ptr: if all {
                crate::host_process::SIGNAL_ALL_VALUE
            } else {
                0
            } as *mut libc::c_void,
        };
        // SAFETY: sigqueue with integer arguments and a plain value.
        if unsafe { libc::sigqueue(state.pid, signal, value) } != 0 {
            return Err(MicrovmError::io(
                format!(
                    "sending signal {signal} to the VM host process {}",
                    state.pid
                ),
                std::io::Error::last_os_error(),
            )
            .into());
        }
        Ok(())
    }

    fn delete(&self, state: &State) -> isobox_common::Result<()> {
        if isobox_common::proc::is_alive(state.pid, state.pid_start_time) {
            // SAFETY: plain syscall on the recorded, still-live pid.
            unsafe { libc::kill(state.pid, libc::SIGKILL) };
            wait_gone(state.pid, state.pid_start_time, Duration::from_secs(5));
        }
        if let Some(pid) = live_hypervisor(state) {
            // SAFETY: as above; it dies with the host process anyway.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        remove_files(&state.state_dir);
        host_hooks::poststop(state);
        Ok(())
    }

    fn exec(
        &self,
        state: &State,
        opts: &isobox_common::ExecOptions,
    ) -> isobox_common::Result<isobox_common::Execed> {
        crate::exec::exec(state, opts)
    }

    fn delete_partial(&self, state: &State) -> isobox_common::Result<()> {
        // The host process first: the hypervisor dies with it (parent-death signal), and is
        // then ended by its own record in case it did not.
        for file in [VM_HOST_PID, HYPERVISOR_PID] {
            if let Some(p) = ProcessRef::load(&state.state_dir.join(file)) {
                if !p.kill_and_wait(Duration::from_secs(10)) {
                    return Err(MicrovmError::io(
                        format!("ending process {} recorded in {file}", p.pid),
                        std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    )
                    .into());
                }
            }
        }
        remove_files(&state.state_dir);
        Ok(())
    }

    fn processes(&self, state: &State) -> isobox_common::Result<Vec<i32>> {
        let mut pids = Vec::new();
        if isobox_common::proc::is_alive(state.pid, state.pid_start_time) {
            pids.push(state.pid);
        }
        pids.extend(live_hypervisor(state));
        Ok(pids)
    }

    fn pause(&self, state: &State) -> isobox_common::Result<()> {
        crate::live::pause(state)
    }

    fn resume(&self, state: &State) -> isobox_common::Result<()> {
        crate::live::resume(state)
    }

    fn is_paused(&self, state: &State) -> isobox_common::Result<bool> {
        Ok(crate::live::is_paused(state))
    }

    fn update(
        &self,
        _state: &mut State,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> isobox_common::Result<()> {
        crate::live::update(resources)
    }

    fn stats(&self, state: &State) -> isobox_common::Result<isobox_common::Stats> {
        crate::live::stats(state)
    }
}

#[cfg(test)]
mod tests;
