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

/// Check the limits before anything is created: soft must not exceed hard.
pub fn validate(rlimits: &[PosixRlimit]) -> std::result::Result<(), (String, String)> {
    for (i, r) in rlimits.iter().enumerate() {
        if r.soft() > r.hard() {
            return Err((
                format!("process.rlimits[{i}]"),
                format!(
                    "{}: soft limit {} is above hard limit {}",
                    name(r.typ()),
                    r.soft(),
                    r.hard()
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

    #[test]
    fn soft_above_hard_is_rejected_with_the_field() {
        let r = parse(r#"[{"type":"RLIMIT_NOFILE","hard":10,"soft":20}]"#);
        let (field, reason) = validate(&r).unwrap_err();
        assert_eq!(field, "process.rlimits[0]");
        assert!(reason.contains("RLIMIT_NOFILE"), "{reason}");
        assert!(validate(&parse(r#"[{"type":"RLIMIT_NOFILE","hard":20,"soft":20}]"#)).is_ok());
    }
}
