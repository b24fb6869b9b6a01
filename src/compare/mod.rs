//! `isobox compare`: run the same workload under every runtime found here — isobox's container
//! and microVM backends, runc/crun, and the bare host process — interleaved so host noise hits
//! all alike, and report startup, first output, memory, disk and isolation side by side.

mod bundle;
mod disk;
mod isolation;
mod json;
mod measure;
mod render;
mod report;
mod row;
mod runtimes;
mod vm_processes;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use bundle::{CompareBundle, Workload, HOST_BOOT_ID_ENV};
use measure::{ratio, run_measured, RunOutcome, Stats};
use row::{HostProcess, Isolation, Measured, Row};
use runtimes::{Kind, Runtime};

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Bundle to run (its rootfs should have /bin/true and /bin/echo); default: a built-in
    /// busybox bundle with the isolation probe.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Measured runs per runtime and workload (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Print the rows as a JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write DIR/index.html with charts and the isolation matrix.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

/// Everything gathered for one runtime while the phases run.
struct Sample {
    rt: Runtime,
    error: Option<String>,
    startup: Vec<std::time::Duration>,
    first_output: Vec<std::time::Duration>,
    peak_rss: u64,
    /// The most a microVM's host processes held beyond guest RAM, over the startup runs.
    vmm_overhead: Option<u64>,
    /// A microVM's host processes and their confinement, from the last startup run.
    host_processes: Vec<HostProcess>,
    /// Runs that succeeded, and the error line of each that failed (warm-up included).
    successes: usize,
    failures: Vec<String>,
    hypervisor: Option<String>,
    accelerator: Option<String>,
    isolation: Isolation,
}

/// Failed runs after which a runtime that never succeeded is given up (it would only fail
/// again, as crun does on hybrid cgroups). One success keeps a runtime in: a failure under
/// load is counted, it does not drop the runtime.
const GIVE_UP_AFTER: usize = 3;

impl Sample {
    fn new(rt: Runtime) -> Sample {
        let hypervisor = rt.hypervisor.map(str::to_string);
        Sample {
            error: match (&rt.kind, &rt.binary) {
                (Kind::Oci, None) => Some(format!("{} is not installed", rt.name)),
                _ => None,
            },
            rt,
            startup: Vec::new(),
            first_output: Vec::new(),
            peak_rss: 0,
            vmm_overhead: None,
            host_processes: Vec::new(),
            successes: 0,
            failures: Vec::new(),
            hypervisor,
            accelerator: None,
            isolation: Isolation::default(),
        }
    }

    fn available(&self) -> bool {
        self.error.is_none() && !(self.successes == 0 && self.failures.len() >= GIVE_UP_AFTER)
    }

    /// Count one run: Ok(outcome) of a successful run, else the failure's error line.
    fn count(&mut self, run: Result<RunOutcome>) -> Option<RunOutcome> {
        match run {
            Ok(out) if out.success() => {
                self.successes += 1;
                Some(out)
            }
            Ok(out) => {
                self.failures.push(out.error_line());
                None
            }
            Err(e) => {
                self.failures.push(first_line(&format!("{e:#}")));
                None
            }
        }
    }

    /// Why the runtime is unavailable: its own reason, or every run failed.
    fn unavailable_reason(&self) -> Option<String> {
        if self.error.is_some() {
            return self.error.clone();
        }
        (self.successes == 0).then(|| {
            format!(
                "every run failed ({} of {}): {}",
                self.failures.len(),
                self.failures.len(),
                self.failures.first().map_or("no run made", String::as_str)
            )
        })
    }
}

