use std::path::PathBuf;

/// Errors of the microVM backend. Each names the file, device or step and the reason.
#[derive(Debug, thiserror::Error)]
pub enum MicrovmError {
    /// A KVM ioctl failed; `what` names the step (KVM_CREATE_VM, KVM_RUN, …).
    #[error("KVM {what}: {source}")]
    Kvm {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// /dev/kvm cannot be used at all.
    #[error("KVM unavailable: {0}")]
    KvmUnavailable(String),
    /// Guest memory setup or access failed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The kernel image cannot be loaded.
    #[error("kernel {path}: {reason}")]
    Kernel { path: PathBuf, reason: String },
    /// No kernel could be found or provisioned.
    #[error("no guest kernel available: {0}")]
    NoKernel(String),
    /// Building the initramfs failed or it does not fit.
    #[error("initramfs {path}: {reason}")]
    Initramfs { path: PathBuf, reason: String },
    /// Unpacking a .deb or a compressed kernel failed.
    #[error("{path}: {reason}")]
    Unpack { path: PathBuf, reason: String },
    /// Provisioning a guest kernel failed at `step` (apt-get download, unpack, store, …).
    #[error("kernel provisioning, {step}: {reason}")]
    Provision { step: String, reason: String },
    /// The hypervisor process (built-in VMM or qemu) failed or died.
    #[error("{hypervisor}: {reason}")]
    Hypervisor { hypervisor: String, reason: String },
    /// A backend option (`--hypervisor`, `--kernel`, …) is unknown or has a bad value.
    #[error("microvm option {key}: {reason}")]
    InvalidOption { key: String, reason: String },
    /// A resource limit the VM cannot take (`update` of what is fixed at boot).
    #[error("{field}: {reason}")]
    Resource { field: String, reason: String },
    /// The container's network namespace cannot be entered or carried into the VM.
    #[error("network: {0}")]
    Network(String),
    /// The guest agent misbehaved or never answered.
    #[error("guest agent: {0}")]
    Agent(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl MicrovmError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        MicrovmError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<MicrovmError> for isobox_common::Error {
    fn from(e: MicrovmError) -> Self {
        isobox_common::Error::Backend(Box::new(e))
    }
}

pub type Result<T, E = MicrovmError> = std::result::Result<T, E>;
