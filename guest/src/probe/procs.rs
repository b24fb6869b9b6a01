//! The processes the workload can see, and whether they look like the host's.

use std::collections::BTreeMap;

use serde::Serialize;

/// Env var through which the harness names host processes: comma-separated `pid` or
/// `pid:starttime` (field 22 of the host's `/proc/<pid>/stat`; when given it must match too,
/// which rules out a same-numbered process in another pid namespace).
pub const HOST_PIDS_ENV: &str = "ISOBOX_PROBE_HOST_PIDS";

/// Above this many non-kernel processes the view is taken to be a whole machine's.
const MANY_PROCESSES: usize = 64;

/// The `processes` object of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Processes {
    /// Number of `/proc/<pid>` directories.
    pub visible: usize,
    /// Those whose parent is kthreadd (pid 2), plus kthreadd itself.
    pub kernel_threads: usize,
    /// All visible pids, ascending (raw data for the harness).
    pub pids: Vec<u32>,
    pub pid_self: u32,
    /// `/proc/1/cmdline` with NULs as spaces; null when unreadable.
    pub pid1_cmdline: Option<String>,
    pub init_is_self: bool,
    /// kthreadd is visible as pid 2 with parent 0: we share the init pid namespace of the
    /// kernel we run on (the host's, unless that kernel is a VM guest's).
    pub init_pid_ns: bool,
    /// Our namespaces as `/proc/self/ns/<kind>` link targets, e.g. "pid:[4026531836]";
    /// compare with the host's to tell which are shared.
    pub namespaces: BTreeMap<String, String>,
    /// Entries of `ISOBOX_PROBE_HOST_PIDS` (0 when unset).
    pub host_pids_given: usize,
    /// How many of them we can see (and whose starttime matches, where given).
    pub host_pids_matched: usize,
    /// Our best answer to "can the workload see host processes?".
    pub host_pids_visible: bool,
    /// Which rule decided `host_pids_visible`.
    pub host_pids_reason: String,
}

/// One `ISOBOX_PROBE_HOST_PIDS` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPid {
    pub pid: u32,
    pub starttime: Option<u64>,
}

/// Parses `ISOBOX_PROBE_HOST_PIDS`; malformed entries are skipped.
pub fn parse_host_pids(text: &str) -> Vec<HostPid> {
    text.split(',')
        .filter_map(|item| {
            let item = item.trim();
            let (pid, start) = match item.split_once(':') {
                Some((p, s)) => (p, Some(s.trim().parse().ok()?)),
                None => (item, None),
            };
            Some(HostPid {
                pid: pid.trim().parse().ok()?,
                starttime: start,
            })
        })
        .collect()
}

