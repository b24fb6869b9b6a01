use std::path::PathBuf;

/// Errors of the container backend. Each names the file, field or step and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A cgroup could not be made, written or removed.
    #[error("cgroup {path}: {reason}")]
    Cgroup { path: PathBuf, reason: String },
    /// A resource limit the host cannot apply (missing controller, file, or permission).
    #[error("{field}: {reason}")]
    Resource { field: String, reason: String },
    /// A mount failed.
    #[error("mount {destination}: {reason}")]
    Mount {
        destination: PathBuf,
        reason: String,
    },
    /// Setting up the container process failed; reported by its init over the sync pipe.
    #[error("container init: {0}")]
    Init(String),
    /// An error of the shared crate (a failing hook), worded there.
    #[error(transparent)]
    Common(#[from] isobox_common::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ContainerError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<ContainerError> for isobox_common::Error {
    fn from(e: ContainerError) -> Self {
        isobox_common::Error::Backend(Box::new(e))
    }
}

pub type Result<T, E = ContainerError> = std::result::Result<T, E>;
