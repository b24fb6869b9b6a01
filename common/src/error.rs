use std::path::PathBuf;

/// Every error a library crate of isobox can report. Each message names the file, field or
/// container id it is about and why, so the CLI can print it as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle directory itself is unusable.
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },

    /// config.json is not valid JSON.
    #[error("{file}: invalid JSON at line {line}, column {column}: {reason}")]
    Json {
        file: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },

    /// A field of config.json has a wrong type or a value isobox cannot honour.
    #[error("{file}: {field}: {reason}")]
    Config {
        file: PathBuf,
        field: String,
        reason: String,
    },

    /// A container id is malformed.
    #[error("container id {id:?}: {reason}")]
    InvalidId { id: String, reason: String },

    #[error("container {0:?} does not exist")]
    NotFound(String),

    #[error("container {0:?} already exists")]
    Exists(String),

    /// The operation does not fit the container's status (kill of a stopped one, …).
    #[error("container {id:?}: {reason}")]
    BadState { id: String, reason: String },

    /// A feature a bundle asked for that isobox does not implement (yet).
    #[error("{file}: {field}: {reason}")]
    Unsupported {
        file: PathBuf,
        field: String,
        reason: String,
    },

    /// A hook exited non-zero or could not be run.
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        kind: String,
        path: PathBuf,
        reason: String,
    },

    /// A mount in the final root failed (readonly or masked paths).
    #[error("mount {destination}: {reason}")]
    Mount {
        destination: PathBuf,
        reason: String,
    },
    /// Setting up the root failed before any mount (a path that cannot be resolved).
    #[error("{0}")]
    Setup(String),
    /// The host-guest agent protocol saw something it does not accept.
    #[error("agent protocol: {0}")]
    Protocol(String),

    /// A system call or file operation failed; `context` says on what.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// An error from a backend crate, already worded by it.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync + 'static>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wrap an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wrap an errno from nix with what was being done.
    pub fn sys(context: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Error::io(context, std::io::Error::from(errno))
    }
}

/// Attach a context to `std::io::Result`s in one call.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::sys(context(), e))
    }
}
