//! The microVM backend through the CLI: the same busybox bundles as the container tests, in a
//! VM (qemu TCG on hosts without hardware virtualization, the built-in VMM where it has it).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{stderr, stdout, Isobox, TestBundle};

macro_rules! require_vm {
    () => {
        if let Some(reason) = support::vm_skip_reason() {
            isobox_common::skip::skip(&reason);
            return;
        }
    };
}

fn microvm_bundle(script: &str) -> TestBundle {
    let mut b = TestBundle::sh(script);
    b.edit(|c| {
        c["annotations"] = json!({"io.isobox.backend": "microvm"});
        c["hostname"] = json!("vmhost");
    });
    b
}

/// Which boot of which kernel this is: a guest kernel has its own, even where it is the
/// same release as the host's (as in the emulated host).
fn host_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn workload_runs_in_its_own_kernel() {
    require_vm!();
    let ib = Isobox::new();
    let mut b =
        microvm_bundle("echo out; echo err >&2; hostname; cat /proc/sys/kernel/random/boot_id; echo $FOO; pwd; cat /sys/class/net/lo/flags; exit 3");
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "FOO=from-config"]);
        c["process"]["cwd"] = json!("/tmp");
    });
    let out = ib.run_bundle(&b, "vm1");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(out.status.code(), Some(3), "{text}\n{}", stderr(&out));
    assert_eq!(lines[0], "out");
    assert_eq!(lines[1], "vmhost");
    assert_eq!(lines[2].len(), 36, "not a boot id: {text}");
    assert_ne!(
        lines[2],
        host_boot_id(),
        "the guest reports the host's kernel"
    );
    assert_eq!(lines[3..5], ["from-config", "/tmp"]);
    // The guest's loopback is up (IFF_UP), as in a container's new network namespace.
    let flags = u32::from_str_radix(lines[5].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down in the guest: {text}");
    assert!(stderr(&out).contains("err\n"), "{}", stderr(&out));
    assert!(!text.contains("err"), "stderr leaked into stdout: {text}");
    ib.assert_nothing_left("vm1", None);
}

