//! Runs the real `isobox-probe` binary: on the host, in fresh namespaces (unshare) and in a
//! runc container with memory and pids limits, and checks what each one reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_isobox-probe");
/// 0..=334 and 424..=462.
const SYSCALLS: u64 = 335 + 39;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn parse(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "probe failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn host_report() -> Value {
    parse(&Command::new(PROBE).output().expect("run isobox-probe"))
}

#[test]
fn prints_every_key_and_counts_every_syscall() {
    let r = host_report();
    for key in [
        "schema",
        "probe_version",
        "kernel",
        "processes",
        "network",
        "hostname",
        "user",
        "capabilities",
        "reachable",
        "syscalls",
        "containment",
        "errors",
    ] {
        assert!(r.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(r["schema"], 1);
    assert!(r["containment"].is_null());
    let c = &r["syscalls"]["counts"];
    let total: u64 = ["reachable", "blocked", "enosys", "not_probed"]
        .iter()
        .map(|k| c[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, SYSCALLS);
    assert_eq!(
        r["syscalls"]["results"].as_array().unwrap().len() as u64,
        SYSCALLS
    );
    let reachable = r["syscalls"]["reachable"].as_array().unwrap();
    assert!(reachable.contains(&Value::from("getpid")));
    assert!(r["processes"]["pid_self"].as_u64().is_some());
}

#[test]
fn pretty_output_is_the_same_object() {
    let out = Command::new(PROBE).arg("--pretty").output().unwrap();
    let r = parse(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n  \"kernel\""));
    assert_eq!(r["schema"], 1);
}

#[test]
fn unknown_argument_is_refused() {
    let out = Command::new(PROBE).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

#[test]
fn host_boot_id_decides_shared_kernel() {
    let ours = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
    let Ok(ours) = ours else {
        isobox_common::skip::skip("no /proc/sys/kernel/random/boot_id");
        return;
    };
    for (given, want) in [
        (ours.trim(), true),
        ("00000000-0000-0000-0000-000000000000", false),
    ] {
        let out = Command::new(PROBE)
            .env("ISOBOX_PROBE_HOST_BOOT_ID", given)
            .output()
            .unwrap();
        assert_eq!(parse(&out)["kernel"]["shared_kernel"], want);
    }
}

#[test]
fn new_pid_and_net_namespaces_hide_the_host() {
    if !is_root() || !Path::new("/usr/bin/unshare").exists() {
        isobox_common::skip::skip("needs root and unshare");
        return;
    }
    let host = host_report();
    let me = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    let out = Command::new("unshare")
        .args(["-fpmn", "--mount-proc", PROBE])
        .env("ISOBOX_PROBE_HOST_PIDS", format!("{me}:{start}"))
        .output()
        .unwrap();
    let r = parse(&out);
    let p = &r["processes"];
    assert_eq!(p["visible"], 1, "{p}");
    assert_eq!(p["init_is_self"], true);
    assert_eq!(p["init_pid_ns"], false);
    assert_eq!(p["host_pids_given"], 1);
    assert_eq!(p["host_pids_matched"], 0);
    assert_eq!(p["host_pids_visible"], false);
    assert_ne!(
        p["namespaces"]["pid"],
        host["processes"]["namespaces"]["pid"]
    );
    assert_ne!(
        p["namespaces"]["net"],
        host["processes"]["namespaces"]["net"]
    );
    assert_eq!(r["network"]["interfaces"], serde_json::json!(["lo"]));
    // Same kernel, so the same syscalls reach it.
    assert_eq!(r["syscalls"]["counts"], host["syscalls"]["counts"]);
}

/// A bundle directory removed (with its container) on drop.
struct Bundle {
    dir: PathBuf,
    id: String,
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.id])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn runc_bundle(name: &str, args: &[&str], env: &[&str], memory: i64, pids: i64) -> Bundle {
    let id = format!("isobox-probe-{name}-{}", std::process::id());
    let dir = std::env::temp_dir().join(&id);
    let _ = std::fs::remove_dir_all(&dir);
    let rootfs = dir.join("rootfs");
    for sub in ["proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    // The probe is static: it is the whole root filesystem.
    std::fs::copy(PROBE, rootfs.join("isobox-probe")).unwrap();
    let bundle = Bundle { dir, id };
    let spec = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle.dir)
        .output()
        .unwrap();
    assert!(spec.status.success(), "runc spec: {spec:?}");
    let path = bundle.dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut argv = vec!["/isobox-probe"];
    argv.extend_from_slice(args);
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(argv);
    for e in env {
        config["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push((*e).into());
    }
    config["linux"]["resources"] =
        serde_json::json!({"memory": {"limit": memory}, "pids": {"limit": pids}});
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    bundle
}

#[test]
fn runc_container_contains_memory_and_forks() {
    if !is_root() || !have("runc") {
        isobox_common::skip::skip("needs root and runc");
        return;
    }
    let host = host_report();
    let bundle = runc_bundle(
        "limits",
        &["--containment"],
        &["ISOBOX_PROBE_MEM_MIB=256", "ISOBOX_PROBE_FORKS=200"],
        64 << 20,
        40,
    );
    let out = Command::new("runc")
        .args(["run", &bundle.id])
        .current_dir(&bundle.dir)
        .output()
        .unwrap();
    let r = parse(&out);
    let p = &r["processes"];
    assert_eq!(p["visible"], 1, "{p}");
    assert_eq!(p["host_pids_visible"], false);
    assert_ne!(
        p["namespaces"]["mnt"],
        host["processes"]["namespaces"]["mnt"]
    );
    // runc's default capability set is three capabilities, far below root's.
    let eff = r["capabilities"]["effective"]["names"].as_array().unwrap();
    assert_eq!(eff.len(), 3, "{eff:?}");
    assert_eq!(r["capabilities"]["no_new_privs"], true);
    assert_eq!(r["reachable"]["dev_kvm"], false);
    assert_eq!(r["reachable"]["cgroupfs_writable"], false);
    let mem = &r["containment"]["memory"];
    assert_eq!(mem["outcome"], "killed", "{mem}");
    assert_eq!(mem["oom_killed"], true);
    assert!(mem["reached_mib"].as_u64().unwrap() < 256);
    let forks = &r["containment"]["pids"];
    assert_eq!(forks["limited"], true, "{forks}");
    assert_eq!(forks["stopped_by"], "EAGAIN");
    assert!(forks["forked"].as_u64().unwrap() < 40);
}

#[test]
fn runc_seccomp_filter_is_seen_and_survived() {
    if !is_root() || !have("runc") {
        isobox_common::skip::skip("needs root and runc");
        return;
    }
    let bundle = runc_bundle("seccomp", &[], &[], 256 << 20, 100);
    let path = bundle.dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["statx"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["kcmp"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["get_mempolicy"], "action": "SCMP_ACT_TRAP"}
        ]
    });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = Command::new("runc")
        .args(["run", &bundle.id])
        .current_dir(&bundle.dir)
        .output()
        .unwrap();
    let r = parse(&out);
    assert_eq!(r["capabilities"]["seccomp"], "filter");
    let s = &r["syscalls"];
    assert_eq!(s["seccomp_filter"], true);
    let result = |name: &str| {
        s["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(result("keyctl")["class"], "blocked");
    assert_eq!(result("statx")["class"], "enosys");
    // Killed in the call, yet the sweep went on past it.
    assert_eq!(result("kcmp")["class"], "blocked");
    assert_eq!(result("kcmp")["detail"], "killed by signal 31");
    assert_eq!(result("get_mempolicy")["class"], "blocked");
    assert_eq!(result("getrandom")["class"], "reachable");
    assert_eq!(result("close_range")["class"], "reachable");
}
