//! The terminal table and the one-line explanation of each row.

use super::measure::Stats;
use super::row::{Measured, Row};

/// What the columns measure, printed under the table (and in the report).
pub const NOTES: &[&str] = &[
    "startup: wall time of `run` of /bin/true, from spawn to exit; first output: to the first byte of `echo ready`; median (min-max) over the runs, interleaved round-robin.",
    "peak RSS: wait4 ru_maxrss of the runtime's host process tree - the largest single process (for a microVM the VMM, holding the guest memory it touched), not a sum; the host row is the floor (the forked copy of isobox before exec counts too).",
    "disk: bytes needed beyond the bundle - the runtime binary (not its shared libraries); for the microVM also kernel, agent, hypervisor and initramfs (with qemu the agent's, cached, and virtiofsd; with the built-in VMM one built per run from the rootfs).",
    "host syscalls: distinct syscalls the runtime and workload made on the host kernel in one run (strace -f -c); a guest's own syscalls stay in its kernel.",
];

pub fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn fmt_stats(s: &Option<Stats>) -> String {
    match s {
        Some(s) => format!("{} ({}-{})", fmt_ms(s.median), fmt_ms(s.min), fmt_ms(s.max)),
        None => "-".into(),
    }
}

pub fn fmt_bytes(b: Option<u64>) -> String {
    let Some(b) = b else { return "-".into() };
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn fmt_bool(b: Option<bool>) -> String {
    match b {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "?".into(),
    }
}

fn fmt_opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "?".into(), T::to_string)
}

fn fmt_measured(m: &Measured<u64>) -> String {
    match m {
        Measured::Value(v) => v.to_string(),
        Measured::NotAvailable(why) => why.clone(),
    }
}

/// What choosing this runtime buys or costs, in one line, from what was measured.
pub fn explain(row: &Row) -> String {
    if !row.available {
        return format!(
            "unavailable: {}",
            row.error.as_deref().unwrap_or("did not run")
        );
    }
    let mut parts: Vec<String> = Vec::new();
    let iso = &row.isolation;
    match (row.backend.as_str(), iso.shared_kernel) {
        ("none", _) => parts.push("no isolation: baseline".into()),
        ("microvm", Some(true)) => {
            parts.push("microVM reports the host kernel: check the backend".into())
        }
        ("microvm", _) => {
            let accel = row.accelerator.as_deref().unwrap_or("unknown accelerator");
            let hyp = row.hypervisor.as_deref().unwrap_or("a VMM");
            if accel.eq_ignore_ascii_case("tcg") {
                parts.push(format!(
                    "own kernel under software emulation (TCG, {hyp}): strong isolation, slow start"
                ));
            } else {
                parts.push(format!(
                    "own kernel on {hyp} ({accel}): a guest kernel bug stays in the VM"
                ));
            }
        }
        (_, Some(false)) => parts.push("does not share the host kernel".into()),
        _ => parts.push("shares the host kernel: a kernel bug is a host bug".into()),
    }
    if row.backend != "none" {
        if iso.host_pids_visible == Some(true) {
            parts.push("host processes visible".into());
        }
        if iso.seccomp.as_deref() == Some("disabled") && row.backend == "container" {
            parts.push("no seccomp filter".into());
        }
        match (iso.capabilities, row.backend.as_str()) {
            (Some(c), "microvm") => parts.push(format!("{c} capabilities, inside the guest only")),
            (Some(c), _) => parts.push(format!("{c} capabilities")),
            (None, _) => {}
        }
    }
    match (row.runtime.as_str(), row.ratio_to_runc) {
        ("runc", _) | (_, None) => {}
        (_, Some(r)) => parts.push(format!("{r:.2}x runc's startup")),
    }
    parts.join("; ")
}

/// Each microVM's host processes and their confinement: a guest that escapes its VMM holds
/// what that process holds. Empty when no microVM ran.
fn host_processes(rows: &[Row], label_w: usize) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|r| !r.host_processes.is_empty()) {
        if out.is_empty() {
            out.push_str(
                "\nhost processes of each microVM (what a guest escaping into them holds):\n",
            );
        }
        for (i, p) in row.host_processes.iter().enumerate() {
            let label = if i == 0 {
                row.full_label()
            } else {
                String::new()
            };
            out.push_str(&format!("{label:<label_w$}  {}\n", p.describe()));
        }
    }
    out
}

