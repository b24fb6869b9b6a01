//! OCI `linux.seccomp`: the profile is compiled to a classic BPF program in the runtime,
//! before clone (so a bad profile fails with nothing made), and installed by the init
//! just before execve — before dropping capabilities when noNewPrivileges is off (loading a
//! filter then needs CAP_SYS_ADMIN), else as the last step, after no_new_privs is set.
//! The compiler and installer live in `isobox_common::seccomp`, shared with the microVM
//! guest agent.

pub use isobox_common::seccomp::{compile, install, Program};
