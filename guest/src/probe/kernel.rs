//! The kernel the workload runs on: release, version and boot id, and the hostname.

use serde::Serialize;

/// Env var through which the harness passes the host's boot id.
pub const HOST_BOOT_ID_ENV: &str = "ISOBOX_PROBE_HOST_BOOT_ID";

/// The `kernel` object of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// `uname -v`.
    pub version: String,
    /// `uname -m`.
    pub machine: String,
    /// `/proc/sys/kernel/random/boot_id`; null when /proc is not there.
    pub boot_id: Option<String>,
    /// Only when `ISOBOX_PROBE_HOST_BOOT_ID` is set: whether our boot id equals it. Null when
    /// the variable is unset or our own boot id is unreadable.
    pub shared_kernel: Option<bool>,
}

/// Compares our boot id with the host's, ignoring case and surrounding whitespace.
pub fn same_boot(ours: Option<&str>, host: Option<&str>) -> Option<bool> {
    let (ours, host) = (ours?.trim(), host?.trim());
    if host.is_empty() {
        return None;
    }
    Some(ours.eq_ignore_ascii_case(host))
}

/// Returns the kernel facts, the hostname and any error, naming the step.
pub fn probe() -> (Kernel, Option<String>, Vec<String>) {
    let mut errors = Vec::new();
    let uts = nix::sys::utsname::uname();
    let (release, version, machine, hostname) = match &uts {
        Ok(u) => (
            u.release().to_string_lossy().into_owned(),
            u.version().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
            Some(u.nodename().to_string_lossy().into_owned()),
        ),
        Err(e) => {
            errors.push(format!("kernel: uname: {e}"));
            (String::new(), String::new(), String::new(), None)
        }
    };
    let boot_id = match std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) => {
            errors.push(format!(
                "kernel: reading /proc/sys/kernel/random/boot_id: {e}"
            ));
            None
        }
    };
    let host = std::env::var(HOST_BOOT_ID_ENV).ok();
    let shared_kernel = same_boot(boot_id.as_deref(), host.as_deref());
    let k = Kernel {
        release,
        version,
        machine,
        boot_id,
        shared_kernel,
    };
    (k, hostname, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_id_comparison() {
        let id = "0f6b2e0a-8f7e-4c3e-9a57-1c1c0e1d2f3a";
        assert_eq!(same_boot(Some(id), Some(id)), Some(true));
        assert_eq!(
            same_boot(Some(id), Some(&format!(" {}\n", id.to_uppercase()))),
            Some(true)
        );
        assert_eq!(
            same_boot(Some(id), Some("00000000-0000-0000-0000-000000000000")),
            Some(false)
        );
        assert_eq!(same_boot(None, Some(id)), None);
        assert_eq!(same_boot(Some(id), None), None);
        assert_eq!(same_boot(Some(id), Some("  ")), None);
    }

    #[test]
    fn reads_this_kernel() {
        let (k, host, errors) = probe();
        assert!(!k.release.is_empty());
        assert!(host.is_some());
        if std::path::Path::new("/proc/sys/kernel/random/boot_id").exists() {
            assert_eq!(k.boot_id.as_deref().map(str::len), Some(36), "{errors:?}");
        }
    }
}
