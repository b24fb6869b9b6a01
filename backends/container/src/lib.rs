//! The container backend: the bundle's process in Linux namespaces, confined by cgroups
//! (v1, v2 or hybrid), capabilities and rlimits, on a pivot_root'ed rootfs.

pub mod cgroups;
pub mod error;

pub use error::ContainerError;
