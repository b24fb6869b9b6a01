//! The container's network namespace, carried into the VM.
//!
//! The VM host process lives in the bundle's network namespace (joined by path, or a new
//! one), so what an engine sets up there, before `create` (podman, CNI, containerd) or in a
//! prestart hook that reads the state's pid (docker's libnetwork), is where the VM is. A tap
//! made there at boot is the VM's virtio-net device. At start each of the namespace's
//! Ethernet interfaces is joined to the tap with tc mirred redirects both ways (Kata's
//! "tcfilter" model: the interface keeps its MAC and addresses, the guest takes them over
//! and answers for them), and described to the agent, which gives the guest's device the
//! same name, MAC, MTU, addresses and routes.

use std::fs::{File, OpenOptions};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use isobox_common::protocol::{IpPrefix, NetInterface, NetRoute, NetworkRequest};
use isobox_common::Bundle;
use oci_spec::runtime::LinuxNamespaceType;
use serde::{Deserialize, Serialize};

use crate::error::{MicrovmError, Result};

/// The network namespace the VM host process lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetNs {
    /// A new, empty one (`{"type": "network"}`): hooks may still put interfaces in it.
    New,
    /// The one at this path (`{"type": "network", "path": …}`).
    Join(PathBuf),
}

/// The bundle's network namespace with its index in `linux.namespaces`; None when it has
/// none (the host's network).
pub fn plan(bundle: &Bundle) -> Option<(usize, NetNs)> {
    let (i, ns) = bundle
        .spec
        .linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .enumerate()
        .find(|(_, n)| n.typ() == LinuxNamespaceType::Network)?;
    Some((
        i,
        match ns.path() {
            Some(p) => NetNs::Join(p.clone()),
            None => NetNs::New,
        },
    ))
}

fn err(msg: impl Into<String>) -> MicrovmError {
    MicrovmError::Network(msg.into())
}

/// Check, before anything is made, that a namespace to join is one.
pub fn check_joinable(path: &Path) -> std::result::Result<(), String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: NS_GET_NSTYPE takes no argument and reads nothing of ours.
    let kind = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        return Err(format!("{} is not a network namespace", path.display()));
    }
    Ok(())
}

/// `NS_GET_NSTYPE` of <linux/nsfs.h>: _IO(0xb7, 0x3).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Move the calling process, while it has one thread, into `ns`, with `lo` up in a new one.
pub fn enter(ns: &NetNs) -> Result<()> {
    match ns {
        NetNs::Join(path) => {
            check_joinable(path).map_err(err)?;
            let f = File::open(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| err(format!("joining {}: {e}", path.display())))
        }
        NetNs::New => {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| err(format!("a new network namespace: {e}")))?;
            isobox_common::net::loopback_up().map_err(|e| err(format!("bringing up lo: {e}")))
        }
    }
}

/// A tap device of the current network namespace, alive while its descriptor is open.
pub struct Tap {
    pub name: String,
    pub fd: OwnedFd,
}

/// Make a tap (the kernel picks the first free `isobox%d`).
pub fn open_tap() -> Result<Tap> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| err(format!("/dev/net/tun: {e}")))?;
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"isobox%d") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we own.
    if unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    } != 0
    {
        return Err(err(format!(
            "TUNSETIFF: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: the kernel wrote a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(req.ifr_name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok(Tap {
        name,
        fd: tun.into(),
    })
}

/// One link of `ip -json addr show`, as far as it is read here.
#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    mtu: u32,
    #[serde(default)]
    link_type: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    addr_info: Vec<Addr>,
}

#[derive(Debug, Deserialize)]
struct Addr {
    family: String,
    local: IpAddr,
    prefixlen: u8,
    #[serde(default)]
    scope: String,
}

