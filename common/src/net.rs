//! Network set-up both sides share: an interface configured with the classic socket ioctls
//! (no netlink library in the static agent), as the guest agent does for the interfaces the
//! host hands it and runc-style set-up does for a new namespace's loopback.

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

fn context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn dgram(family: AddressFamily) -> io::Result<OwnedFd> {
    socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| context("socket", e.into()))
}

/// One interface of the calling thread's network namespace, by name.
pub struct Iface {
    name: String,
    sock: OwnedFd,
}

impl Iface {
    pub fn new(name: &str) -> io::Result<Iface> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ':', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not an interface name"),
            ));
        }
        Ok(Iface {
            name: name.to_string(),
            sock: dgram(AddressFamily::Inet)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn req(&self, name: &str) -> libc::ifreq {
        // SAFETY: an all-zero ifreq is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        req
    }

    fn ioctl(&self, what: &str, op: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: the SIOC*IF* requests read or write the ifreq we own, on our socket.
        if unsafe { libc::ioctl(self.sock.as_raw_fd(), op as _, req as *mut libc::ifreq) } != 0 {
            let e = io::Error::last_os_error();
            return Err(context(&format!("{what} {}", self.name), e));
        }
        Ok(())
    }

    /// Bring the interface up or down.
    pub fn set_up(&self, up: bool) -> io::Result<()> {
        let mut req = self.req(&self.name);
        self.ioctl("SIOCGIFFLAGS", libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let up_flag = libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags = if up {
            flags | up_flag
        } else {
            flags & !up_flag
        };
        self.ioctl("SIOCSIFFLAGS", libc::SIOCSIFFLAGS, &mut req)
    }

    pub fn set_mac(&self, mac: [u8; 6]) -> io::Result<()> {
        let mut req = self.req(&self.name);
        // SAFETY: an all-zero sockaddr is valid.
        let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
        sa.sa_family = libc::ARPHRD_ETHER;
        for (dst, src) in sa.sa_data.iter_mut().zip(mac) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_hwaddr = sa;
        self.ioctl("SIOCSIFHWADDR", libc::SIOCSIFHWADDR, &mut req)
    }

    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        let mut req = self.req(&self.name);
        req.ifr_ifru.ifru_mtu = i32::try_from(mtu)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"))?;
        self.ioctl("SIOCSIFMTU", libc::SIOCSIFMTU, &mut req)
    }

    /// Rename the (down) interface.
    pub fn rename(self, to: &str) -> io::Result<Iface> {
        let renamed = Iface::new(to)?;
        let mut req = self.req(&self.name);
        let mut newname = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, src) in newname.iter_mut().zip(to.bytes()) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_newname = newname;
        self.ioctl("SIOCSIFNAME", libc::SIOCSIFNAME, &mut req)?;
        Ok(renamed)
    }

    pub fn index(&self) -> io::Result<i32> {
        let mut req = self.req(&self.name);
        self.ioctl("SIOCGIFINDEX", libc::SIOCGIFINDEX, &mut req)?;
        // SAFETY: SIOCGIFINDEX filled the index member.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex })
    }

    /// Add an address. IPv4 takes one per label: the `n`th (from 0) goes on `name:n`.
    pub fn add_address(&self, addr: IpAddr, prefix: u8, n: usize) -> io::Result<()> {
        match addr {
            IpAddr::V4(a) => {
                let label = if n == 0 {
                    self.name.clone()
                } else {
                    format!("{}:{n}", self.name)
                };
                let mut req = self.req(&label);
                req.ifr_ifru.ifru_addr = sockaddr_v4(a);
                self.ioctl("SIOCSIFADDR", libc::SIOCSIFADDR, &mut req)?;
                let mut req = self.req(&label);
                req.ifr_ifru.ifru_netmask = sockaddr_v4(v4_mask(prefix));
                self.ioctl("SIOCSIFNETMASK", libc::SIOCSIFNETMASK, &mut req)
            }
            IpAddr::V6(a) => {
                let mut req = libc::in6_ifreq {
                    ifr6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ifr6_prefixlen: u32::from(prefix),
                    ifr6_ifindex: self.index()?,
                };
                let sock = dgram(AddressFamily::Inet6)?;
                // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads the in6_ifreq we own.
                let r = unsafe {
                    libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR as _, &mut req as *mut _)
                };
                if r != 0 {
                    let e = io::Error::last_os_error();
                    return Err(context(&format!("SIOCSIFADDR {a} on {}", self.name), e));
                }
                Ok(())
            }
        }
    }

    /// Add a route through this interface: to `dst`/`prefix` (0.0.0.0/0 or ::/0 for the
    /// default), through `gateway` when there is one.
    pub fn add_route(&self, dst: IpAddr, prefix: u8, gateway: Option<IpAddr>) -> io::Result<()> {
        let what = format!("SIOCADDRT {dst}/{prefix} on {}", self.name);
        match (dst, gateway) {
            (IpAddr::V4(d), None | Some(IpAddr::V4(_))) => {
                let dev = CString::new(self.name.as_str()).expect("checked name");
                // SAFETY: an all-zero rtentry is valid.
                let mut rt: RtEntry = unsafe { std::mem::zeroed() };
                rt.rt_dst = sockaddr_v4(d);
                rt.rt_genmask = sockaddr_v4(v4_mask(prefix));
                rt.rt_flags = libc::RTF_UP;
                if let Some(IpAddr::V4(g)) = gateway {
                    rt.rt_gateway = sockaddr_v4(g);
                    rt.rt_flags |= libc::RTF_GATEWAY;
                }
                rt.rt_dev = dev.as_ptr().cast_mut();
                // SAFETY: SIOCADDRT reads the rtentry we own; rt_dev outlives the call.
                let r = unsafe {
                    libc::ioctl(
                        self.sock.as_raw_fd(),
                        libc::SIOCADDRT as _,
                        &mut rt as *mut _,
                    )
                };
                if r != 0 {
                    return Err(context(&what, io::Error::last_os_error()));
                }
                Ok(())
            }
            (IpAddr::V6(d), None | Some(IpAddr::V6(_))) => {
                let mut rt = In6Rtmsg {
                    dst: libc::in6_addr {
                        s6_addr: d.octets(),
                    },
                    src: libc::in6_addr { s6_addr: [0; 16] },
                    gateway: libc::in6_addr { s6_addr: [0; 16] },
                    typ: 0,
                    dst_len: u16::from(prefix),
                    src_len: 0,
                    metric: 1024,
                    info: 0,
                    flags: u32::from(libc::RTF_UP),
                    ifindex: self.index()?,
                };
                if let Some(IpAddr::V6(g)) = gateway {
                    rt.gateway.s6_addr = g.octets();
                    rt.flags |= u32::from(libc::RTF_GATEWAY);
                }
                let sock = dgram(AddressFamily::Inet6)?;
                // SAFETY: SIOCADDRT on an AF_INET6 socket reads the in6_rtmsg we own.
                let r = unsafe {
                    libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &mut rt as *mut _)
                };
                if r != 0 {
                    return Err(context(&what, io::Error::last_os_error()));
                }
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what}: the gateway is of another family"),
            )),
        }
    }
}

