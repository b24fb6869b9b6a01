//! Isolation facts: what the probe saw from inside, and how many distinct host syscalls a run
//! made (strace from outside).

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use anyhow::{bail, Result};
use serde_json::Value;

use super::row::Isolation;

/// Find the probe's JSON object in a run's stdout (the runtime may print lines around it).
pub fn find_probe_json(stdout: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(stdout);
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text.trim()) {
        return Some(v);
    }
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => None,
        })
}

/// The first of `paths` (JSON pointers) present in `v`.
fn pick<'a>(v: &'a Value, paths: &[&str]) -> Option<&'a Value> {
    paths
        .iter()
        .find_map(|p| v.pointer(p).filter(|x| !x.is_null()))
}

/// Fill the probe's half of `Isolation` from its JSON. `host_boot_id` decides
/// `shared_kernel` when the probe reports only the boot id it saw.
pub fn apply_probe(iso: &mut Isolation, probe: &Value, host_boot_id: Option<&str>) {
    iso.shared_kernel = pick(
        probe,
        &["/kernel/shared_kernel", "/shared_kernel", "/kernel/shared"],
    )
    .and_then(Value::as_bool)
    .or_else(|| {
        let seen = pick(probe, &["/boot_id", "/kernel/boot_id"])?.as_str()?;
        Some(seen.trim() == host_boot_id?.trim())
    });
    iso.host_pids_visible = pick(
        probe,
        &[
            "/processes/host_pids_visible",
            "/host_pids_visible",
            "/pids/host_visible",
        ],
    )
    .and_then(Value::as_bool);

    match pick(
        probe,
        &[
            "/capabilities/effective",
            "/capabilities_effective",
            "/cap_eff",
            "/capabilities",
        ],
    ) {
        Some(Value::Number(n)) => iso.capabilities = n.as_u64().map(|n| n as u32),
        Some(Value::Array(names)) => set_cap_names(iso, names),
        // isobox-probe's form: {"hex": "00000000a80425fb", "names": [...]}.
        Some(Value::Object(set)) => match (set.get("names"), set.get("hex")) {
            (Some(Value::Array(names)), _) => set_cap_names(iso, names),
            (_, Some(Value::String(hex))) => iso.capabilities = count_mask(hex),
            _ => {}
        },
        // A CapEff mask as /proc/self/status prints it.
        Some(Value::String(hex)) => iso.capabilities = count_mask(hex),
        _ => {}
    }
    if let Some(n) = pick(
        probe,
        &["/capabilities/effective_count", "/capabilities/count"],
    )
    .and_then(Value::as_u64)
    {
        iso.capabilities = Some(n as u32);
    }

    let seccomp_paths = [
        "/capabilities/seccomp",
        "/seccomp/mode",
        "/seccomp_mode",
        "/seccomp",
    ];
    iso.seccomp = pick(probe, &seccomp_paths).and_then(|s| match s {
        Value::Number(n) => Some(seccomp_name(n.as_u64()?).to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    });
    iso.syscalls_reachable = pick(
        probe,
        &[
            "/syscalls/counts/reachable",
            "/syscalls_reachable",
            "/syscalls/reachable",
            "/reachable_syscalls",
        ],
    )
    .and_then(|v| v.as_u64().or_else(|| v.as_array().map(|a| a.len() as u64)));
}

fn set_cap_names(iso: &mut Isolation, names: &[Value]) {
    iso.capability_names = names
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    iso.capabilities = Some(names.len() as u32);
}

/// Set bits of a capability mask as /proc/PID/status prints it.
fn count_mask(hex: &str) -> Option<u32> {
    u64::from_str_radix(hex.trim_start_matches("0x"), 16)
        .ok()
        .map(u64::count_ones)
}

/// The names /proc/PID/status uses for `Seccomp:` 0, 1, 2.
pub fn seccomp_name(mode: u64) -> &'static str {
    match mode {
        0 => "disabled",
        1 => "strict",
        2 => "filter",
        _ => "unknown",
    }
}

/// One row of `strace -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallCount {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
}

/// Parse the summary `strace -c` writes: a header, a dashed rule, one row per syscall, a
/// dashed rule, the total. Rows end in the syscall's name; `errors` may be blank.
pub fn parse_strace_summary(text: &str) -> Result<Vec<SyscallCount>> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("% time"));
    if lines.next().is_none() {
        bail!("no `% time` header in the strace summary");
    }
    match lines.next() {
        Some(rule) if rule.trim_start().starts_with("---") => {}
        _ => bail!("no dashed rule under the strace summary header"),
    }
    let mut rows = Vec::new();
    for line in lines {
        if line.trim_start().starts_with("---") {
            return Ok(rows);
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors,] syscall
        let (name, nums) = match cols.split_last() {
            Some((name, nums)) if nums.len() == 4 || nums.len() == 5 => (name, nums),
            _ => bail!("unexpected strace summary row {line:?}"),
        };
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| anyhow::anyhow!("bad number {s:?} in strace row {line:?}"))
        };
        rows.push(SyscallCount {
            name: name.to_string(),
            calls: num(nums[3])?,
            errors: if nums.len() == 5 { num(nums[4])? } else { 0 },
        });
    }
    bail!("the strace summary has no closing rule (truncated?)")
}

/// `strace -f -c -o <out> -- <argv>`.
pub fn strace_argv(strace: &Path, out: &Path, argv: &[OsString]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        strace.into(),
        "-f".into(),
        "-c".into(),
        "-o".into(),
        out.into(),
        "--".into(),
    ];
    v.extend(argv.iter().cloned());
    v
}

