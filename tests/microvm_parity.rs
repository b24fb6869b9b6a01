//! The microVM applies a bundle as the container backend does: each test runs the same bundle
//! in both and compares what the workload sees (qemu TCG on hosts without hardware
//! virtualization, the built-in VMM where it has it; `auto` takes qemu for bind mounts).

mod support;

use serde_json::json;
use support::netns::VethNamespace;
use support::{stderr, stdout, Isobox, TestBundle};

macro_rules! require_vm {
    () => {
        if let Some(reason) = support::vm_skip_reason() {
            isobox_common::skip::skip(&reason);
            return;
        }
    };
}

/// `isobox run` of `b` as `id` with `--backend backend`.
fn run_in(ib: &Isobox, backend: &str, b: &TestBundle, id: &str) -> std::process::Output {
    ib.cmd()
        .args(["run", "--backend", backend, "--bundle"])
        .arg(b.path())
        .arg(id)
        .output()
        .unwrap()
}

/// The stdout of `sh -c script` run to success in the container and then the microVM, the
/// bundle changed by `edit`, each run as `<id>-<backend>` and leaving nothing behind.
fn outputs_in_both(
    ib: &Isobox,
    id: &str,
    script: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> Vec<String> {
    ["container", "microvm"]
        .into_iter()
        .map(|backend| {
            let mut b = TestBundle::sh(script);
            b.edit(&edit);
            let id = format!("{id}-{backend}");
            let out = run_in(ib, backend, &b, &id);
            assert!(out.status.success(), "{backend}: {}", stderr(&out));
            ib.assert_nothing_left(&id, None);
            stdout(&out)
        })
        .collect()
}
/// Bind mounts behave alike in both backends: a volume's writes reach the host at once, a
/// read-only one refuses them, a file can be bound alone, and a read-only root stays so
/// (with a tmpfs mounted where it had no mount point).
#[test]
fn volumes_behave_as_in_a_container() {
    require_vm!();
    let ib = Isobox::new();
    let host = tempfile::tempdir().unwrap();
    let (data, conf) = (host.path().join("data"), host.path().join("conf"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("name"), "conf-name\n").unwrap();
    std::fs::write(conf.join("greeting"), "hello-file\n").unwrap();
    let script = "echo \"$0\" > /data/out; cat /data/out; cat /conf/name; \
         (echo x > /conf/new) 2>/dev/null && echo ro-writable || echo ro-refused; \
         cat /etc/greeting; \
         (echo y > /rootfile) 2>/dev/null && echo root-writable || echo root-refused; \
         echo scratch > /scratch/f; cat /scratch/f";
    let mut outputs = Vec::new();
    for backend in ["container", "microvm"] {
        let mut b = TestBundle::sh(script);
        b.edit(|c| {
            c["process"]["args"] = json!(["/bin/sh", "-c", script, backend]);
            c["root"]["readonly"] = json!(true);
            let mounts = c["mounts"].as_array_mut().unwrap();
            mounts.push(json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]}));
            mounts.push(json!({"destination": "/conf", "type": "bind", "source": conf, "options": ["rbind", "ro"]}));
            mounts.push(json!({"destination": "/etc/greeting", "type": "bind", "source": conf.join("greeting"), "options": ["bind", "ro"]}));
            // A tmpfs whose mount point the read-only root lacks: made before the remount.
            mounts.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"}));
        });
        let id = format!("vol-{backend}");
        let out = run_in(&ib, backend, &b, &id);
        assert!(out.status.success(), "{backend}: {}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(data.join("out")).unwrap(),
            format!("{backend}\n"),
            "{backend}'s write reached the host"
        );
        outputs.push(stdout(&out).replace(backend, "BACKEND"));
        ib.assert_nothing_left(&id, None);
    }
    assert_eq!(
        outputs[0],
        "BACKEND\nconf-name\nro-refused\nhello-file\nroot-refused\nscratch\n"
    );
    assert_eq!(
        outputs[0], outputs[1],
        "the microVM differs from the container"
    );
    assert!(!conf.join("new").exists());
}

/// The process's capability sets and no_new_privs are what config.json says, as in a
/// container: as root, and as another user with an ambient capability.
#[test]
fn capabilities_and_no_new_privs_match_the_container() {
    require_vm!();
    let ib = Isobox::new();
    let script = "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; id -u";
    let caps = ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"];
    for (uid, nnp) in [(0, true), (1000, false)] {
        let outputs = outputs_in_both(&ib, &format!("caps-{uid}"), script, |c| {
            c["process"]["user"] = json!({"uid": uid, "gid": uid});
            c["process"]["noNewPrivileges"] = json!(nnp);
            c["process"]["capabilities"] = json!({
                "bounding": caps, "effective": caps, "permitted": caps,
                "inheritable": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"],
            });
        });
        let want_bnd = "CapBnd:\t0000000000000421";
        assert!(outputs[0].contains(want_bnd), "{}", outputs[0]);
        assert!(
            outputs[0].contains(&format!("NoNewPrivs:\t{}", u8::from(nnp))),
            "{}",
            outputs[0]
        );
        assert_eq!(outputs[0], outputs[1], "uid {uid}: the microVM differs");
    }
}