/// The ratios worth reading off one run (absolute times under emulation mean little; ratios
/// taken on the same host in the same run do): the isobox container against runc and crun,
/// and, where both ran, the built-in VMM against qemu on the same guest.
pub fn ratios(rows: &[Row]) -> Vec<(String, f64)> {
    let find = |runtime: &str, backend: &str, hypervisor: Option<&str>| {
        rows.iter().find(|r| {
            r.available
                && r.runtime == runtime
                && r.backend == backend
                && (hypervisor.is_none() || r.hypervisor.as_deref() == hypervisor)
        })
    };
    let median = |r: &Row| r.startup_ms.as_ref().map(|s| s.median);
    let mut out = Vec::new();
    let mut push = |what: String, a: Option<f64>, b: Option<f64>| {
        if let (Some(a), Some(b)) = (a, b) {
            if b > 0.0 {
                out.push((what, a / b));
            }
        }
    };
    if let Some(c) = find("isobox", "container", None) {
        for peer in ["runc", "crun"] {
            if let Some(p) = find(peer, "container", None) {
                push(
                    format!("isobox container / {peer}, startup"),
                    median(c),
                    median(p),
                );
            }
        }
    }
    if let (Some(b), Some(q)) = (
        find("isobox", "microvm", Some("builtin")),
        find("isobox", "microvm", Some("qemu")),
    ) {
        push(
            "built-in VMM / qemu, startup (boot to the agent and the workload's exit)".into(),
            median(b),
            median(q),
        );
        push(
            "built-in VMM / qemu, peak RSS (the VMM with the guest memory it touched)".into(),
            b.peak_rss_bytes.map(|v| v as f64),
            q.peak_rss_bytes.map(|v| v as f64),
        );
        push(
            "built-in VMM / qemu, RSS beyond guest RAM (the VMM's own memory)".into(),
            b.vmm_overhead_rss_bytes.map(|v| v as f64),
            q.vmm_overhead_rss_bytes.map(|v| v as f64),
        );
    }
    out
}