/// `struct rtentry` of <linux/route.h> (glibc's libc crate does not define it).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// `struct in6_rtmsg` of <linux/ipv6_route.h> (the libc crate's fields are private).
#[repr(C)]
struct In6Rtmsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    typ: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

fn sockaddr_v4(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; every bit pattern is valid.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// The netmask of a prefix length (clamped to 32).
pub fn v4_mask(prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) })
}

/// The unspecified address of a family, for a default route.
pub fn any(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// Bring up `lo` in the calling process's network namespace, as runc does for one it makes
/// (a new network namespace's loopback is down, so 127.0.0.1 is unreachable); the guest
/// agent does the same for the guest's.
pub fn loopback_up() -> io::Result<()> {
    Iface::new("lo")?.set_up(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_of_prefix_lengths() {
        assert_eq!(v4_mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(v4_mask(16), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(v4_mask(23), Ipv4Addr::new(255, 255, 254, 0));
        assert_eq!(v4_mask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(v4_mask(40), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[test]
    fn names_that_are_not_interfaces_are_refused() {
        for bad in ["", "a/b", "eth0:1", "0123456789abcdef"] {
            assert!(Iface::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kernel_structures_have_their_c_sizes() {
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        assert_eq!(std::mem::size_of::<In6Rtmsg>(), 80);
    }
}
