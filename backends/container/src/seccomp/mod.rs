//! OCI `linux.seccomp`: the profile is compiled to a classic BPF program in the runtime,
//! before clone (so a bad profile fails with nothing made), and installed by the init
//! just before execve — before dropping capabilities when noNewPrivileges is off (loading a
//! filter then needs CAP_SYS_ADMIN), else as the last step, after no_new_privs is set.

mod bpf;
mod compile;
mod install;
#[cfg(test)]
mod tests;

pub use compile::{compile, Program};
pub use install::install;
