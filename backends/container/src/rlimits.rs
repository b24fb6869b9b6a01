//! process.rlimits: OCI names to setrlimit(2) resources.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{ContainerError, Result};

/// The setrlimit resource of an OCI rlimit type.
pub fn resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// The OCI name of an rlimit type, for messages.
pub fn name(typ: PosixRlimitType) -> String {
    serde_json::to_value(typ)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{typ:?}"))
}

/// What the runtime may grant: the init inherits the runtime's limits, and raising a hard
/// limit needs CAP_SYS_RESOURCE (in the initial user namespace; a container's own user
/// namespace does not help).
pub struct Host {
    /// The runtime's current hard limit of a resource.
    pub hard: fn(libc::__rlimit_resource_t) -> Option<u64>,
    pub can_raise: bool,
    /// fs.nr_open: no RLIMIT_NOFILE above it, even with CAP_SYS_RESOURCE.
    pub nr_open: Option<u64>,
}

fn current_hard(res: libc::__rlimit_resource_t) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    (unsafe { libc::getrlimit(res, &mut lim) } == 0).then_some(lim.rlim_max)
}

const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process holds CAP_SYS_RESOURCE in the initial user namespace.
fn has_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    // In a user namespace other than the initial one, capabilities do not reach setrlimit's
    // capable() check; the initial one maps every uid to itself.
    let initial_userns = std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    initial_userns && eff & (1 << CAP_SYS_RESOURCE) != 0
}

impl Host {
    /// This runtime process.
    pub fn current() -> Host {
        Host {
            hard: current_hard,
            can_raise: has_sys_resource(),
            nr_open: std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        }
    }
}

fn limit_text(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// Check the limits before anything is created, against what this runtime can grant.
pub fn validate(rlimits: &[PosixRlimit]) -> std::result::Result<(), (String, String)> {
    validate_on(rlimits, &Host::current())
}

/// Check the limits: soft not above hard, each type once (runtime-spec), and nothing the
/// runtime cannot grant, so `create` fails rather than the workload after `start`.
pub fn validate_on(
    rlimits: &[PosixRlimit],
    host: &Host,
) -> std::result::Result<(), (String, String)> {
    for (i, r) in rlimits.iter().enumerate() {
        let field = format!("process.rlimits[{i}]");
        let typ = name(r.typ());
        if let Some(j) = rlimits[..i].iter().position(|o| o.typ() == r.typ()) {
            return Err((
                field,
                format!("{typ} is listed twice (also process.rlimits[{j}])"),
            ));
        }
        if r.soft() > r.hard() {
            return Err((
                field,
                format!(
                    "{typ}: soft limit {} is above hard limit {}",
                    limit_text(r.soft()),
                    limit_text(r.hard())
                ),
            ));
        }
        if r.typ() == PosixRlimitType::RlimitNofile {
            if let Some(max) = host.nr_open.filter(|&m| r.hard() > m) {
                return Err((
                    field,
                    format!(
                        "{typ}: hard limit {} is above fs.nr_open {max}, the kernel's maximum",
                        limit_text(r.hard())
                    ),
                ));
            }
        }
        if host.can_raise {
            continue;
        }
        if let Some(cur) = (host.hard)(resource(r.typ())).filter(|&c| r.hard() > c) {
            return Err((
                field,
                format!(
                    "{typ}: hard limit {} is above the runtime's own hard limit {}, and raising \
                     it needs CAP_SYS_RESOURCE, which the runtime lacks",
                    limit_text(r.hard()),
                    limit_text(cur)
                ),
            ));
        }
    }
    Ok(())
}

/// Apply every limit to the calling process.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    for (i, r) in rlimits.iter().enumerate() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(resource(r.typ()), &lim) } != 0 {
            return Err(ContainerError::io(
                format!(
                    "process.rlimits[{i}]: setting {} to soft {} hard {}",
                    name(r.typ()),
                    r.soft(),
                    r.hard()
                ),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Vec<PosixRlimit> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn maps_names_to_resources() {
        let r = parse(
            r#"[{"type":"RLIMIT_NOFILE","hard":1024,"soft":512},
                {"type":"RLIMIT_CORE","hard":0,"soft":0},
                {"type":"RLIMIT_RTTIME","hard":5,"soft":5}]"#,
        );
        assert_eq!(resource(r[0].typ()), libc::RLIMIT_NOFILE);
        assert_eq!(resource(r[1].typ()), libc::RLIMIT_CORE);
        assert_eq!(resource(r[2].typ()), libc::RLIMIT_RTTIME);
        assert_eq!(name(r[0].typ()), "RLIMIT_NOFILE");
    }

    /// A runtime whose hard limits are all 20000.
    fn host(can_raise: bool) -> Host {
        fn h20000(_: libc::__rlimit_resource_t) -> Option<u64> {
            Some(20000)
        }
        Host {
            hard: h20000,
            can_raise,
            nr_open: Some(1 << 20),
        }
    }

    #[test]
    fn soft_above_hard_is_rejected_with_the_field() {
        let h = host(true);
        let r = parse(r#"[{"type":"RLIMIT_NOFILE","hard":10,"soft":20}]"#);
        let (field, reason) = validate_on(&r, &h).unwrap_err();
        assert_eq!(field, "process.rlimits[0]");
        assert!(reason.contains("RLIMIT_NOFILE"), "{reason}");
        let ok = parse(r#"[{"type":"RLIMIT_NOFILE","hard":20,"soft":20}]"#);
        assert!(validate_on(&ok, &h).is_ok());
    }

    #[test]
    fn above_the_runtimes_hard_limit_needs_cap_sys_resource() {
        let r = parse(
            r#"[{"type":"RLIMIT_CORE","hard":0,"soft":0},
                {"type":"RLIMIT_NOFILE","hard":20001,"soft":1024}]"#,
        );
        let (field, reason) = validate_on(&r, &host(false)).unwrap_err();
        assert_eq!(field, "process.rlimits[1]");
        assert!(
            reason.contains("CAP_SYS_RESOURCE") && reason.contains("20000"),
            "{reason}"
        );
        assert!(validate_on(&r, &host(true)).is_ok());
        let at = parse(r#"[{"type":"RLIMIT_NOFILE","hard":20000,"soft":20000}]"#);
        assert!(validate_on(&at, &host(false)).is_ok());
        // Never above fs.nr_open, whatever the capabilities.
        let huge = parse(r#"[{"type":"RLIMIT_NOFILE","hard":2000000,"soft":1}]"#);
        let (_, reason) = validate_on(&huge, &host(true)).unwrap_err();
        assert!(reason.contains("fs.nr_open"), "{reason}");
    }

    #[test]
    fn a_type_listed_twice_is_refused() {
        let r = parse(
            r#"[{"type":"RLIMIT_CORE","hard":0,"soft":0},{"type":"RLIMIT_CORE","hard":1,"soft":1}]"#,
        );
        let (field, reason) = validate_on(&r, &host(true)).unwrap_err();
        assert_eq!(field, "process.rlimits[1]");
        assert!(reason.contains("process.rlimits[0]"), "{reason}");
    }
}
