//! Capability sets, seccomp mode and no_new_privs, from `/proc/self/status`.

use serde::Serialize;

/// Capability names by bit number (capability.h, up to CAP_CHECKPOINT_RESTORE = 40).
const CAP_NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// The security-relevant lines of `/proc/<pid>/status`; `None` where a line is absent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatusFields {
    pub cap_inh: Option<u64>,
    pub cap_prm: Option<u64>,
    pub cap_eff: Option<u64>,
    pub cap_bnd: Option<u64>,
    pub cap_amb: Option<u64>,
    pub seccomp: Option<u8>,
    pub seccomp_filters: Option<u32>,
    pub no_new_privs: Option<bool>,
}

/// Parses the lines we need; unknown or malformed lines are ignored.
pub fn parse_status(text: &str) -> StatusFields {
    let mut f = StatusFields::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let hex = || u64::from_str_radix(value, 16).ok();
        match key {
            "CapInh" => f.cap_inh = hex(),
            "CapPrm" => f.cap_prm = hex(),
            "CapEff" => f.cap_eff = hex(),
            "CapBnd" => f.cap_bnd = hex(),
            "CapAmb" => f.cap_amb = hex(),
            "Seccomp" => f.seccomp = value.parse().ok(),
            "Seccomp_filters" => f.seccomp_filters = value.parse().ok(),
            "NoNewPrivs" => f.no_new_privs = value.parse::<u8>().ok().map(|v| v != 0),
            _ => {}
        }
    }
    f
}

/// Names of the bits set in a capability mask; bits past the table are `cap_<n>`.
pub fn cap_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match CAP_NAMES.get(bit) {
            Some(name) => (*name).to_string(),
            None => format!("cap_{bit}"),
        })
        .collect()
}

/// The `Seccomp:` value as a word: 0 disabled, 1 strict, 2 filter.
pub fn seccomp_mode_name(mode: u8) -> &'static str {
    match mode {
        0 => "disabled",
        1 => "strict",
        2 => "filter",
        _ => "unknown",
    }
}

/// One capability set as hex and as names.
#[derive(Debug, Clone, Serialize)]
pub struct CapSet {
    pub hex: String,
    pub names: Vec<String>,
}

impl CapSet {
    fn new(mask: u64) -> Self {
        CapSet {
            hex: format!("{mask:016x}"),
            names: cap_names(mask),
        }
    }
}

/// The `capabilities` object of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    pub effective: Option<CapSet>,
    pub permitted: Option<CapSet>,
    pub inheritable: Option<CapSet>,
    pub bounding: Option<CapSet>,
    pub ambient: Option<CapSet>,
    /// "disabled" | "strict" | "filter" | "unknown".
    pub seccomp: String,
    /// Number of attached seccomp filters (absent on old kernels).
    pub seccomp_filters: Option<u32>,
    pub no_new_privs: Option<bool>,
}

impl Capabilities {
    pub fn from_status(f: &StatusFields) -> Self {
        Capabilities {
            effective: f.cap_eff.map(CapSet::new),
            permitted: f.cap_prm.map(CapSet::new),
            inheritable: f.cap_inh.map(CapSet::new),
            bounding: f.cap_bnd.map(CapSet::new),
            ambient: f.cap_amb.map(CapSet::new),
            seccomp: f.seccomp.map_or("unknown", seccomp_mode_name).to_string(),
            seccomp_filters: f.seccomp_filters,
            no_new_privs: f.no_new_privs,
        }
    }
}

/// Reads `/proc/self/status`, falling back to prctl for seccomp and no_new_privs when /proc is
/// not mounted. The error string names the file and the reason.
pub fn probe() -> (Capabilities, Option<String>) {
    let (mut fields, err) = match std::fs::read_to_string("/proc/self/status") {
        Ok(text) => (parse_status(&text), None),
        Err(e) => (
            StatusFields::default(),
            Some(format!("capabilities: reading /proc/self/status: {e}")),
        ),
    };
    if fields.seccomp.is_none() {
        // SAFETY: PR_GET_SECCOMP takes no pointers; it only returns the mode.
        let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
        fields.seccomp = u8::try_from(mode).ok();
    }
    if fields.no_new_privs.is_none() {
        // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointers; it only returns 0 or 1.
        let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
        fields.no_new_privs = (nnp >= 0).then_some(nnp == 1);
    }
    (Capabilities::from_status(&fields), err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\n\
        CapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t00000000a80425fb\n\
        CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n\
        Seccomp:\t2\nSeccomp_filters:\t1\nSpeculation_Store_Bypass:\tthread vulnerable\n";

    #[test]
    fn parses_cap_lines_and_seccomp() {
        let f = parse_status(STATUS);
        assert_eq!(f.cap_inh, Some(0));
        assert_eq!(f.cap_prm, Some(0x1fffeffffff));
        assert_eq!(f.cap_eff, Some(0xa80425fb));
        assert_eq!(f.cap_bnd, Some(0xa80425fb));
        assert_eq!(f.cap_amb, Some(0));
        assert_eq!(f.seccomp, Some(2));
        assert_eq!(f.seccomp_filters, Some(1));
        assert_eq!(f.no_new_privs, Some(true));
    }

    #[test]
    fn docker_default_set_has_the_expected_names() {
        // 0xa80425fb is the classic Docker/runc default capability set.
        let names = cap_names(0xa80425fb);
        assert_eq!(
            names,
            [
                "cap_chown",
                "cap_dac_override",
                "cap_fowner",
                "cap_fsetid",
                "cap_kill",
                "cap_setgid",
                "cap_setuid",
                "cap_setpcap",
                "cap_net_bind_service",
                "cap_net_raw",
                "cap_sys_chroot",
                "cap_mknod",
                "cap_audit_write",
                "cap_setfcap",
            ]
        );
    }

    #[test]
    fn unknown_bits_get_numbered_names() {
        assert_eq!(cap_names(1 << 41 | 1), ["cap_chown", "cap_41"]);
        assert!(cap_names(0).is_empty());
    }

    #[test]
    fn seccomp_modes_and_garbage() {
        assert_eq!(seccomp_mode_name(0), "disabled");
        assert_eq!(seccomp_mode_name(1), "strict");
        assert_eq!(seccomp_mode_name(2), "filter");
        assert_eq!(seccomp_mode_name(7), "unknown");
        let f = parse_status("Seccomp:\tx\nCapEff:\tnothex\nNoNewPrivs:\t0\n");
        assert_eq!(f.seccomp, None);
        assert_eq!(f.cap_eff, None);
        assert_eq!(f.no_new_privs, Some(false));
        let caps = Capabilities::from_status(&f);
        assert_eq!(caps.seccomp, "unknown");
        assert!(caps.effective.is_none());
    }
}
