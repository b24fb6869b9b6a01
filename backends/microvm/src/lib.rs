//! The microVM backend: the bundle's process inside a KVM microVM with its own kernel and the
//! isobox guest agent as PID 1, on the built-in VMM or on qemu.

pub mod backend;
pub mod cmdline;
pub mod error;
pub mod exec;
pub mod host;
pub mod host_hooks;
pub mod host_process;
pub mod hypervisor;
pub mod image;
mod live;
pub mod network;
pub mod qemu;
pub mod record;
pub mod terminal;
pub mod virtiofs;
pub mod vmm;
pub mod vmspec;

pub use backend::MicrovmBackend;
pub use error::MicrovmError;
pub use host_process::vm_host_main;