/// linux.resources limits hold in the guest as in a container: a pids limit refuses the
/// eleventh process, a memory limit has the OOM killer end the workload.
#[test]
fn pids_and_memory_limits_hold_as_in_a_container() {
    require_vm!();
    let ib = Isobox::new();
    for backend in ["container", "microvm"] {
        let mut b = TestBundle::sh("for i in $(seq 20); do sleep 2 & done 2>&1; wait");
        b.edit(|c| c["linux"]["resources"] = json!({"pids": {"limit": 10}}));
        let out = run_in(&ib, backend, &b, &format!("pids-{backend}"));
        assert!(
            stdout(&out).contains("can't fork"),
            "{backend}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let mut b = TestBundle::sh("tail /dev/zero");
        b.edit(|c| c["linux"]["resources"] = json!({"memory": {"limit": 32 << 20}}));
        let out = run_in(&ib, backend, &b, &format!("oom-{backend}"));
        assert_eq!(out.status.code(), Some(137), "{backend}: {}", stderr(&out));
        ib.assert_nothing_left(&format!("oom-{backend}"), None);
    }
}

/// sysctl values are set, and masked and read-only paths hide and protect the same files, in
/// both backends.
#[test]
fn masked_and_readonly_paths_match_the_container() {
    require_vm!();
    let ib = Isobox::new();
    let script = "echo kcore $(cat /proc/kcore 2>/dev/null | wc -c); echo sys-kernel $(ls /sys/kernel | wc -l); \
         echo port-start $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); \
         (echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo sys-writable || echo sys-readonly";
    let outputs = outputs_in_both(&ib, "mask", script, |c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "99"})
    });
    assert_eq!(
        outputs[0],
        "kcore 0\nsys-kernel 0\nport-start 99\nsys-readonly\n"
    );
    assert_eq!(
        outputs[0], outputs[1],
        "the microVM differs from the container"
    );
}

/// The kernel file systems of `mounts` (mqueue, cgroup, a read-only sysfs) are mounted with
/// the bundle's options, the guest's cgroups cannot be written through them, and the OOM
/// score is set, in both backends alike.
#[test]
fn kernel_filesystems_and_oom_score_match_the_container() {
    require_vm!();
    let ib = Isobox::new();
    let script = "awk '$2 == \"/dev/mqueue\" || $2 == \"/sys\" || $2 == \"/sys/fs/cgroup\" \
         {split($4, o, \",\"); print $2, o[1]}' /proc/self/mounts; \
         (mkdir /sys/fs/cgroup/x) 2>/dev/null && echo cgroup-writable || echo cgroup-readonly; \
         cat /proc/self/oom_score_adj";
    let outputs = outputs_in_both(&ib, "kernfs", script, |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]}),
        );
        mounts.push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        );
        c["process"]["oomScoreAdj"] = json!(123);
        c["linux"]["resources"] = json!({"pids": {"limit": 64}});
    });
    assert_eq!(
        outputs[0],
        "/sys ro\n/dev/mqueue rw\n/sys/fs/cgroup ro\ncgroup-readonly\n123\n"
    );
    assert_eq!(
        outputs[0], outputs[1],
        "the microVM differs from the container"
    );
}

/// The workload's /dev is a container's in both backends: the default nodes, linux.devices
/// and the usual links; in the guest, none of the VM's own devices (the agent's line).
#[test]
fn dev_holds_the_same_nodes_as_in_a_container() {
    require_vm!();
    let ib = Isobox::new();
    // `core` links to /proc/kcore, which only some kernels have.
    let script = "ls /dev | grep -vx core | tr '\\n' ' '; echo; ls -ln /dev/fuse | cut -c1-10";
    let outputs = outputs_in_both(
        &ib,
        "dev",
        script,
        |c| {
            c["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 432}])
        },
    );
    assert_eq!(
        outputs[0],
        "fd full fuse null ptmx pts random stderr stdin stdout tty urandom zero \ncrw-rw----\n"
    );
    assert_eq!(
        outputs[0], outputs[1],
        "the microVM differs from the container"
    );
}

/// One bundle with a volume, a read-only root, a capability set, masked paths and a pids
/// limit runs alike in both backends; with a failing prestart hook added, both refuse it alike
/// and leave nothing.
#[test]
fn the_whole_bundle_behaves_alike_in_both_backends() {
    require_vm!();
    let ib = Isobox::new();
    let host = tempfile::tempdir().unwrap();
    let script = "echo data > /vol/f; cat /vol/f; \
         (echo x > /rootfile) 2>/dev/null || echo root-ro; \
         grep -E '^Cap(Eff|Bnd)' /proc/self/status; \
         ls /sys/kernel | wc -l; \
         for i in $(seq 12); do sleep 30 >/dev/null 2>&1 & done 2>&1 | grep -c \"can't fork\"; wait";
    let bundle = |hook: bool| {
        let mut b = TestBundle::sh(script);
        b.edit(|c| {
            c["root"]["readonly"] = json!(true);
            c["mounts"].as_array_mut().unwrap().push(
                json!({"destination": "/vol", "type": "bind", "source": host.path(), "options": ["rbind"]}),
            );
            c["linux"]["resources"] = json!({"pids": {"limit": 8}});
            if hook {
                c["hooks"] = json!({"prestart": [{"path": "/bin/false"}]});
            }
        });
        b
    };
    let mut outputs = Vec::new();
    let mut errors = Vec::new();
    for backend in ["container", "microvm"] {
        let b = bundle(false);
        let out = run_in(&ib, backend, &b, &format!("whole-{backend}"));
        assert!(out.status.success(), "{backend}: {}", stderr(&out));
        outputs.push(stdout(&out));
        let b = bundle(true);
        let id = format!("whole-hook-{backend}");
        let out = run_in(&ib, backend, &b, &id);
        assert!(
            !out.status.success(),
            "{backend}: the failing hook was ignored"
        );
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.contains("prestart hook"))
            .unwrap_or_default()
            .to_string();
        errors.push(line);
        ib.assert_nothing_left(&id, None);
    }
    assert!(
        outputs[0].starts_with("data\nroot-ro\nCapEff:"),
        "{}",
        outputs[0]
    );
    // Some forks were refused, as many in both.
    let refused = outputs[0].lines().last().unwrap_or_default();
    assert!(
        refused.parse::<u32>().is_ok_and(|n| n > 0),
        "{}",
        outputs[0]
    );
    assert_eq!(
        outputs[0], outputs[1],
        "the microVM differs from the container"
    );
    assert_eq!(
        errors[0],
        "isobox: prestart hook /bin/false: failed: exit status: 1"
    );
    assert_eq!(errors[0], errors[1]);
}