pub fn run(args: &CompareArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs: must be at least 1");
    }
    let progress = Progress::new();
    measure::catch_interrupts();
    let exe = std::env::current_exe().context("finding the isobox binary (current_exe)")?;
    let exe_dir = exe
        .parent()
        .context("the isobox binary has no parent directory")?
        .to_path_buf();
    // Everything the comparison creates lives here and goes when it is dropped.
    let tmp = tempfile::Builder::new()
        .prefix("isobox-compare-")
        .tempdir()
        .context("creating a temp dir for the comparison")?;
    let bundle = match &args.bundle {
        Some(b) => CompareBundle::from_user(b, tmp.path())?,
        None => {
            progress.phase("building the default bundle (busybox + isobox-probe)");
            CompareBundle::build_default(tmp.path(), &exe_dir)?
        }
    };
    let host_boot = bundle::host_boot_id();

    let hardware_kvm =
        isobox_microvm::host::detect() == isobox_microvm::host::HostKind::HardwareKvm;
    let mut samples: Vec<Sample> = runtimes::discover(&exe, tmp.path(), hardware_kvm)
        .into_iter()
        .map(Sample::new)
        .collect();
    let mut ids = IdGen::default();

    // Warm-up: one untimed run each (a failure counts like any other).
    let true_args = bundle
        .write_config(Workload::True, &[])?
        .context("the bundle has no workload to run")?;
    progress.phase("warm-up: one run per runtime");
    for s in samples.iter_mut().filter(|s| s.available()) {
        check_interrupt()?;
        progress.step(&format!("warm-up {}", s.rt_label()));
        let run = one_run(&s.rt, &bundle, &mut ids, &true_args, &[]);
        if let Some(out) = s.count(run) {
            s.note_vm_label(&out);
        }
    }

    // Startup: /bin/true, round-robin so each run of every runtime sees the same host.
    progress.phase(&format!("startup: {} runs of {:?}", args.runs, true_args));
    for i in 0..args.runs {
        for s in rotated(&mut samples, i) {
            check_interrupt()?;
            progress.step(&format!("startup {}/{} {}", i + 1, args.runs, s.rt_label()));
            let run = one_run(&s.rt, &bundle, &mut ids, &true_args, &[]);
            if let Some(out) = s.count(run) {
                s.startup.push(out.wall);
                s.peak_rss = s.peak_rss.max(out.peak_rss_bytes);
                if let Some(v) = out.vmm_overhead_bytes {
                    s.vmm_overhead = Some(s.vmm_overhead.map_or(v, |o| o.max(v)));
                }
                if !out.host_processes.is_empty() {
                    s.host_processes = out.host_processes.clone();
                }
                s.note_vm_label(&out);
            }
        }
    }

    // First output: `echo ready`.
    if let Some(echo_args) = bundle.write_config(Workload::EchoReady, &[])? {
        progress.phase(&format!(
            "first output: {} runs of {:?}",
            args.runs, echo_args
        ));
        for i in 0..args.runs {
            for s in rotated(&mut samples, i) {
                check_interrupt()?;
                progress.step(&format!(
                    "first output {}/{} {}",
                    i + 1,
                    args.runs,
                    s.rt_label()
                ));
                let run = one_run(&s.rt, &bundle, &mut ids, &echo_args, &[]);
                if let Some(t) = s.count(run).and_then(|out| out.first_output) {
                    s.first_output.push(t);
                }
            }
        }

        // Host syscalls: one `echo ready` run under strace per runtime.
        match runtimes::which("strace") {
            None => {
                for s in &mut samples {
                    s.isolation.host_syscalls = Measured::na("strace missing");
                }
            }
            Some(strace) => {
                progress.phase("host syscalls: one run per runtime under strace -f -c");
                for (n, s) in samples.iter_mut().enumerate() {
                    if !s.available() {
                        s.isolation.host_syscalls = Measured::na("runtime unavailable");
                        continue;
                    }
                    check_interrupt()?;
                    progress.step(&format!("strace {}", s.rt_label()));
                    let out = tmp.path().join(format!("strace-{n}.txt"));
                    s.isolation.host_syscalls =
                        host_syscalls(&s.rt, &bundle, &mut ids, &echo_args, &strace, &out);
                }
            }
        }
    }

    check_interrupt()?;

    // Isolation: the probe once per runtime.
    let probe_env = probe_env(host_boot.as_deref());
    match bundle.write_config(Workload::Probe, &probe_env)? {
        Some(probe_args) => {
            progress.phase("isolation: the probe once per runtime");
            for s in samples.iter_mut().filter(|s| s.available()) {
                check_interrupt()?;
                progress.step(&format!("probe {}", s.rt_label()));
                match one_run(&s.rt, &bundle, &mut ids, &probe_args, &probe_env) {
                    Ok(out) => match isolation::find_probe_json(&out.stdout) {
                        Some(v) => {
                            isolation::apply_probe(&mut s.isolation, &v, host_boot.as_deref())
                        }
                        None => {
                            s.isolation.probe_error =
                                Some(format!("no probe JSON in its output: {}", out.error_line()))
                        }
                    },
                    Err(e) => s.isolation.probe_error = Some(first_line(&format!("{e:#}"))),
                }
            }
        }
        None => {
            let why = bundle.probe.clone().err().unwrap_or_default();
            for s in &mut samples {
                s.isolation.probe_error = Some(why.clone());
            }
        }
    }
    check_interrupt()?;
    progress.done();

    let rows = assemble(samples, &exe, &bundle.rootfs, tmp.path());
    if args.json {
        println!("{}", json::render(&rows)?);
    } else {
        print!("{}", render::table(&rows));
    }
    if let Some(dir) = &args.report {
        let host = host_summary(args.runs);
        let path = report::write(dir, &rows, &host)?;
        eprintln!("report: {}", path.display());
    }
    // Removing the temp dir here (not only on drop) reports a failure to clean up.
    let tmp_path = tmp.path().to_path_buf();
    tmp.close()
        .with_context(|| format!("removing {}", tmp_path.display()))?;
    Ok(())
}

