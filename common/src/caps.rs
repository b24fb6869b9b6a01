//! Capabilities: OCI names to kernel numbers, and applying the five sets of
//! `process.capabilities` (bounding, permitted, effective, inheritable, ambient), for the
//! container's processes and the microVM's alike.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::{Error, Result};

/// The kernel number of a capability (include/uapi/linux/capability.h).
pub fn number(cap: Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// The highest capability number an OCI name maps to (CAP_CHECKPOINT_RESTORE).
pub const MAX_CAP: u32 = 40;

/// Every capability an OCI name stands for, in kernel number order (`ALL[n]` is number n).
pub const ALL: [Capability; MAX_CAP as usize + 1] = {
    use Capability::*;
    [
        Chown,
        DacOverride,
        DacReadSearch,
        Fowner,
        Fsetid,
        Kill,
        Setgid,
        Setuid,
        Setpcap,
        LinuxImmutable,
        NetBindService,
        NetBroadcast,
        NetAdmin,
        NetRaw,
        IpcLock,
        IpcOwner,
        SysModule,
        SysRawio,
        SysChroot,
        SysPtrace,
        SysPacct,
        SysAdmin,
        SysBoot,
        SysNice,
        SysResource,
        SysTime,
        SysTtyConfig,
        Mknod,
        Lease,
        AuditWrite,
        AuditControl,
        Setfcap,
        MacOverride,
        MacAdmin,
        Syslog,
        WakeAlarm,
        BlockSuspend,
        AuditRead,
        Perfmon,
        Bpf,
        CheckpointRestore,
    ]
};

impl CapMasks {
    /// The same sets on a kernel whose highest capability is `last_cap`.
    pub fn for_kernel(&self, last_cap: u32) -> CapMasks {
        let keep = if last_cap >= 63 {
            u64::MAX
        } else {
            (1u64 << (last_cap + 1)) - 1
        };
        CapMasks {
            bounding: self.bounding & keep,
            permitted: self.permitted & keep,
            effective: self.effective & keep,
            inheritable: self.inheritable & keep,
            ambient: self.ambient & keep,
            last_cap,
        }
    }
}

/// A capability set as the 64-bit mask capset(2) takes, keeping only the capabilities the
/// running kernel knows (runc ignores newer names the same way).
pub fn mask(set: Option<&Capabilities>, last_cap: u32) -> u64 {
    set.into_iter()
        .flatten()
        .map(|c| number(*c))
        .filter(|&n| n <= last_cap)
        .fold(0u64, |m, n| m | (1u64 << n))
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The five masks to apply, computed before any privilege is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CapMasks {
    pub bounding: u64,
    pub permitted: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub ambient: u64,
    pub last_cap: u32,
}

impl CapMasks {
    pub fn from_spec(caps: &LinuxCapabilities, last_cap: u32) -> CapMasks {
        CapMasks {
            bounding: mask(caps.bounding().as_ref(), last_cap),
            permitted: mask(caps.permitted().as_ref(), last_cap),
            effective: mask(caps.effective().as_ref(), last_cap),
            inheritable: mask(caps.inheritable().as_ref(), last_cap),
            ambient: mask(caps.ambient().as_ref(), last_cap),
            last_cap,
        }
    }
}

/// The OCI name of a capability, e.g. CAP_SYS_RESOURCE.
pub fn name(cap: Capability) -> String {
    serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{cap:?}"))
}

/// The runtime's own bounding set: no process it starts can hold a capability outside it.
pub fn runtime_bounding(last_cap: u32) -> u64 {
    let held = |n: u32| {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_CAPBSET_READ, n as libc::c_ulong, 0, 0, 0) == 1 }
    };
    (0..=last_cap.min(63))
        .filter(|&n| held(n))
        .fold(0u64, |m, n| m | (1u64 << n))
}