#[test]
fn detached_vm_state_kill_and_delete() {
    require_vm!();
    let ib = Isobox::new();
    let b = microvm_bundle("trap 'exit 42' TERM; while true; do sleep 1; done");
    let out = ib.run_detached(&["run", "--detach", "vm2"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let st = ib.state("vm2");
    assert_eq!(st["status"], "running");
    assert_eq!(st["backend"], "microvm");
    // Every report of a VM names the hypervisor and accelerator that ran it.
    assert!(st["isobox"]["hypervisor"].is_string(), "{st}");
    assert!(st["isobox"]["accelerator"].is_string(), "{st}");
    let out = ib.run(&["delete", "vm2"]);
    assert!(
        !out.status.success(),
        "deleted a running VM without --force"
    );

    let out = ib.run(&["kill", "vm2", "TERM"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while ib.state("vm2")["status"] != "stopped" {
        assert!(
            Instant::now() < deadline,
            "VM still running 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = ib.run(&["delete", "vm2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ib.assert_nothing_left("vm2", None);
    let state_dir = ib.root.path().join("vm2");
    let qemu_left = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&*state_dir.to_string_lossy()))
            .unwrap_or(false)
    });
    assert!(!qemu_left, "a hypervisor process of vm2 is still running");
}

#[test]
fn not_a_kernel_is_a_clear_error_and_leaves_nothing() {
    require_vm!();
    let ib = Isobox::new();
    let b = microvm_bundle("true");
    let bogus = b.path().join("bogus-kernel");
    std::fs::write(&bogus, b"this is not a kernel").unwrap();
    let out = ib
        .cmd()
        .args(["run", "--kernel"])
        .arg(&bogus)
        .arg("--bundle")
        .arg(b.path())
        .arg("vm3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bogus-kernel") && err.contains("not a Linux kernel"),
        "{err}"
    );
    ib.assert_nothing_left("vm3", None);
}

/// Every hook kind runs on the host in the lifecycle's order, reading the container's state.
#[test]
fn hooks_run_on_the_host_in_order() {
    require_vm!();
    let ib = Isobox::new();
    let host = tempfile::tempdir().unwrap();
    let log = host.path().join("hooks.log");
    let mut b = microvm_bundle("echo workload");
    let hook = |kind: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {kind} $(cat) >> {}", log.display())]});
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "startContainer": [hook("startContainer")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    let out = ib.run_bundle(&b, "vm-hooks");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "workload\n");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<(&str, serde_json::Value)> = text
        .lines()
        .map(|l| {
            let (kind, state) = l.split_once(' ').unwrap();
            (kind, serde_json::from_str(state).unwrap())
        })
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    for (kind, state) in &lines {
        assert_eq!(state["id"], "vm-hooks", "{kind}");
    }
    // The VM host process, until it is gone (a stopped container's state has pid 0).
    let pid = lines[0].1["pid"].as_i64().unwrap();
    assert!(pid > 0, "{text}");
    for (kind, state) in &lines[..5] {
        assert_eq!(state["pid"].as_i64(), Some(pid), "{kind}");
    }
    assert_eq!(lines[4].1["status"], "running");
    assert_eq!(lines[5].1["status"], "stopped");
    ib.assert_nothing_left("vm-hooks", None);
}

/// A rootfs bigger than the guest's RAM: shared with qemu's guest (virtio-fs), it boots; the
/// built-in VMM, which still packs the rootfs into the initramfs, refuses it up front.
#[test]
fn a_rootfs_larger_than_the_vm_ram_is_shared_not_copied() {
    require_vm!();
    let ib = Isobox::new();
    let mut b = microvm_bundle("wc -c < /big");
    b.edit(|c| c["linux"]["resources"] = json!({"memory": {"limit": 128 * 1024 * 1024}}));
    let big = std::fs::File::create(b.rootfs().join("big")).unwrap();
    big.set_len(192 * 1024 * 1024).unwrap();
    b.write();
    let run = |hv: &str, id: &str| {
        ib.cmd()
            .args(["run", "--hypervisor", hv, "--bundle"])
            .arg(b.path())
            .arg(id)
            .output()
            .unwrap()
    };
    let out = run("qemu", "vm4");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), (192 * 1024 * 1024).to_string());
    ib.assert_nothing_left("vm4", None);

    if !isobox_microvm::host::detect().has_kvm() {
        eprintln!("skipped: the built-in VMM's refusal: no usable /dev/kvm here");
        return;
    }
    let out = run("builtin", "vm5");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("rootfs") && err.contains("the VM has 128 MiB"),
        "{err}"
    );
    ib.assert_nothing_left("vm5", None);
}

#[test]
fn kill_all_reaches_every_process_in_the_guest() {
    require_vm!();
    use std::io::{BufRead, BufReader, Read};
    let ib = Isobox::new();
    // The workload ignores SIGTERM; only a signal to every process reaches its child, whose
    // exit ends the wait. "ready" comes once the child's trap is set.
    let b = microvm_bundle(
        "sh -c 'trap \"exit 5\" TERM; touch /tmp/armed; while :; do sleep 0.2; done' & \
         child=$!; trap '' TERM; until [ -e /tmp/armed ]; do sleep 0.05; done; \
         echo ready; wait $child; echo child=$?; exit 7",
    );
    let mut run = ib
        .cmd()
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg("vm5")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let k = ib.run(&["kill", "--all", "vm5", "TERM"]);
    assert!(k.status.success(), "{}", stderr(&k));
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "child=5\n");
    assert_eq!(run.wait().unwrap().code(), Some(7));
    ib.assert_nothing_left("vm5", None);
}