/// `(ppid, starttime)` from a `/proc/<pid>/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted after the last ')'.
pub fn parse_stat(text: &str) -> Option<(u32, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, starttime field 22.
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

/// Whether a pid-1 command line is a machine's init rather than a sandbox's own first process.
pub fn looks_like_host_init(cmdline: &str) -> bool {
    let argv0 = cmdline.split_whitespace().next().unwrap_or("");
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    !cmdline.contains("isobox") && matches!(base, "systemd" | "init" | "upstart" | "openrc-init")
}

fn read_stat(pid: u32) -> Option<(u32, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn namespaces() -> BTreeMap<String, String> {
    let kinds = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];
    kinds
        .iter()
        .filter_map(|k| {
            let target = std::fs::read_link(format!("/proc/self/ns/{k}")).ok()?;
            Some((k.to_string(), target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// The inputs of the `host_pids_visible` decision, kept apart so it can be tested.
pub struct Evidence<'a> {
    pub shared_kernel: Option<bool>,
    pub host_pids_given: usize,
    pub host_pids_matched: usize,
    pub init_pid_ns: bool,
    pub init_is_self: bool,
    pub pid1_cmdline: Option<&'a str>,
    pub user_processes: usize,
}

/// Decides `host_pids_visible`, strongest evidence first.
pub fn decide(e: &Evidence) -> (bool, &'static str) {
    if e.shared_kernel == Some(false) {
        return (false, "different kernel (boot_id differs from the host's)");
    }
    if e.host_pids_given > 0 {
        let all = e.host_pids_matched == e.host_pids_given;
        return (all, "host pid list from ISOBOX_PROBE_HOST_PIDS");
    }
    let pid1 = e.pid1_cmdline.unwrap_or("");
    let sandbox_init = e.init_is_self || pid1.contains("isobox");
    if e.init_pid_ns && !sandbox_init {
        return (true, "kernel threads visible: init pid namespace");
    }
    if !e.init_is_self && looks_like_host_init(pid1) {
        return (true, "pid 1 looks like a host init");
    }
    if e.user_processes > MANY_PROCESSES {
        return (true, "many processes visible");
    }
    (false, "no sign of host processes")
}

pub fn probe(shared_kernel: Option<bool>) -> (Processes, Vec<String>) {
    let mut errors = Vec::new();
    let mut pids: Vec<u32> = match std::fs::read_dir("/proc") {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(e) => {
            errors.push(format!("processes: listing /proc: {e}"));
            Vec::new()
        }
    };
    pids.sort_unstable();
    let stats: Vec<(u32, Option<(u32, u64)>)> = pids.iter().map(|&p| (p, read_stat(p))).collect();
    let kernel_threads = stats
        .iter()
        .filter(|(pid, s)| matches!(s, Some((2, _))) || (*pid == 2 && matches!(s, Some((0, _)))))
        .count();
    let init_pid_ns = matches!(read_stat(2), Some((0, _)));
    let pid1_cmdline = match std::fs::read("/proc/1/cmdline") {
        Ok(raw) => Some(
            String::from_utf8_lossy(&raw)
                .trim_end_matches('\0')
                .replace('\0', " "),
        ),
        Err(e) => {
            errors.push(format!("processes: reading /proc/1/cmdline: {e}"));
            None
        }
    };
    let host = std::env::var(HOST_PIDS_ENV)
        .map(|v| parse_host_pids(&v))
        .unwrap_or_default();
    let matched = host
        .iter()
        .filter(|h| match (h.starttime, read_stat(h.pid)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some((_, got))) => want == got,
        })
        .count();
    let pid_self = std::process::id();
    let init_is_self = pid_self == 1;
    let evidence = Evidence {
        shared_kernel,
        host_pids_given: host.len(),
        host_pids_matched: matched,
        init_pid_ns,
        init_is_self,
        pid1_cmdline: pid1_cmdline.as_deref(),
        user_processes: pids.len().saturating_sub(kernel_threads),
    };
    let (visible, reason) = decide(&evidence);
    let procs = Processes {
        visible: pids.len(),
        kernel_threads,
        pids,
        pid_self,
        init_is_self,
        init_pid_ns,
        namespaces: namespaces(),
        host_pids_given: host.len(),
        host_pids_matched: matched,
        host_pids_visible: visible,
        host_pids_reason: reason.to_string(),
        pid1_cmdline,
    };
    (procs, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line = "42 (we ird) (x)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 \
                    1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some((7, 123456)));
        assert_eq!(parse_stat("2 (kthreadd) S 0 0 0"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_host_pid_list() {
        let got = parse_host_pids("1, 4242:98765 ,x,7:y,");
        assert_eq!(
            got,
            [
                HostPid {
                    pid: 1,
                    starttime: None
                },
                HostPid {
                    pid: 4242,
                    starttime: Some(98765)
                },
            ]
        );
    }

    #[test]
    fn host_init_detection() {
        assert!(looks_like_host_init("/sbin/init splash"));
        assert!(looks_like_host_init("/lib/systemd/systemd --system"));
        assert!(!looks_like_host_init("/isobox/init"));
        assert!(!looks_like_host_init("sh -c sleep 1"));
        assert!(!looks_like_host_init(""));
    }

    fn ev() -> Evidence<'static> {
        Evidence {
            shared_kernel: None,
            host_pids_given: 0,
            host_pids_matched: 0,
            init_pid_ns: false,
            init_is_self: false,
            pid1_cmdline: Some("/bin/sh"),
            user_processes: 3,
        }
    }

    #[test]
    fn decision_rules() {
        assert!(!decide(&ev()).0);
        assert!(
            decide(&Evidence {
                init_pid_ns: true,
                ..ev()
            })
            .0
        );
        // A microVM: kernel threads are the guest's own, pid 1 is our agent.
        let vm = Evidence {
            init_pid_ns: true,
            pid1_cmdline: Some("/isobox-agent"),
            ..ev()
        };
        assert!(!decide(&vm).0);
        let other_kernel = Evidence {
            shared_kernel: Some(false),
            init_pid_ns: true,
            ..ev()
        };
        assert!(!decide(&other_kernel).0);
        let listed = Evidence {
            host_pids_given: 2,
            host_pids_matched: 2,
            ..ev()
        };
        assert!(decide(&listed).0);
        let partly = Evidence {
            host_pids_given: 2,
            host_pids_matched: 1,
            init_pid_ns: true,
            ..ev()
        };
        assert!(!decide(&partly).0);
        assert!(
            decide(&Evidence {
                pid1_cmdline: Some("/sbin/init"),
                ..ev()
            })
            .0
        );
        assert!(
            decide(&Evidence {
                user_processes: 500,
                ..ev()
            })
            .0
        );
    }
}