/// The host's side of one run: answer the workload's connection, then connect to its
/// listener; both within two minutes. Returns what the host received.
fn host_side(listener: std::net::TcpListener, guest: String) -> std::thread::JoinHandle<String> {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        listener.set_nonblocking(true).unwrap();
        let mut got = String::new();
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return format!("no connection from the workload: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).unwrap_or(0);
        got += &String::from_utf8_lossy(&buf[..n]);
        let _ = conn.write_all(b"host-reply\n");
        drop(conn);
        let addr: std::net::SocketAddr = format!("{guest}:7070").parse().unwrap();
        loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let _ = s.write_all(b"echo-me\n");
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    let mut echoed = String::new();
                    let _ = s.read_to_string(&mut echoed);
                    got += &format!("echoed {echoed}");
                    return got;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => return got + &format!("cannot reach the workload's listener: {e}"),
            }
        }
    })
}

/// A joined network namespace is the workload's in both backends: the microVM's guest has
/// the namespace's interface (name, MAC, MTU, address, default route), the host end of the
/// veth answers ping, TCP goes both ways, and the namespace is left as it was.
#[test]
fn a_joined_network_namespace_reaches_the_host_as_in_a_container() {
    require_vm!();
    let ns = VethNamespace::new();
    let before = ns.links();
    let ib = Isobox::new();
    let mut outputs = Vec::new();
    let mut received = Vec::new();
    for backend in ["container", "microvm"] {
        let listener = std::net::TcpListener::bind((ns.host_ip.as_str(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let host = host_side(listener, ns.ns_ip.clone());
        let script = format!(
            "nc -l -p 7070 -e cat & \
             cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu; \
             echo ifaces $(ls /sys/class/net); \
             ip -4 -o addr show dev eth0 | grep -o 'inet [0-9./]*'; \
             ip route | grep default; \
             ping -c 1 -W 20 {h} >/dev/null && echo ping ok; \
             (echo from-workload; sleep 5) | nc {h} {port}; \
             wait",
            h = ns.host_ip
        );
        let mut b = TestBundle::sh(&script);
        let path = ns.path();
        b.edit(|c| {
            for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "network" {
                    ns["path"] = json!(path);
                }
            }
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP_NET_RAW"));
            }
        });
        let id = format!("net-{backend}");
        let out = support::output_within_limit({
            let mut c = ib.cmd();
            c.args(["run", "--backend", backend, "--bundle"])
                .arg(b.path())
                .arg(&id);
            c
        });
        let got = host.join().unwrap();
        assert!(out.status.success(), "{backend}: {}", stderr(&out));
        ib.assert_nothing_left(&id, None);
        assert_eq!(ns.links(), before, "{backend} left the namespace changed");
        outputs.push(stdout(&out));
        received.push(got);
    }
    let want_start = format!(
        "ifaces eth0 lo\ninet {}/24\ndefault via {}",
        ns.ns_ip, ns.host_ip
    );
    assert!(outputs[0].contains(&want_start), "{}", outputs[0]);
    assert!(
        outputs[0].contains("\n1400\n") && outputs[0].contains("ping ok\nhost-reply\n"),
        "{}",
        outputs[0]
    );
    assert_eq!(
        outputs[0], outputs[1],
        "the microVM differs from the container"
    );
    assert_eq!(received[0], "from-workload\nechoed echo-me\n");
    assert_eq!(received[0], received[1]);
}