/// Turn what was gathered into rows: statistics, ratio to runc, disk, explanation.
fn assemble(
    samples: Vec<Sample>,
    exe: &std::path::Path,
    rootfs: &std::path::Path,
    scratch: &std::path::Path,
) -> Vec<Row> {
    let runc_startup = samples
        .iter()
        .find(|s| s.rt.name == "runc" && s.available())
        .and_then(|s| Stats::of_durations(&s.startup));
    samples
        .into_iter()
        .map(|s| {
            let startup = Stats::of_durations(&s.startup);
            let error = s.unavailable_reason();
            let available = error.is_none();
            let (mut hypervisor, mut accelerator) = (s.hypervisor.clone(), s.accelerator.clone());
            if available && s.rt.backend == "microvm" && hypervisor.is_none() {
                // Quiet runs (hardware KVM) do not name it: ask the same selection `run` used.
                (hypervisor, accelerator) = disk::auto_vm_label();
            }
            let disk = if available {
                disk::parts(&s.rt, exe, hypervisor.as_deref(), rootfs, scratch)
            } else {
                Vec::new()
            };
            let mut row = Row {
                runtime: s.rt.name.clone(),
                backend: s.rt.backend.clone(),
                available,
                error,
                binary: s.rt.binary.as_ref().map(|b| b.display().to_string()),
                startup_ms: startup,
                first_output_ms: Stats::of_durations(&s.first_output),
                ratio_to_runc: ratio(startup, runc_startup),
                peak_rss_bytes: (available && s.peak_rss > 0).then_some(s.peak_rss),
                vmm_overhead_rss_bytes: s.vmm_overhead.filter(|_| available),
                host_processes: if available {
                    s.host_processes
                } else {
                    Vec::new()
                },
                disk_bytes: available.then(|| disk.iter().map(|p| p.bytes).sum()),
                disk,
                isolation: s.isolation,
                hypervisor,
                accelerator,
                explanation: String::new(),
                runs: s.successes + s.failures.len(),
                failed_runs: s.failures.len(),
                first_failure: s.failures.first().cloned(),
            };
            if !available {
                row.isolation = Isolation {
                    host_syscalls: Measured::na("runtime unavailable"),
                    ..Default::default()
                };
            }
            row.explanation = render::explain(&row);
            if available && !s.failures.is_empty() {
                row.explanation.push_str(&format!(
                    " ({} failed runs: {})",
                    s.failures.len(),
                    s.failures[0]
                ));
            }
            row
        })
        .collect()
}

impl Sample {
    fn rt_label(&self) -> String {
        if let Some(h) = self.rt.hypervisor {
            format!("isobox/{} ({h})", self.rt.backend)
        } else if self.rt.kind == Kind::Isobox {
            format!("isobox/{}", self.rt.backend)
        } else {
            self.rt.name.clone()
        }
    }

