//! Shared pieces of isobox: OCI bundle loading and validation, the [`Backend`] trait both
//! isolation kinds implement, the on-disk container state store, and the wire protocol spoken
//! between the host and the guest agent of a microVM.

pub mod backend;
pub mod bundle;
pub mod caps;
pub mod child;
pub mod console;
pub mod devnodes;
pub mod error;
pub mod features;
pub mod hooks;
pub mod id;
pub mod ioprio;
pub mod mount_opts;
pub mod net;
pub mod proc;
pub mod protect;
pub mod protocol;
pub mod pty;
pub mod rootpath;
pub mod seccomp;
pub mod skip;
pub mod state;
pub mod stats;
pub mod syscalls;
pub mod text;

pub use backend::{
    Backend, BackendKind, CreateOptions, Created, ExecOptions, ExecSession, Execed, MicrovmOptions,
};
pub use bundle::Bundle;
pub use error::{Error, Result};
pub use state::{State, StateStore, Status};
pub use stats::Stats;

/// The OCI runtime-spec version isobox implements.
pub const OCI_VERSION: &str = "1.2.0";