/// The terminal table: one line per runtime, then one explanation line per runtime, then the
/// notes on what the columns mean.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "RUNTIME",
        "STARTUP ms",
        "FIRST OUTPUT ms",
        "xRUNC",
        "PEAK RSS",
        "DISK",
        "SHARED KERNEL",
        "HOST PIDS",
        "CAPS",
        "SECCOMP",
        "REACHABLE",
        "HOST SYSCALLS",
        "FAILED",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let mut unavailable: Vec<(usize, String)> = Vec::new();
    for row in rows {
        if !row.available {
            unavailable.push((
                cells.len(),
                format!(
                    "unavailable: {}",
                    row.error.as_deref().unwrap_or("did not run")
                ),
            ));
            cells.push(vec![row.full_label()]);
            continue;
        }
        let iso = &row.isolation;
        cells.push(vec![
            row.full_label(),
            fmt_stats(&row.startup_ms),
            fmt_stats(&row.first_output_ms),
            row.ratio_to_runc
                .map_or_else(|| "-".into(), |r| format!("{r:.2}")),
            fmt_bytes(row.peak_rss_bytes),
            fmt_bytes(row.disk_bytes),
            fmt_bool(iso.shared_kernel),
            fmt_bool(iso.host_pids_visible),
            fmt_opt(&iso.capabilities),
            fmt_opt(&iso.seccomp),
            fmt_opt(&iso.syscalls_reachable),
            fmt_measured(&iso.host_syscalls),
            row.failed_cell(),
        ]);
    }
    let ncols = header.len();
    let mut width = vec![0usize; ncols];
    for (i, line) in cells.iter().enumerate() {
        if unavailable.iter().any(|(at, _)| *at == i) {
            width[0] = width[0].max(line[0].chars().count());
            continue;
        }
        for (c, cell) in line.iter().enumerate() {
            width[c] = width[c].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, line) in cells.iter().enumerate() {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            if c > 0 {
                text.push_str("  ");
            }
            text.push_str(&format!("{cell:<w$}", w = width[c]));
        }
        if let Some((_, msg)) = unavailable.iter().find(|(at, _)| *at == i) {
            text.push_str("  ");
            text.push_str(msg);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.push('\n');
    let label_w = rows.iter().map(|r| r.full_label().len()).max().unwrap_or(0);
    for row in rows {
        out.push_str(&format!(
            "{:<label_w$}  {}\n",
            row.full_label(),
            row.explanation
        ));
    }
    out.push_str(&host_processes(rows, label_w));
    let ratios = ratios(rows);
    if !ratios.is_empty() {
        out.push_str("\nratios in this run (medians):\n");
        for (what, r) in &ratios {
            out.push_str(&format!("  {what}: {r:.2}\n"));
        }
    }
    out.push('\n');
    for note in NOTES {
        out.push_str(&format!("* {note}\n"));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::compare::row::{HostProcess, Isolation};

    /// Fixed rows shared by the rendering tests.
    pub fn sample_rows() -> Vec<Row> {
        let iso = |shared, pids, caps, sc: &str, reach, host| Isolation {
            shared_kernel: shared,
            host_pids_visible: pids,
            capabilities: caps,
            seccomp: Some(sc.to_string()),
            syscalls_reachable: reach,
            host_syscalls: Measured::Value(host),
            ..Default::default()
        };
        let stats = |a, b, c| {
            Some(Stats {
                min: a,
                median: b,
                max: c,
            })
        };
        let mut rows = vec![
            Row {
                runtime: "isobox".into(),
                backend: "container".into(),
                available: true,
                startup_ms: stats(10.0, 12.5, 30.25),
                first_output_ms: stats(9.0, 11.0, 20.0),
                ratio_to_runc: Some(0.625),
                peak_rss_bytes: Some(3 * 1024 * 1024),
                disk_bytes: Some(5_000_000),
                isolation: iso(Some(true), Some(false), Some(3), "disabled", Some(320), 61),
                ..Default::default()
            },
            Row {
                runtime: "isobox".into(),
                backend: "microvm".into(),
                available: true,
                startup_ms: stats(1800.0, 2100.0, 2500.0),
                first_output_ms: stats(1700.0, 2000.0, 2400.0),
                ratio_to_runc: Some(105.0),
                peak_rss_bytes: Some(200 * 1024 * 1024),
                disk_bytes: Some(80_000_000),
                hypervisor: Some("qemu".into()),
                accelerator: Some("tcg".into()),
                isolation: iso(Some(false), Some(false), Some(3), "disabled", Some(320), 45),
                host_processes: vec![
                    HostProcess {
                        name: "isobox".into(),
                        seccomp: "disabled".into(),
                        no_new_privs: false,
                        capabilities: 41,
                        bounding_capabilities: 41,
                        own_namespaces: vec!["net".into()],
                    },
                    HostProcess {
                        name: "qemu-system-x86".into(),
                        seccomp: "filter".into(),
                        no_new_privs: true,
                        capabilities: 0,
                        bounding_capabilities: 0,
                        own_namespaces: vec!["ipc".into(), "mnt".into(), "net".into()],
                    },
                ],
                ..Default::default()
            },
            Row {
                runtime: "runc".into(),
                backend: "container".into(),
                available: true,
                startup_ms: stats(15.0, 20.0, 37.0),
                first_output_ms: stats(14.0, 18.0, 30.0),
                ratio_to_runc: Some(1.0),
                peak_rss_bytes: Some(12 * 1024 * 1024),
                disk_bytes: Some(9_000_000),
                isolation: iso(Some(true), Some(false), Some(3), "disabled", Some(320), 95),
                ..Default::default()
            },
            Row {
                runtime: "crun".into(),
                backend: "container".into(),
                available: false,
                error: Some("cgroups in hybrid mode not supported".into()),
                isolation: Isolation {
                    host_syscalls: Measured::na("runtime unavailable"),
                    ..Default::default()
                },
                ..Default::default()
            },
            Row {
                runtime: "host".into(),
                backend: "none".into(),
                available: true,
                startup_ms: stats(0.5, 0.7, 1.0),
                first_output_ms: stats(0.4, 0.6, 0.9),
                ratio_to_runc: Some(0.035),
                peak_rss_bytes: Some(1024 * 1024),
                disk_bytes: Some(0),
                isolation: iso(Some(true), Some(true), Some(41), "disabled", Some(330), 20),
                ..Default::default()
            },
        ];
        for r in &mut rows {
            r.explanation = explain(r);
        }
        rows
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(fmt_ms(12.345), "12.3");
        assert_eq!(fmt_ms(2100.4), "2100");
        assert_eq!(fmt_bytes(Some(512)), "512 B");
        assert_eq!(fmt_bytes(Some(3 * 1024 * 1024)), "3.0 MiB");
        assert_eq!(fmt_bytes(None), "-");
        assert_eq!(
            fmt_stats(&Some(Stats {
                min: 1.0,
                median: 2.0,
                max: 3.0
            })),
            "2.0 (1.0-3.0)"
        );
    }

    #[test]
    fn explanations_follow_the_facts() {
        let rows = sample_rows();
        assert!(rows[0].explanation.starts_with("shares the host kernel"));
        assert!(
            rows[0].explanation.contains("0.62x runc"),
            "{}",
            rows[0].explanation
        );
        assert!(rows[1]
            .explanation
            .starts_with("own kernel under software emulation (TCG, qemu)"));
        assert!(!rows[2].explanation.contains("x runc"));
        assert_eq!(
            rows[3].explanation,
            "unavailable: cgroups in hybrid mode not supported"
        );
        assert!(rows[4].explanation.starts_with("no isolation: baseline"));
    }

    #[test]
    fn table_has_one_aligned_line_per_runtime() {
        let rows = sample_rows();
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("RUNTIME"));
        assert!(lines[1].starts_with("isobox/container "));
        assert!(lines[1].contains("12.5 (10.0-30.2)"), "{}", lines[1]);
        assert!(lines[2].starts_with("isobox/microvm (qemu, tcg)"));
        assert!(lines[4].contains("unavailable: cgroups in hybrid mode"));
        // Columns line up: "STARTUP ms" starts where each available row's startup cell does.
        let col = lines[0].find("STARTUP ms").unwrap();
        assert_eq!(&lines[1][col..col + 4], "12.5");
        assert_eq!(&lines[3][col..col + 4], "20.0");
        // Explanations follow, one per runtime, then the notes.
        // Labelled with hypervisor and accelerator, padded to the longest such label.
        let w = "isobox/microvm (qemu, tcg)".len();
        assert!(t.contains(&format!("\n{:<w$}  no isolation: baseline", "host")));
        assert!(t.contains("* peak RSS: wait4 ru_maxrss"));
    }

    #[test]
    fn each_microvms_host_processes_are_listed_with_their_confinement() {
        let t = table(&sample_rows());
        let w = "isobox/microvm (qemu, tcg)".len();
        let at = t
            .find("host processes of each microVM")
            .expect("the section");
        let mut lines = t[at..].lines().skip(1);
        assert_eq!(
            lines.next().unwrap(),
            format!(
                "{:<w$}  isobox: seccomp disabled, 41 capabilities (41 bounding), own net",
                "isobox/microvm (qemu, tcg)"
            )
        );
        assert_eq!(
            lines.next().unwrap(),
            format!(
                "{:<w$}  qemu-system-x86: seccomp filter, no_new_privs, 0 capabilities (0 bounding), own ipc mnt net",
                ""
            )
        );
        // Only microVMs have host processes of their own.
        let mut containers = sample_rows();
        containers.retain(|r| r.backend != "microvm");
        assert!(!table(&containers).contains("host processes"));
    }

    #[test]
    fn ratios_of_one_run() {
        let mut rows = sample_rows();
        // No crun and no second microVM in the sample: only isobox container / runc.
        let r = ratios(&rows);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].0, "isobox container / runc, startup");
        assert!((r[0].1 - 12.5 / 20.0).abs() < 1e-9, "{r:?}");
        // The built-in VMM and qemu on one host: their startup and RSS ratios.
        let mut builtin = rows[1].clone();
        builtin.hypervisor = Some("builtin".into());
        builtin.accelerator = Some("kvm".into());
        builtin.startup_ms = Some(Stats {
            min: 500.0,
            median: 600.0,
            max: 700.0,
        });
        builtin.peak_rss_bytes = Some(100);
        rows[1].accelerator = Some("kvm".into());
        rows[1].peak_rss_bytes = Some(400);
        builtin.vmm_overhead_rss_bytes = Some(10);
        rows[1].vmm_overhead_rss_bytes = Some(40);
        let qemu_median = rows[1].startup_ms.as_ref().unwrap().median;
        rows.insert(1, builtin);
        let r = ratios(&rows);
        assert_eq!(r.len(), 4, "{r:?}");
        assert!(r[1].0.starts_with("built-in VMM / qemu, startup"));
        assert!((r[1].1 - 600.0 / qemu_median).abs() < 1e-9, "{r:?}");
        assert!((r[2].1 - 0.25).abs() < 1e-9, "{r:?}");
        assert!(r[3].0.contains("beyond guest RAM"), "{r:?}");
        assert!((r[3].1 - 0.25).abs() < 1e-9, "{r:?}");
        let t = table(&rows);
        assert!(t.contains("isobox/microvm (builtin, kvm)"), "{t}");
        assert!(t.contains("isobox/microvm (qemu, kvm)"), "{t}");
        assert!(t.contains("ratios in this run (medians):"), "{t}");
    }
}