    /// A microVM run names its hypervisor and accelerator on stderr; keep the last seen.
    fn note_vm_label(&mut self, out: &RunOutcome) {
        if self.rt.backend != "microvm" {
            return;
        }
        let (h, a) = disk::parse_vm_label(&String::from_utf8_lossy(&out.stderr));
        if h.is_some() {
            self.hypervisor = h;
        }
        if a.is_some() {
            self.accelerator = a;
        }
    }
}

/// Run `args` once under `rt`, then remove whatever the runtime left behind.
fn one_run(
    rt: &Runtime,
    bundle: &CompareBundle,
    ids: &mut IdGen,
    args: &[String],
    env: &[(String, String)],
) -> Result<RunOutcome> {
    let id = ids.next();
    let argv = rt.argv(bundle, &id, args);
    let sampler = (rt.backend == "microvm")
        .then(|| vm_processes::Sampler::start(rt.state_root.join(&id).display().to_string()));
    let mut result = run_measured(&argv, env, rt.timeout);
    let sampled = sampler
        .map(vm_processes::Sampler::finish)
        .unwrap_or_default();
    if let Ok(out) = result.as_mut() {
        out.vmm_overhead_bytes = sampled.overhead;
        out.host_processes = sampled.processes;
    }
    rt.cleanup(&id);
    result
}

/// Stop the comparison once a signal arrived; the caller's temp dir goes on the way out.
fn check_interrupt() -> Result<()> {
    if measure::interrupted() {
        bail!("interrupted: stopped, and removed what the runs left behind");
    }
    Ok(())
}

/// Distinct host syscalls of one run under `strace -f -c`.
fn host_syscalls(
    rt: &Runtime,
    bundle: &CompareBundle,
    ids: &mut IdGen,
    args: &[String],
    strace: &std::path::Path,
    out: &std::path::Path,
) -> Measured<u64> {
    let id = ids.next();
    let argv = isolation::strace_argv(strace, out, &rt.argv(bundle, &id, args));
    // Tracing slows every syscall: allow more time than a plain run.
    let result = run_measured(&argv, &[], rt.timeout * 3);
    rt.cleanup(&id);
    if measure::interrupted() {
        return Measured::na("interrupted");
    }
    match result {
        Ok(run) if run.success() => match isolation::read_strace_summary(out) {
            Ok(rows) => Measured::Value(rows.len() as u64),
            Err(e) => Measured::na(first_line(&format!("{e:#}"))),
        },
        Ok(run) => Measured::na(format!("traced run failed: {}", run.error_line())),
        Err(e) => Measured::na(first_line(&format!("{e:#}"))),
    }
}

/// The available samples, starting at a different one each round so no runtime always runs
/// first (right after a cold page cache) or last.
fn rotated(samples: &mut [Sample], round: usize) -> impl Iterator<Item = &mut Sample> {
    let n = samples.len().max(1);
    let (a, b) = samples.split_at_mut(round % n);
    b.iter_mut().chain(a.iter_mut()).filter(|s| s.available())
}

/// What the probe needs to tell the host from a sandbox: the host's boot id, and host pids
/// (init and this process, with start times so a recycled pid does not match) to look for.
fn probe_env(host_boot: Option<&str>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(b) = host_boot {
        env.push((HOST_BOOT_ID_ENV.to_string(), b.to_string()));
    }
    let pids: Vec<String> = [1, std::process::id() as i32]
        .iter()
        .filter_map(|&p| Some(format!("{p}:{}", isobox_common::proc::start_time(p)?)))
        .collect();
    if !pids.is_empty() {
        env.push((bundle::HOST_PIDS_ENV.to_string(), pids.join(",")));
    }
    env
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn host_summary(runs: usize) -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Linux {} on {cpus} CPUs; {runs} measured runs per runtime and workload, interleaved.",
        release.trim()
    )
}

/// Container ids unique to this comparison.
#[derive(Default)]
struct IdGen(u32);

impl IdGen {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("isobox-cmp-{}-{}", std::process::id(), self.0)
    }
}

