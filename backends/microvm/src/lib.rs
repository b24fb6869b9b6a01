//! The microVM backend: the bundle's process inside a KVM microVM with its own kernel and the
//! isobox guest agent as PID 1, on the built-in VMM or on qemu.

pub mod error;
pub mod host;
pub mod image;
pub mod vmm;

pub use error::MicrovmError;
