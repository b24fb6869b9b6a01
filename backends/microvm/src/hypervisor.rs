//! Which hypervisor runs a VM (the built-in VMM or qemu) and with which accelerator, chosen
//! from the `hypervisor` option, the `io.isobox.hypervisor` annotation, or the host's kind.

use serde::{Deserialize, Serialize};

use crate::error::{MicrovmError, Result};

/// Annotation in config.json that picks the hypervisor.
pub const HYPERVISOR_ANNOTATION: &str = "io.isobox.hypervisor";

pub use isobox_common::backend::HypervisorChoice;

/// The hypervisor that runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    Builtin,
    Qemu,
}

impl Hypervisor {
    pub fn as_str(self) -> &'static str {
        match self {
            Hypervisor::Builtin => "builtin",
            Hypervisor::Qemu => "qemu",
        }
    }
}

/// How guest instructions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// qemu's software emulation.
    Tcg,
}

impl Accelerator {
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// What the host offers, as far as the choice is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSupport {
    /// /dev/kvm on hardware virtualization: boots a stock kernel fast.
    HardwareKvm,
    /// /dev/kvm is there but cannot boot a stock kernel usefully; the reason says why.
    LimitedKvm(String),
    /// No usable /dev/kvm; the reason says why.
    NoKvm(String),
}

/// The outcome of the choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub hypervisor: Hypervisor,
    pub accelerator: Accelerator,
    /// A one-line warning for stderr (software emulation, a VMM that may not boot, …).
    pub warning: Option<String>,
}

/// Pick hypervisor and accelerator.
pub fn select(choice: HypervisorChoice, host: &HostSupport) -> Result<Selection> {
    let tcg_warning = |why: &str| {
        format!("warning: the microVM is software-emulated (qemu TCG, much slower): {why}")
    };
    Ok(match (choice, host) {
        (HypervisorChoice::Builtin, HostSupport::NoKvm(why)) => {
            return Err(MicrovmError::KvmUnavailable(format!(
                "the built-in VMM needs KVM: {why}"
            )))
        }
        (HypervisorChoice::Builtin, HostSupport::LimitedKvm(why)) => Selection {
            hypervisor: Hypervisor::Builtin,
            accelerator: Accelerator::Kvm,
            warning: Some(format!(
                "warning: the built-in VMM may not boot a stock kernel on this host: {why}"
            )),
        },
        (HypervisorChoice::Builtin | HypervisorChoice::Auto, HostSupport::HardwareKvm) => {
            Selection {
                hypervisor: Hypervisor::Builtin,
                accelerator: Accelerator::Kvm,
                warning: None,
            }
        }
        (HypervisorChoice::Qemu, HostSupport::HardwareKvm) => Selection {
            hypervisor: Hypervisor::Qemu,
            accelerator: Accelerator::Kvm,
            warning: None,
        },
        (HypervisorChoice::Qemu | HypervisorChoice::Auto, HostSupport::LimitedKvm(why))
        | (HypervisorChoice::Qemu | HypervisorChoice::Auto, HostSupport::NoKvm(why)) => Selection {
            hypervisor: Hypervisor::Qemu,
            accelerator: Accelerator::Tcg,
            warning: Some(tcg_warning(why)),
        },
    })
}

/// The host's kind, from [`crate::host::detect`].
pub fn host_support() -> HostSupport {
    use crate::host::HostKind;
    match crate::host::detect() {
        HostKind::HardwareKvm => HostSupport::HardwareKvm,
        k @ HostKind::NestedPvm => HostSupport::LimitedKvm(k.describe()),
        k @ HostKind::NoKvm(_) => HostSupport::NoKvm(k.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_parses_and_rejects_unknown_names() {
        assert_eq!("qemu".parse(), Ok(HypervisorChoice::Qemu));
        assert_eq!("builtin".parse(), Ok(HypervisorChoice::Builtin));
        assert_eq!("auto".parse(), Ok(HypervisorChoice::Auto));
        assert!("xen"
            .parse::<HypervisorChoice>()
            .unwrap_err()
            .contains("xen"));
    }

    #[test]
    fn auto_prefers_builtin_on_hardware_kvm_else_qemu_tcg_with_reason() {
        let s = select(HypervisorChoice::Auto, &HostSupport::HardwareKvm).unwrap();
        assert_eq!(
            (s.hypervisor, s.accelerator),
            (Hypervisor::Builtin, Accelerator::Kvm)
        );
        assert!(s.warning.is_none());
        let s = select(
            HypervisorChoice::Auto,
            &HostSupport::LimitedKvm("nested".into()),
        )
        .unwrap();
        assert_eq!(
            (s.hypervisor, s.accelerator),
            (Hypervisor::Qemu, Accelerator::Tcg)
        );
        assert!(s
            .warning
            .unwrap()
            .contains("software-emulated (qemu TCG, much slower): nested"));
        let s = select(HypervisorChoice::Qemu, &HostSupport::HardwareKvm).unwrap();
        assert_eq!(s.accelerator, Accelerator::Kvm);
        let err = select(
            HypervisorChoice::Builtin,
            &HostSupport::NoKvm("no /dev/kvm".into()),
        );
        assert!(err.unwrap_err().to_string().contains("no /dev/kvm"));
    }
}
