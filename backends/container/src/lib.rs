//! The container backend: the bundle's process in Linux namespaces, confined by cgroups
//! (v1, v2 or hybrid), capabilities and rlimits, on a pivot_root'ed rootfs.
//!
//! Process model (like runc, without re-executing a binary): `create` clones the container
//! init directly from the calling process with the new namespaces; the init sets up its
//! rootfs, reports "created" over a socket pair and blocks on `<state_dir>/exec.fifo` until
//! `start` opens it; then it drops privileges and execs the workload.
//!
//! Setup order in the init: id maps (written by the parent), joined namespaces (user first;
//! new namespaces inside a joined user namespace are unshared after it), cgroup (joined by
//! the parent while the init mounts; a new cgroup namespace is unshared once inside it),
//! hostname, rootfs propagation and self bind, `mounts`, /dev, createRuntime/prestart hooks
//! (parent) and createContainer hooks, pivot_root, sysctl, readonly and masked paths,
//! read-only root, "created"; after `start`: startContainer hooks, rlimits, umask, groups,
//! gid, uid, capabilities, personality, noNewPrivileges, cwd, the seccomp filter, execve
//! (the filter comes before groups/uid/capabilities when noNewPrivileges is off: loading
//! it then needs CAP_SYS_ADMIN).
//!
//! Not supported (refused with an error naming the field, never silently ignored):
//! seccomp notify (`SCMP_ACT_NOTIFY`, `linux.seccomp.listenerPath`), `process.apparmorProfile`,
//! `process.scheduler`, `process.execCPUAffinity`, `linux.intelRdt`, `linux.memoryPolicy`, id-mapped and recursive-attribute mount
//! options, a new time namespace, and a new pid namespace inside a joined user namespace.
//! `create` must be called from a single-threaded process.

mod backend;
pub mod cgroups;
mod check;
mod devices;
mod enter;
pub mod error;
mod exec;
mod fds;
mod init;
mod mountinfo;
mod mounts;
mod namespaces;
mod paths;
mod process;
pub mod rlimits;
mod rootfs;
mod seccomp;
mod spawn;
mod sync;
mod sysctl;
mod terminal;
mod user;

pub use backend::ContainerBackend;
pub use check::check;
pub use error::ContainerError;
pub use spawn::BackendData;
