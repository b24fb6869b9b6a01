//! The guest's interfaces, made to match the container's network namespace on the host: each
//! virtio-net device the VM has takes the name, MAC, MTU, addresses and routes of one of the
//! namespace's interfaces (the host joins the two with a tap); a device with no interface
//! to take is detached from its driver, so the workload sees only what the namespace has.
//! sysfs is read through a detached mount of the agent's own: the workload's /sys may be
//! read-only, or missing.

use std::os::fd::OwnedFd;
use std::path::Path;

use isobox_common::net::{any, Iface};
use isobox_common::protocol::{NetInterface, NetworkRequest};
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::Mode;

use super::init::detached_mount;

const CLASS_NET: &str = "class/net";
const VIRTIO_NET_UNBIND: &str = "bus/virtio/drivers/virtio_net/unbind";

fn read_at(sys: &OwnedFd, path: &str) -> Result<String, String> {
    let fd = openat(sys, path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening /sys/{path}: {e}"))?;
    let mut buf = vec![0u8; 64];
    let n = nix::unistd::read(&fd, &mut buf).map_err(|e| format!("reading /sys/{path}: {e}"))?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// The guest's own interfaces but `lo`, in the order of their index (the devices' order).
fn devices(sys: &OwnedFd) -> Result<Vec<String>, String> {
    let dir = nix::dir::Dir::openat(
        sys,
        CLASS_NET,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("listing /sys/{CLASS_NET}: {e}"))?;
    let mut found = Vec::new();
    for entry in dir.into_iter().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "lo" || name.starts_with('.') {
            continue;
        }
        let index: u32 = read_at(sys, &format!("{CLASS_NET}/{name}/ifindex"))?
            .parse()
            .unwrap_or(u32::MAX);
        found.push((index, name));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, n)| n).collect())
}

/// Apply the host's Network request.
pub fn configure(req: &NetworkRequest) -> Result<(), String> {
    let sys = detached_mount(c"sysfs")?;
    let devices = devices(&sys)?;
    if req.interfaces.len() > devices.len() {
        return Err(format!(
            "the network namespace has {} interfaces, the VM {} network devices",
            req.interfaces.len(),
            devices.len()
        ));
    }
    for dev in &devices[req.interfaces.len()..] {
        detach(&sys, dev)?;
    }
    for (dev, want) in devices.iter().zip(&req.interfaces) {
        take(dev, want).map_err(|e| format!("configuring {} as {}: {e}", dev, want.name))?;
    }
    Ok(())
}

/// Unbind a spare device from virtio_net: its interface goes away.
fn detach(sys: &OwnedFd, dev: &str) -> Result<(), String> {
    let link = format!("{CLASS_NET}/{dev}/device");
    let target = readlinkat(sys, link.as_str()).map_err(|e| format!("reading /sys/{link}: {e}"))?;
    let name = Path::new(&target)
        .file_name()
        .ok_or_else(|| format!("/sys/{link} names no device"))?;
    let fd = openat(
        sys,
        VIRTIO_NET_UNBIND,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening /sys/{VIRTIO_NET_UNBIND}: {e}"))?;
    nix::unistd::write(&fd, name.as_encoded_bytes())
        .map(drop)
        .map_err(|e| format!("detaching {dev} (/sys/{VIRTIO_NET_UNBIND}): {e}"))
}

fn take(dev: &str, want: &NetInterface) -> std::io::Result<()> {
    let mut iface = Iface::new(dev)?;
    iface.set_up(false)?;
    iface.set_mac(want.mac)?;
    if want.name != dev {
        iface = iface.rename(&want.name)?;
    }
    iface.set_mtu(want.mtu)?;
    // IPv4 addresses go on up or down; IPv6 ones need the interface up (a down interface
    // has no IPv6 state to hold them).
    for (n, a) in want
        .addresses
        .iter()
        .filter(|a| a.addr.is_ipv4())
        .enumerate()
    {
        iface.add_address(a.addr, a.prefix, n)?;
    }
    iface.set_up(true)?;
    for a in want.addresses.iter().filter(|a| a.addr.is_ipv6()) {
        iface.add_address(a.addr, a.prefix, 0)?;
    }
    for r in &want.routes {
        let (dst, prefix) = r.dst.map_or((any(r.v6), 0), |d| (d.addr, d.prefix));
        iface.add_route(dst, prefix, r.gateway)?;
    }
    Ok(())
}