/// One route of `ip -json route show`.
#[derive(Debug, Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    dev: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// What the namespace has to carry into the guest: its Ethernet interfaces, described.
/// `taps` are the VM's own, left out. Other kinds of link are refused when up (a down one,
/// like the tunnel devices every namespace gets when their modules are loaded, carries
/// nothing).
fn describe(
    links: &[Link],
    routes4: &[Route],
    routes6: &[Route],
    taps: &[&str],
) -> Result<Vec<NetInterface>> {
    let mut out = Vec::new();
    for l in links {
        if l.ifname == "lo" || taps.contains(&l.ifname.as_str()) {
            continue;
        }
        if l.link_type != "ether" {
            if l.flags.iter().any(|f| f == "UP") {
                return Err(err(format!(
                    "interface {} is a {} link: only Ethernet interfaces can be carried into a VM",
                    l.ifname, l.link_type
                )));
            }
            continue;
        }
        let mac = parse_mac(&l.address)
            .ok_or_else(|| err(format!("interface {}: MAC {:?}", l.ifname, l.address)))?;
        let addresses = l
            .addr_info
            .iter()
            // The guest's kernel makes its own link-local address, the same for the same MAC.
            .filter(|a| (a.family == "inet" || a.family == "inet6") && a.scope != "link")
            .map(|a| IpPrefix {
                addr: a.local,
                prefix: a.prefixlen,
            })
            .collect();
        let mut r = Vec::new();
        for (v6, table) in [(false, routes4), (true, routes6)] {
            for route in table {
                if route.dev.as_deref() != Some(l.ifname.as_str())
                    || route.protocol.as_deref() == Some("kernel")
                    || route.kind.as_deref().is_some_and(|k| k != "unicast")
                {
                    continue;
                }
                r.push(NetRoute {
                    dst: parse_dst(&route.dst)
                        .map_err(|e| err(format!("route {:?} on {}: {e}", route.dst, l.ifname)))?,
                    gateway: route.gateway,
                    v6,
                });
            }
        }
        out.push(NetInterface {
            name: l.ifname.clone(),
            mac,
            mtu: l.mtu,
            addresses,
            routes: r,
        });
    }
    Ok(out)
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn parse_dst(s: &str) -> std::result::Result<Option<IpPrefix>, String> {
    if s == "default" {
        return Ok(None);
    }
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let full = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().map_err(|e| format!("{e}"))?,
        None => full,
    };
    if prefix > full {
        return Err(format!("prefix /{prefix}"));
    }
    Ok(Some(IpPrefix { addr, prefix }))
}

/// `ip` or `tc`: on $PATH, else in the sbin directories iproute2 installs to.
fn tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            err(format!(
                "{name} (iproute2) not found on $PATH or in /usr/sbin"
            ))
        })
}

