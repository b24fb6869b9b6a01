//! The container backend: the bundle's process in Linux namespaces, confined by cgroups
//! (v1, v2 or hybrid), capabilities and rlimits, on a pivot_root'ed rootfs.
//!
//! Process model (like runc, without re-executing a binary): `create` clones the container
//! init directly from the calling process with the new namespaces; the init sets up its
//! rootfs, reports "created" over a socket pair and blocks on `<state_dir>/exec.fifo` until
//! `start` opens it; then it drops privileges and execs the workload.

mod backend;
pub mod caps;
pub mod cgroups;
mod devices;
pub mod error;
mod exec;
mod fds;
mod init;
pub mod mount_opts;
mod mountinfo;
mod mounts;
mod namespaces;
mod paths;
pub mod rlimits;
mod rootfs;
mod spawn;
mod sync;
mod user;

pub use backend::ContainerBackend;
pub use error::ContainerError;
pub use spawn::BackendData;
