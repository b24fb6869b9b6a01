//! The container state store: one directory per container under the root, holding
//! `state.json` (written atomically) and a lock file (flock) that serializes operations.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::{id, proc, BackendKind, Error, Result};

/// OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        };
        f.pad(s)
    }
}

/// The OCI state of a container plus what isobox needs to find it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// isobox extensions (ignored by OCI consumers).
    pub backend: BackendKind,
    /// Start time of `pid` in clock ticks, so a recycled pid is not taken for the container.
    pub pid_start_time: u64,
    /// RFC 3339 creation time.
    pub created: String,
    /// True once `start` released the process.
    #[serde(default)]
    pub started: bool,
    /// The container's state directory.
    pub state_dir: PathBuf,
    /// Backend-private data.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl State {
    /// Recompute `status` from the live process.
    pub fn refresh(&mut self) {
        self.status = if !proc::is_alive(self.pid, self.pid_start_time) {
            Status::Stopped
        } else if self.started {
            Status::Running
        } else {
            Status::Created
        };
    }

    /// The OCI state document (what `isobox state` prints and hooks read on stdin).
    pub fn oci_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "pid": if self.status == Status::Stopped { 0 } else { self.pid },
            "bundle": self.bundle,
            "annotations": self.annotations,
            "backend": self.backend,
            "created": self.created,
        })
    }
}

/// A held per-container lock; released on drop.
pub struct Lock {
    _file: File,
}

/// The state root (`--root`, default /run/isobox).
#[derive(Debug, Clone)]
pub struct StateStore {
    root: PathBuf,
}

impl StateStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Make the directory of a new container and lock it. Fails with `Exists` when the id is
    /// taken.
    pub fn create(&self, id: &str) -> Result<(PathBuf, Lock)> {
        id::validate(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .ctx(|| format!("creating state root {}", self.root.display()))?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
        let lock = self.lock_dir(&dir)?;
        Ok((dir, lock))
    }

    /// Lock an existing container.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        id::validate(id)?;
        let dir = self.dir(id);
        if !dir.join("state.json").exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        self.lock_dir(&dir)
    }

    fn lock_dir(&self, dir: &Path) -> Result<Lock> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(
                format!("locking {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Lock { _file: file })
    }

    /// Write the state atomically (temp file + rename).
    pub fn save(&self, state: &State) -> Result<()> {
        let dir = self.dir(&state.id);
        let tmp = dir.join("state.json.tmp");
        let path = dir.join("state.json");
        let body = serde_json::to_vec_pretty(state).expect("state serializes");
        let mut f = File::create(&tmp).ctx(|| format!("writing {}", tmp.display()))?;
        f.write_all(&body)
            .ctx(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).ctx(|| format!("renaming {}", tmp.display()))
    }

    /// Load a container's state and refresh its status from the live process.
    pub fn load(&self, id: &str) -> Result<State> {
        id::validate(id)?;
        let path = self.dir(id).join("state.json");
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let mut state: State = serde_json::from_slice(&body).map_err(|e| Error::BadState {
            id: id.to_string(),
            reason: format!("{} is corrupt: {e}", path.display()),
        })?;
        state.refresh();
        Ok(state)
    }

    /// Ids of all containers with a state file, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", self.root.display()), e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("state.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Remove a container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(store: &StateStore, id: &str) -> State {
        State {
            oci_version: crate::OCI_VERSION.into(),
            id: id.into(),
            status: Status::Created,
            pid: std::process::id() as i32,
            bundle: "/b".into(),
            annotations: BTreeMap::new(),
            backend: BackendKind::Container,
            pid_start_time: proc::start_time(std::process::id() as i32).unwrap(),
            created: "2026-01-01T00:00:00Z".into(),
            started: false,
            state_dir: store.dir(id),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn create_save_load_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::new(tmp.path().join("root"));
        let (_dir, _lock) = store.create("c1").unwrap();
        let mut st = sample(&store, "c1");
        store.save(&st).unwrap();
        assert_eq!(store.load("c1").unwrap().status, Status::Created);
        st.started = true;
        store.save(&st).unwrap();
        assert_eq!(store.load("c1").unwrap().status, Status::Running);
        st.pid_start_time += 1; // as if the pid were recycled
        store.save(&st).unwrap();
        assert_eq!(store.load("c1").unwrap().status, Status::Stopped);
        assert_eq!(store.list().unwrap(), vec!["c1".to_string()]);
        assert!(matches!(store.create("c1"), Err(Error::Exists(_))));
        store.remove("c1").unwrap();
        assert!(matches!(store.load("c1"), Err(Error::NotFound(_))));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn stopped_state_reports_pid_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::new(tmp.path());
        let mut st = sample(&store, "x");
        st.status = Status::Stopped;
        assert_eq!(st.oci_json()["pid"], 0);
        assert_eq!(st.oci_json()["status"], "stopped");
    }
}