fn run(name: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(tool(name)?)
        .args(args)
        .output()
        .map_err(|e| err(format!("{name}: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json<T: for<'de> Deserialize<'de>>(args: &[&str]) -> Result<Vec<T>> {
    let text = run("ip", args)?;
    serde_json::from_str(&text).map_err(|e| err(format!("ip {}: {e}", args.join(" "))))
}

/// The interfaces of the current network namespace that reach the guest through `tap`
/// (None: the VM has no network device), each joined to it.
pub struct Connected {
    ifaces: Vec<String>,
}

/// Describe the namespace's interfaces and join each to the VM's tap. With no tap, any
/// interface is an error: the guest could not reach it.
pub fn connect(tap: Option<&str>, hypervisor: &str) -> Result<(NetworkRequest, Connected)> {
    let links: Vec<Link> = json(&["-json", "addr", "show"])?;
    let routes4: Vec<Route> = json(&["-json", "-4", "route", "show", "table", "main"])?;
    let routes6: Vec<Route> = json(&["-json", "-6", "route", "show", "table", "main"])?;
    let taps: Vec<&str> = tap.into_iter().collect();
    let interfaces = describe(&links, &routes4, &routes6, &taps)?;
    let mut connected = Connected { ifaces: Vec::new() };
    match (tap, interfaces.as_slice()) {
        (_, []) => {}
        (None, [first, ..]) => {
            return Err(err(format!(
                "interface {} of the network namespace cannot reach the guest: {hypervisor} \
                 gives the VM no network device (use --hypervisor qemu)",
                first.name
            )))
        }
        (Some(tap), [one]) => {
            let mtu = one.mtu.to_string();
            run("ip", &["link", "set", "dev", tap, "mtu", &mtu, "up"])?;
            for (from, to) in [(one.name.as_str(), tap), (tap, one.name.as_str())] {
                run("tc", &["qdisc", "add", "dev", from, "ingress"])?;
                connected.ifaces.push(from.to_string());
                run(
                    "tc",
                    &[
                        "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32",
                        "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev",
                        to,
                    ],
                )?;
            }
        }
        (Some(_), more) => {
            return Err(err(format!(
                "the network namespace has {} Ethernet interfaces ({}); the VM has one network \
                 device",
                more.len(),
                more.iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
    Ok((NetworkRequest { interfaces }, connected))
}

impl Drop for Connected {
    /// Take the redirects off again (the tap itself goes with the hypervisor's descriptor):
    /// a joined namespace outlives the VM, and its interface must carry traffic again.
    fn drop(&mut self) {
        for i in &self.ifaces {
            if let Err(e) = run("tc", &["qdisc", "del", "dev", i, "ingress"]) {
                log::debug!("removing the redirect of {i}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINKS: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"link_type":"loopback",
       "address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
      {"ifindex":2,"ifname":"tunl0","flags":["NOARP"],"mtu":1480,"link_type":"ipip","address":"0.0.0.0","addr_info":[]},
      {"ifindex":3,"ifname":"eth0","flags":["BROADCAST","UP"],"mtu":1450,"link_type":"ether",
       "address":"c2:ff:f4:b2:09:51","addr_info":[
         {"family":"inet","local":"10.201.0.2","prefixlen":24,"scope":"global"},
         {"family":"inet6","local":"fd00:201::2","prefixlen":64,"scope":"global"},
         {"family":"inet6","local":"fe80::c0ff:f4ff:feb2:951","prefixlen":64,"scope":"link"}]},
      {"ifindex":4,"ifname":"isobox0","flags":["UP"],"mtu":1500,"link_type":"ether","address":"aa:aa:aa:aa:aa:aa","addr_info":[]}
    ]"#;
    const ROUTES4: &str = r#"[{"dst":"default","gateway":"10.201.0.1","dev":"eth0","flags":[]},
      {"dst":"10.201.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.201.0.2","flags":[]},
      {"dst":"192.168.7.0/24","gateway":"10.201.0.9","dev":"eth0","flags":[]}]"#;
    const ROUTES6: &str = r#"[{"dst":"fd00:201::/64","dev":"eth0","protocol":"kernel","metric":256,"flags":[]},
      {"dst":"default","gateway":"fd00:201::1","dev":"eth0","metric":1024,"flags":[]}]"#;

    fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> Vec<T> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn the_namespaces_ethernet_interface_is_described_without_kernel_routes_or_the_tap() {
        let got = describe(
            &parse(LINKS),
            &parse(ROUTES4),
            &parse(ROUTES6),
            &["isobox0"],
        )
        .unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        let eth = &got[0];
        assert_eq!(eth.name, "eth0");
        assert_eq!(eth.mac, [0xc2, 0xff, 0xf4, 0xb2, 0x09, 0x51]);
        assert_eq!(eth.mtu, 1450);
        let addrs: Vec<String> = eth
            .addresses
            .iter()
            .map(|a| format!("{}/{}", a.addr, a.prefix))
            .collect();
        assert_eq!(addrs, ["10.201.0.2/24", "fd00:201::2/64"]);
        assert_eq!(
            eth.routes,
            [
                NetRoute {
                    dst: None,
                    gateway: Some("10.201.0.1".parse().unwrap()),
                    v6: false
                },
                NetRoute {
                    dst: Some(IpPrefix {
                        addr: "192.168.7.0".parse().unwrap(),
                        prefix: 24
                    }),
                    gateway: Some("10.201.0.9".parse().unwrap()),
                    v6: false
                },
                NetRoute {
                    dst: None,
                    gateway: Some("fd00:201::1".parse().unwrap()),
                    v6: true
                },
            ]
        );
    }

    #[test]
    fn a_link_that_is_up_and_not_ethernet_is_refused_by_name() {
        let links =
            r#"[{"ifname":"wg0","flags":["UP"],"mtu":1420,"link_type":"none","addr_info":[]}]"#;
        let e = describe(&parse(links), &[], &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("wg0") && e.contains("only Ethernet"), "{e}");
    }

    #[test]
    fn macs_and_destinations_parse_strictly() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:02:03"), None);
        assert_eq!(parse_dst("default"), Ok(None));
        assert_eq!(
            parse_dst("10.0.0.7"),
            Ok(Some(IpPrefix {
                addr: "10.0.0.7".parse().unwrap(),
                prefix: 32
            }))
        );
        assert!(parse_dst("10.0.0.0/33").is_err());
        assert!(parse_dst("nonsense/8").is_err());
    }
}