#[test]
fn pause_stops_the_vm_and_resume_lets_it_go_on() {
    require_vm!();
    let ib = Isobox::new();
    let b = microvm_bundle("i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done");
    // The workload's stdout goes to the VM host process, which inherits this file.
    let out_path = b.path().join("out");
    let mut cmd = ib.cmd();
    cmd.args(["run", "--detach", "--bundle"])
        .arg(b.path())
        .arg("vmp")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(b.path().join("err")).unwrap());
    let status = cmd.status().unwrap();
    let err = || std::fs::read_to_string(b.path().join("err")).unwrap_or_default();
    assert!(status.success(), "{}", err());
    let len = || std::fs::metadata(&out_path).unwrap().len();
    let grows = |from: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while len() <= from {
            assert!(Instant::now() < deadline, "no output: {}", err());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    grows(0);

    let out = ib.run(&["pause", "vmp"]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    assert_eq!(ib.state("vmp")["status"], "paused");
    let frozen = len();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(len(), frozen, "the workload printed while paused");

    let out = ib.run(&["resume", "vmp"]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    assert_eq!(ib.state("vmp")["status"], "running");
    grows(frozen);
    let out = ib.run(&["resume", "vmp"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not paused"), "{}", stderr(&out));

    // Nothing of a running microVM changes; an update that sets nothing is no change.
    let out = ib.run(&["update", "--memory", "512m", "vmp"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("linux.resources.memory.limit: cannot be changed on a running microVM"),
        "{}",
        stderr(&out)
    );
    let out = ib.run(&["update", "--pids-limit", "0", "vmp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The VMM processes' usage, labelled as such.
    let out = ib.run(&["events", "--stats", "vmp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = &ev["data"];
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert!(
        data["memory"]["raw"]["vmm_rss"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert_eq!(
        data["memory"]["raw"]["vmm_rss"],
        data["memory"]["usage"]["usage"]
    );

    let out = ib.run(&["pause", "vmp"]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    let out = ib.run(&["delete", "--force", "vmp"]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    ib.assert_nothing_left("vmp", None);
}

/// A link named `isobox-vm` to the binary, as the install makes, in a directory of its own.
fn isobox_vm_link() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_isobox"), dir.path().join("isobox-vm")).unwrap();
    dir
}

#[test]
fn isobox_vm_defaults_to_the_microvm_below_flag_and_annotation() {
    require_root!();
    let ib = Isobox::new();
    let link = isobox_vm_link();
    let vm = link.path().join("isobox-vm");
    // The hypervisor annotation is read by the microVM backend only: a bad one tells which
    // backend took the bundle, without booting anything.
    let mut b = TestBundle::sh("true");
    b.edit(|c| c["annotations"] = json!({"io.isobox.hypervisor": "xen"}));
    let run = |cmd: &mut std::process::Command, b: &TestBundle, id: &str| {
        cmd.args(["run", "--bundle"])
            .arg(b.path())
            .arg(id)
            .output()
            .unwrap()
    };
    let out = run(
        ib.cmd_as(&vm).env("ISOBOX_BACKEND", "container"),
        &b,
        "vm-name",
    );
    assert!(!out.status.success(), "isobox-vm ran it as a container");
    assert!(
        stderr(&out).contains("annotations.io.isobox.hypervisor"),
        "{}",
        stderr(&out)
    );
    ib.assert_nothing_left("vm-name", None);
    // The flag and the workload's annotation come first; under the plain name, the container.
    let mut flagged = ib.cmd_as(&vm);
    flagged.args(["run", "--backend", "container", "--bundle"]);
    let out = flagged.arg(b.path()).arg("vm-flag").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&mut ib.cmd(), &b, "plain-name");
    assert!(out.status.success(), "{}", stderr(&out));
    b.edit(|c| c["annotations"]["io.isobox.backend"] = json!("container"));
    let out = run(&mut ib.cmd_as(&vm), &b, "vm-annotation");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn isobox_vm_runs_a_bundle_in_a_microvm() {
    require_vm!();
    let ib = Isobox::new();
    let link = isobox_vm_link();
    let b = TestBundle::sh("sleep 100");
    let mut cmd = ib.cmd_as(&link.path().join("isobox-vm"));
    cmd.args(["run", "--detach", "vm-link", "--bundle"])
        .arg(b.path());
    let out = support::status_with_stderr(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = ib.state("vm-link");
    assert_eq!(st["backend"], "microvm", "{st}");
    assert!(st["isobox"]["hypervisor"].is_string(), "{st}");
    let out = ib.run(&["delete", "--force", "vm-link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ib.assert_nothing_left("vm-link", None);
}

#[test]
fn features_describe_the_backend_the_name_or_flag_picks() {
    let ib = Isobox::new();
    let link = isobox_vm_link();
    let vm = link.path().join("isobox-vm");
    let features = |mut cmd: std::process::Command, args: &[&str]| -> serde_json::Value {
        let out = cmd.arg("features").args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for (cmd, args, want) in [
        (ib.cmd(), &[][..], "container"),
        (ib.cmd_as(&vm), &[], "microvm"),
        (ib.cmd_as(&vm), &["--backend", "container"], "container"),
        (ib.cmd(), &["--backend", "microvm"], "microvm"),
    ] {
        let doc = features(cmd, args);
        assert_eq!(
            doc["annotations"]["io.isobox.backend"], want,
            "{args:?}: {doc}"
        );
        // The microVM takes only the network namespace (its VM lives there; the workload's
        // other namespaces are the guest kernel's); both apply the mount options and run
        // every hook.
        let namespaces = doc["linux"]["namespaces"].as_array().unwrap();
        if want == "microvm" {
            assert_eq!(namespaces, &[serde_json::json!("network")], "{doc}");
        } else {
            assert!(namespaces.len() > 1, "{doc}");
        }
        assert!(!doc["mountOptions"].as_array().unwrap().is_empty(), "{doc}");
        assert_eq!(doc["hooks"].as_array().unwrap().len(), 6);
        assert_eq!(doc["linux"]["seccomp"]["enabled"], true);
    }
}

/// How confined a process is, from /proc/PID/status: seccomp mode, no_new_privs, and its
/// effective, permitted and bounding capability sets.
fn confinement(pid: i32) -> (Option<u32>, Option<u64>, u64, u64, Option<u64>) {
    let st = procfs::process::Process::new(pid)
        .unwrap()
        .status()
        .unwrap();
    (st.seccomp, st.nonewprivs, st.capeff, st.capprm, st.capbnd)
}

fn namespace(pid: impl std::fmt::Display, kind: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

/// qemu runs as root but with nothing of root's power: its seccomp filter, no_new_privs, no
/// capabilities in any set, IPC, UTS and mount namespaces of its own, and the container's
/// network namespace, which the VM host process lives in too. Its state directory sits under
/// one only root's DAC override may cross, as containerd's /run/containerd (0600) is.
#[test]
fn qemu_runs_confined_in_the_containers_network_namespace() {
    require_vm!();
    use std::os::unix::fs::PermissionsExt;
    let ib = Isobox::new();
    std::fs::set_permissions(ib.root.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let b = microvm_bundle("sleep 600");
    let out = ib.run_detached(
        &["run", "--hypervisor", "qemu", "--detach", "vmconf"],
        b.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let record = std::fs::read_to_string(ib.root.path().join("vmconf/hypervisor.pid")).unwrap();
    let qemu: i32 = record.split_whitespace().next().unwrap().parse().unwrap();
    let host_process = ib.state("vmconf")["pid"].as_i64().unwrap();
    let got = confinement(qemu);
    let ns_of = |pid: String| -> Vec<std::path::PathBuf> {
        ["net", "ipc", "uts", "mnt"]
            .iter()
            .map(|k| namespace(&pid, k))
            .collect()
    };
    let (host, hv, vm_host) = (
        ns_of("self".into()),
        ns_of(qemu.to_string()),
        ns_of(host_process.to_string()),
    );
    let kill = ib.run(&["delete", "--force", "vmconf"]);
    assert!(kill.status.success(), "{}", stderr(&kill));
    // Seccomp filter mode, no_new_privs, and empty CapEff, CapPrm and CapBnd.
    let want = (Some(2), Some(1), 0, 0, Some(0));
    assert_eq!(got, want, "qemu's /proc/{qemu}/status");
    for (i, kind) in ["net", "ipc", "uts", "mnt"].iter().enumerate() {
        assert_ne!(hv[i], host[i], "qemu is in the host's {kind} namespace");
    }
    assert_eq!(
        hv[0], vm_host[0],
        "qemu and the VM host process: one network namespace"
    );
    ib.assert_nothing_left("vmconf", None);
}

/// The agent's serial line is its alone: a workload that may make device nodes (CAP_MKNOD, as
/// docker grants) makes one for it, and opening it fails, so no frame of its reaches the host.
#[test]
fn the_workload_cannot_open_the_agent_line_to_forge_frames() {
    require_vm!();
    let ib = Isobox::new();
    let mut b = microvm_bundle(
        "mknod /dev/line c 4 65 || exit 10; \
         if (printf 'forged' >/dev/line) 2>/dev/err; then echo opened; else echo refused; cat /dev/err; fi",
    );
    b.edit(|c| {
        let caps = json!([
            "CAP_MKNOD",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
            "CAP_NET_BIND_SERVICE"
        ]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
    });
    let out = ib.run_bundle(&b, "vmline");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.starts_with("refused\n"), "{text}");
    assert!(text.contains("busy"), "not refused as exclusive: {text}");
    ib.assert_nothing_left("vmline", None);
}