/// Progress on stderr: one line rewritten in place on a terminal, a plain line per phase
/// otherwise.
struct Progress {
    tty: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn phase(&self, msg: &str) {
        if self.tty {
            eprint!("\r\x1b[2K{msg}");
        } else {
            eprintln!("compare: {msg}");
        }
    }

    fn step(&self, msg: &str) {
        if self.tty {
            eprint!("\r\x1b[2K  {msg}");
        }
    }

    fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_starts_at_a_different_runtime_each_round() {
        let mut samples = samples();
        samples[1].error = Some("down".into());
        let n = samples.len();
        let order =
            |s: &mut Vec<Sample>, r| rotated(s, r).map(|s| s.rt_label()).collect::<Vec<_>>();
        let r0 = order(&mut samples, 0);
        let r2 = order(&mut samples, 2);
        assert_eq!(r0.len(), n - 1, "the unavailable one is skipped");
        assert_eq!(r0[0], "isobox/container");
        assert_eq!(r2[0], samples[2].rt_label());
        assert_eq!(r2.len(), n - 1);
    }

    fn samples() -> Vec<Sample> {
        runtimes::discover(
            std::path::Path::new("/x"),
            std::path::Path::new("/tmp/none"),
            false,
        )
        .into_iter()
        .map(|rt| Sample {
            error: None,
            ..Sample::new(rt)
        })
        .collect()
    }

    fn outcome(code: i32, stderr: &str) -> RunOutcome {
        RunOutcome {
            wall: std::time::Duration::from_millis(5),
            first_output: None,
            exit_code: code,
            peak_rss_bytes: 0,
            vmm_overhead_bytes: None,
            host_processes: Vec::new(),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn one_failed_run_is_counted_and_does_not_drop_the_runtime() {
        let mut s = samples().remove(1);
        assert_eq!(s.rt.backend, "microvm");
        (s.hypervisor, s.accelerator) = (Some("qemu".into()), Some("tcg".into()));
        let tcg = "isobox: warning: the VM runs under qemu TCG (software emulation)";
        let err = "isobox: microvm: guest agent: no Hello within 60 s of boot";
        // The warm-up fails under load, the next runs succeed.
        assert!(s
            .count(Ok(outcome(1, &format!("{tcg}\n{err}\n"))))
            .is_none());
        assert!(s.available(), "one failure dropped the runtime");
        assert!(s.count(Ok(outcome(0, tcg))).is_some());
        s.startup.push(std::time::Duration::from_millis(5));
        for _ in 0..5 {
            s.count(Err(anyhow::anyhow!(
                "still running after 90 s, killed\nmore"
            )));
        }
        assert!(
            s.available(),
            "failures after a success dropped the runtime"
        );
        let rows = assemble(
            vec![s],
            std::path::Path::new("/x"),
            std::path::Path::new("/x"),
            std::path::Path::new("/tmp/none"),
        );
        let row = &rows[0];
        assert!(row.available, "{:?}", row.error);
        assert_eq!((row.runs, row.failed_runs), (7, 6));
        assert_eq!(
            row.first_failure.as_deref(),
            Some(err),
            "the real error, not the warning"
        );
        assert!(row.explanation.contains(err), "{}", row.explanation);
        let json = crate::compare::json::render(&rows).unwrap();
        assert!(json.contains("\"failed_runs\": 6"), "{json}");
        assert!(render::table(&rows).contains("6/7"));
        let html = report::html(&rows, "host");
        assert!(html.contains("<th>failed runs</th>"), "{html}");
        assert!(html.contains(">6/7</td>"), "{html}");
    }

    #[test]
    fn a_runtime_is_unavailable_only_when_every_run_failed() {
        let mut s = samples().remove(0);
        for _ in 0..GIVE_UP_AFTER {
            assert!(s.available());
            s.count(Ok(outcome(1, "isobox: cgroups: no\n")));
        }
        assert!(!s.available(), "a runtime that never ran was kept on");
        let reason = s.unavailable_reason().unwrap();
        assert_eq!(reason, "every run failed (3 of 3): isobox: cgroups: no");
    }

    #[test]
    fn ids_are_unique() {
        let mut g = IdGen::default();
        assert_ne!(g.next(), g.next());
    }
}