/// Read and parse the summary strace left in `out`.
pub fn read_strace_summary(out: &Path) -> Result<Vec<SyscallCount>> {
    let text = fs::read_to_string(out)
        .map_err(|e| anyhow::anyhow!("reading strace summary {}: {e}", out.display()))?;
    parse_strace_summary(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUMMARY: &str = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 45.10    0.000230          23        10           mmap
 20.00    0.000102          51         2         1 openat
  0.00    0.000000           0         1           execve
  0.00    0.000000           0         3         3 newfstatat
------ ----------- ----------- --------- --------- ----------------
100.00    0.000510          30        16         4 total
";

    #[test]
    fn parses_strace_summary_rows() {
        let rows = parse_strace_summary(SUMMARY).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[1],
            SyscallCount {
                name: "openat".into(),
                calls: 2,
                errors: 1
            }
        );
        assert_eq!(rows[0].errors, 0);
        assert_eq!(rows[3].name, "newfstatat");
    }

    #[test]
    fn strace_summary_with_leading_noise_and_bad_input() {
        let noisy = format!("strace: Process 12 attached\n{SUMMARY}");
        assert_eq!(parse_strace_summary(&noisy).unwrap().len(), 4);
        assert!(parse_strace_summary("").is_err());
        assert!(parse_strace_summary("% time x\nnot a rule\n").is_err());
        let truncated: String = SUMMARY.lines().take(4).collect::<Vec<_>>().join("\n");
        assert!(parse_strace_summary(&truncated).is_err());
        let bad = SUMMARY.replace("        10  ", "        xx  ");
        assert!(parse_strace_summary(&bad).is_err());
    }

    #[test]
    fn real_strace_of_true_is_parsed() {
        let Some(strace) = super::super::runtimes::which("strace") else {
            isobox_common::skip::skip("strace not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s.txt");
        let argv = strace_argv(&strace, &out, &[OsString::from("/bin/true")]);
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .unwrap();
        if !status.success() {
            isobox_common::skip::skip(&format!("strace cannot trace here ({status})"));
            return;
        }
        let rows = read_strace_summary(&out).unwrap();
        assert!(rows.iter().any(|r| r.name == "execve"), "{rows:?}");
    }

    #[test]
    fn finds_probe_json_among_other_lines() {
        let out = b"booting\n{\"boot_id\":\"x\"}\nbye\n";
        assert_eq!(find_probe_json(out).unwrap()["boot_id"], "x");
        assert_eq!(find_probe_json(b"{\n \"a\": 1\n}\n").unwrap()["a"], 1);
        assert!(find_probe_json(b"no json here").is_none());
        assert!(find_probe_json(b"[1,2]").is_none());
    }

    #[test]
    fn probe_fields_in_flat_form() {
        let probe = json!({
            "boot_id": "b1", "host_pids_visible": false,
            "capabilities": {"effective": ["CAP_KILL", "CAP_AUDIT_WRITE"]},
            "seccomp": {"mode": 2}, "syscalls_reachable": 301
        });
        let mut iso = Isolation::default();
        apply_probe(&mut iso, &probe, Some("b1\n"));
        assert_eq!(iso.shared_kernel, Some(true));
        assert_eq!(iso.host_pids_visible, Some(false));
        assert_eq!(iso.capabilities, Some(2));
        assert_eq!(iso.capability_names, ["CAP_KILL", "CAP_AUDIT_WRITE"]);
        assert_eq!(iso.seccomp.as_deref(), Some("filter"));
        assert_eq!(iso.syscalls_reachable, Some(301));
    }

    #[test]
    fn probe_fields_in_isobox_probe_form() {
        let probe = json!({
            "schema": 1,
            "kernel": {"boot_id": "b1", "shared_kernel": true},
            "processes": {"visible": 2, "host_pids_visible": false},
            "capabilities": {
                "effective": {"hex": "00000000a80425fb", "names": ["cap_chown", "cap_kill"]},
                "seccomp": "filter"
            },
            "syscalls": {"counts": {"reachable": 273, "blocked": 40}, "reachable": ["read"]}
        });
        let mut iso = Isolation::default();
        apply_probe(&mut iso, &probe, Some("other"));
        assert_eq!(iso.shared_kernel, Some(true), "the probe's verdict wins");
        assert_eq!(iso.host_pids_visible, Some(false));
        assert_eq!(iso.capabilities, Some(2));
        assert_eq!(iso.capability_names, ["cap_chown", "cap_kill"]);
        assert_eq!(iso.seccomp.as_deref(), Some("filter"));
        assert_eq!(iso.syscalls_reachable, Some(273));

        let mut iso = Isolation::default();
        let hex_only = json!({"capabilities": {"effective": {"hex": "00000000a80425fb"}}});
        apply_probe(&mut iso, &hex_only, None);
        assert_eq!(iso.capabilities, Some(14));
    }

    #[test]
    fn probe_fields_in_other_forms() {
        let probe = json!({
            "shared_kernel": false, "boot_id": "guest",
            "cap_eff": "000001ffffffffff", "seccomp_mode": "disabled",
            "syscalls": {"reachable": 17}
        });
        let mut iso = Isolation::default();
        apply_probe(&mut iso, &probe, Some("guest"));
        // An explicit verdict wins over the boot id comparison.
        assert_eq!(iso.shared_kernel, Some(false));
        assert_eq!(iso.capabilities, Some(41));
        assert_eq!(iso.seccomp.as_deref(), Some("disabled"));
        assert_eq!(iso.syscalls_reachable, Some(17));
        assert_eq!(iso.host_pids_visible, None);

        let mut iso = Isolation::default();
        apply_probe(&mut iso, &json!({"boot_id": "guest"}), Some("host"));
        assert_eq!(iso.shared_kernel, Some(false));
    }
}
