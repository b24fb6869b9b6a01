//! What kind of KVM this host offers: hardware virtualization, a nested PVM hypervisor (which
//! runs guests but emulates much of a stock kernel's early code slowly or not at all), or none.

use crate::error::MicrovmError;
use std::path::Path;

/// The host's virtualization, as far as the microVM backend cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// /dev/kvm works and the CPU has VT-x or AMD-V.
    HardwareKvm,
    /// /dev/kvm works but is served by a paravirtual nested hypervisor (`kvm_pvm`), or the CPU
    /// runs under a hypervisor without exposing VT-x/AMD-V.
    NestedPvm,
    /// /dev/kvm cannot be used; the reason says why.
    NoKvm(String),
}

impl HostKind {
    /// One line for humans: what was found and why it matters.
    pub fn describe(&self) -> String {
        match self {
            HostKind::HardwareKvm => {
                "hardware KVM: /dev/kvm works and the CPU has VT-x/AMD-V (vmx/svm)".into()
            }
            HostKind::NestedPvm => "nested PVM KVM: /dev/kvm works but without vmx/svm (kvm_pvm \
                 or a hypervisor underneath); a stock kernel boots slowly and may hit emulation \
                 failures"
                .into(),
            HostKind::NoKvm(reason) => format!("no usable KVM: {reason}"),
        }
    }

    /// Whether guests can run at all.
    pub fn has_kvm(&self) -> bool {
        !matches!(self, HostKind::NoKvm(_))
    }
}

/// The KVM API version every current kernel reports.
pub const KVM_API_VERSION: i32 = 12;

/// Turns a failure to open /dev/kvm into an error that says what to do.
pub fn kvm_open_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "/dev/kvm does not exist (no KVM module loaded, or not passed \
                               into this container/VM)"
            .into(),
        Some(libc::EACCES) | Some(libc::EPERM) => "/dev/kvm: permission denied (run as root or \
                                                  join the kvm group)"
            .into(),
        Some(libc::EBUSY) => "/dev/kvm is busy (another hypervisor holds VT-x/AMD-V, e.g. \
                              VirtualBox or VMware)"
            .into(),
        Some(libc::ENXIO) | Some(libc::ENODEV) => {
            "/dev/kvm: no such device (KVM is not enabled in firmware or the module failed)".into()
        }
        _ => format!("/dev/kvm: {e}"),
    }
}

/// The same, as the crate's error.
pub fn kvm_unavailable(e: &std::io::Error) -> MicrovmError {
    MicrovmError::KvmUnavailable(kvm_open_error(e))
}

/// Classifies from /proc/cpuinfo flags and whether the `kvm_pvm` module is loaded.
pub fn classify(cpu_flags: &str, pvm_module: bool) -> HostKind {
    let has = |f: &str| cpu_flags.split_whitespace().any(|x| x == f);
    if pvm_module {
        HostKind::NestedPvm
    } else if has("vmx") || has("svm") {
        HostKind::HardwareKvm
    } else if has("hypervisor") {
        HostKind::NestedPvm
    } else {
        HostKind::HardwareKvm
    }
}

fn cpu_flags() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("flags"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, f)| f.to_string())
        })
        .unwrap_or_default()
}

/// Probes /dev/kvm (open + KVM_GET_API_VERSION) and the CPU.
pub fn detect() -> HostKind {
    let kvm = match kvm_ioctls::Kvm::new() {
        Ok(k) => k,
        Err(e) => {
            return HostKind::NoKvm(kvm_open_error(&std::io::Error::from_raw_os_error(
                e.errno(),
            )))
        }
    };
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return HostKind::NoKvm(format!(
            "/dev/kvm reports API version {version}, expected {KVM_API_VERSION}"
        ));
    }
    classify(&cpu_flags(), Path::new("/sys/module/kvm_pvm").exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify("fpu vme vmx sse", false), HostKind::HardwareKvm);
        assert_eq!(classify("fpu svm hypervisor", false), HostKind::HardwareKvm);
        assert_eq!(classify("fpu sse hypervisor", false), HostKind::NestedPvm);
        assert_eq!(classify("fpu vmx", true), HostKind::NestedPvm);
        // "vmx" must be a whole flag, not part of another one.
        assert_eq!(
            classify("fpu vmxfoo hypervisor", false),
            HostKind::NestedPvm
        );
    }

    #[test]
    fn open_errors_are_explained() {
        let m = |e| kvm_open_error(&std::io::Error::from_raw_os_error(e));
        assert!(m(libc::ENOENT).contains("does not exist"));
        assert!(m(libc::EACCES).contains("permission denied"));
        assert!(m(libc::EBUSY).contains("busy"));
        assert!(HostKind::NoKvm("x".into())
            .describe()
            .contains("no usable KVM: x"));
    }

    #[test]
    fn detect_gives_a_reason() {
        let kind = detect();
        assert!(!kind.describe().is_empty());
        if !Path::new("/dev/kvm").exists() {
            assert!(!kind.has_kvm());
        }
    }
}
