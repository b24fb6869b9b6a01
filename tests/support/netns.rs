//! A network namespace with a veth pair to the host, for the tests and benches that carry
//! a bundle's network into a container or a microVM.

use std::process::Command;

/// A network namespace joined by path, with a veth pair to the host: the host end has `.1`,
/// the namespace's `eth0` has `.2` (MTU 1400) and a default route through `.1`. Deleted
/// when dropped.
pub struct VethNamespace {
    pub name: String,
    pub host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl VethNamespace {
    /// Named and numbered after this process, so concurrent test binaries do not meet.
    pub fn new() -> VethNamespace {
        let pid = std::process::id();
        let net = format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250);
        let n = VethNamespace {
            name: format!("isobox-t{pid}"),
            host_if: format!("ibv{pid}"),
            host_ip: format!("{net}.1"),
            ns_ip: format!("{net}.2"),
        };
        ip(&["netns", "add", &n.name]);
        ip(&[
            "link", "add", &n.host_if, "type", "veth", "peer", "name", "eth0", "netns", &n.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", n.host_ip),
            "dev",
            &n.host_if,
        ]);
        ip(&["link", "set", &n.host_if, "up"]);
        let cidr = format!("{}/24", n.ns_ip);
        for args in [
            vec!["addr", "add", cidr.as_str(), "dev", "eth0"],
            vec!["link", "set", "eth0", "mtu", "1400", "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", n.host_ip.as_str()],
        ] {
            let mut a = vec!["-n", n.name.as_str()];
            a.extend(args);
            ip(&a);
        }
        n
    }

    /// The path a bundle joins it by.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// What `ip` says of the namespace: its links and eth0's qdiscs.
    pub fn links(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link"])
            .output()
            .unwrap();
        let qdisc = Command::new("tc")
            .args(["-n", &self.name, "qdisc", "show", "dev", "eth0"])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&qdisc.stdout)
        )
    }
}

impl Drop for VethNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