/// The five sets in the order of the runtime spec, with their field names.
fn sets(caps: &LinuxCapabilities) -> [(&'static str, Option<&Capabilities>); 5] {
    [
        ("bounding", caps.bounding().as_ref()),
        ("effective", caps.effective().as_ref()),
        ("inheritable", caps.inheritable().as_ref()),
        ("permitted", caps.permitted().as_ref()),
        ("ambient", caps.ambient().as_ref()),
    ]
}

/// The first capability of the five sets that the runtime cannot grant (outside its
/// `bounding` set), as (set, capability). Capabilities newer than the running kernel are
/// ignored, as runc does (see [`mask`]).
pub fn ungrantable(
    caps: &LinuxCapabilities,
    bounding: u64,
    last_cap: u32,
) -> Option<(&'static str, Capability)> {
    sets(caps).into_iter().find_map(|(set, list)| {
        let mut missing: Vec<Capability> = list
            .into_iter()
            .flatten()
            .copied()
            .filter(|c| number(*c) <= last_cap && bounding & (1u64 << number(*c)) == 0)
            .collect();
        // The sets are unordered once parsed: name the lowest, so the error is stable.
        missing.sort_by_key(|c| number(*c));
        missing.first().map(|c| (set, *c))
    })
}

/// Where `cap` is in `<root>/capabilities/<set>` of the JSON `text` (config.json with root
/// `/process`, a process file with root ``), for the error (the parsed sets no longer have
/// an order).
pub fn index_in(text: &str, root: &str, set: &str, cap: Capability) -> Option<usize> {
    let config: serde_json::Value = serde_json::from_str(text).ok()?;
    config
        .pointer(&format!("{root}/capabilities/{set}"))?
        .as_array()?
        .iter()
        .position(|v| serde_json::from_value::<Capability>(v.clone()).ok() == Some(cap))
}

fn os_err(step: &str) -> Error {
    Error::io(step.to_string(), std::io::Error::last_os_error())
}

/// Drop every capability outside the bounding set. Needs CAP_SETPCAP, so it runs before the
/// uid changes.
pub fn drop_bounding(m: &CapMasks) -> Result<()> {
    for n in 0..=m.last_cap {
        if m.bounding & (1u64 << n) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) } != 0 {
            let err = std::io::Error::last_os_error();
            // EINVAL: the kernel does not know this capability; nothing to drop.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::io(
                    format!("dropping capability {n} from the bounding set (process.capabilities.bounding)"),
                    err,
                ));
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Set permitted, effective and inheritable with capset(2), then the ambient set.
pub fn apply(m: &CapMasks) -> Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: m.effective as u32,
            permitted: m.permitted as u32,
            inheritable: m.inheritable as u32,
        },
        CapData {
            effective: (m.effective >> 32) as u32,
            permitted: (m.permitted >> 32) as u32,
            inheritable: (m.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and two data structs laid out as capset(2) expects for version 3.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } != 0 {
        return Err(os_err(
            "setting capabilities (process.capabilities.permitted/effective/inheritable)",
        ));
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    for n in 0..=m.last_cap {
        if m.ambient & (1u64 << n) == 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE,
                n as libc::c_ulong,
                0,
                0,
            )
        };
        // A capability that is not both permitted and inheritable cannot be ambient; runc
        // skips it the same way (its default spec lists ambient capabilities without
        // inheritable ones).
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
            return Err(Error::io(
                format!("raising ambient capability {n} (process.capabilities.ambient)"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_match_the_kernel_header() {
        assert_eq!(number(Capability::Chown), 0);
        assert_eq!(number(Capability::NetBindService), 10);
        assert_eq!(number(Capability::SysAdmin), 21);
        assert_eq!(number(Capability::AuditWrite), 29);
        assert_eq!(number(Capability::CheckpointRestore), 40);
        for (n, cap) in ALL.iter().enumerate() {
            assert_eq!(number(*cap) as usize, n, "{cap:?}");
        }
    }

    #[test]
    fn names_parse_and_map() {
        let set: HashSet<Capability> =
            serde_json::from_str(r#"["CAP_KILL","CAP_NET_RAW","CAP_SETUID"]"#).unwrap();
        assert_eq!(mask(Some(&set), 40), (1 << 5) | (1 << 13) | (1 << 7));
        assert_eq!(mask(None, 40), 0);
    }

    #[test]
    fn capabilities_outside_the_bounding_set_are_named_by_set() {
        let caps: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_KILL"],"permitted":["CAP_KILL"],
                "effective":["CAP_KILL","CAP_SYS_RESOURCE","CAP_SYS_ADMIN","CAP_BPF"]}"#,
        )
        .unwrap();
        let all = u64::MAX >> (63 - 40);
        assert_eq!(ungrantable(&caps, all, 40), None);
        let no_resource = all & !(1 << 24);
        assert_eq!(
            ungrantable(&caps, no_resource, 40),
            Some(("effective", Capability::SysResource))
        );
        let neither = no_resource & !(1 << 21);
        assert_eq!(
            ungrantable(&caps, neither, 40),
            Some(("effective", Capability::SysAdmin)),
            "the lowest is named"
        );
        // CAP_BPF (39) on a kernel that stops at 38 is ignored, not refused.
        assert_eq!(ungrantable(&caps, 1 << 5 | 1 << 21 | 1 << 24, 38), None);
        assert_eq!(name(Capability::SysResource), "CAP_SYS_RESOURCE");
    }

    #[test]
    fn the_index_comes_from_the_config_text() {
        let text = r#"{"process":{"capabilities":{"effective":["CAP_KILL","sys_resource"]}}}"#;
        assert_eq!(
            index_in(text, "/process", "effective", Capability::SysResource),
            Some(1)
        );
        assert_eq!(
            index_in(text, "/process", "bounding", Capability::Kill),
            None
        );
        assert_eq!(
            index_in("{", "/process", "effective", Capability::Kill),
            None
        );
        let text = r#"{"capabilities":{"effective":["CAP_KILL","sys_resource"]}}"#;
        assert_eq!(
            index_in(text, "", "effective", Capability::SysResource),
            Some(1)
        );
    }

    #[test]
    fn the_runtime_bounding_set_is_read() {
        let b = runtime_bounding(last_cap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let want = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(b, want);
    }

    #[test]
    fn capabilities_beyond_the_kernel_are_ignored() {
        let set: HashSet<Capability> = serde_json::from_str(r#"["CAP_BPF","CAP_CHOWN"]"#).unwrap();
        assert_eq!(mask(Some(&set), 37), 1);
        assert_eq!(mask(Some(&set), 40), 1 | (1 << 39));
    }
}
