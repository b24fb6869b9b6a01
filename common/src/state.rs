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
    /// Frozen by `pause` (the backend reports it; see [`State::refresh`]).
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.pad(s)
    }
}

/// A host process named by pid and start time, so a recycled pid is never taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRef {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessRef {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: i32) -> Option<Self> {
        Some(ProcessRef {
            pid,
            start_time: proc::start_time(pid)?,
        })
    }

    /// The calling process.
    pub fn current() -> Self {
        let pid = std::process::id() as i32;
        ProcessRef {
            pid,
            start_time: proc::start_time(pid).unwrap_or(0),
        }
    }

    pub fn is_alive(&self) -> bool {
        proc::is_alive(self.pid, self.start_time)
    }

    /// SIGKILL the process if it is still this one, then wait (at most `limit`) until it is
    /// gone or a zombie; reaps it when it is our child. True when it is gone.
    pub fn kill_and_wait(&self, limit: std::time::Duration) -> bool {
        if !self.is_alive() {
            return true;
        }
        // SAFETY: kill(2) with integer arguments, on the pid checked just above.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let deadline = std::time::Instant::now() + limit;
        loop {
            // Reap it if it is our child; harmless (ECHILD) otherwise.
            // SAFETY: waitpid with a null status pointer.
            unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), libc::WNOHANG) };
            if !self.is_alive() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Record it in `path` as `PID START_TIME` (temp file + rename, so a reader never sees
    /// half of it).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(
            path,
            format!("{} {}\n", self.pid, self.start_time).as_bytes(),
        )
    }

    /// Read what `save` wrote; None when the file is missing or unreadable.
    pub fn load(path: &Path) -> Option<Self> {
        let text = fs::read_to_string(path).ok()?;
        let mut it = text.split_whitespace();
        Some(ProcessRef {
            pid: it.next()?.parse().ok()?,
            start_time: it.next()?.parse().ok()?,
        })
    }
}

/// Write `body` to `path` through a temp file and a rename.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).ctx(|| format!("writing {}", tmp.display()))?;
    f.write_all(body)
        .ctx(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("renaming {}", tmp.display()))
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
    /// The backend's own record ([`State::backend_data`]), opaque to the caller.
    #[serde(default)]
    pub data: serde_json::Value,
    /// The `isobox create` process while the state is incomplete (the backend has not
    /// finished); None once create recorded the whole state. An incomplete state whose
    /// creator is gone is `stopped`, and `delete --force` undoes what the backend recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<ProcessRef>,
}

impl State {
    /// The state of a directory whose `create` died before it wrote anything: stopped,
    /// incomplete, nothing of a backend made yet.
    fn unrecorded(id: &str, state_dir: PathBuf) -> State {
        State {
            oci_version: crate::OCI_VERSION.to_string(),
            id: id.to_string(),
            status: Status::Stopped,
            pid: 0,
            bundle: PathBuf::new(),
            annotations: BTreeMap::new(),
            backend: BackendKind::default(),
            pid_start_time: 0,
            created: String::new(),
            started: false,
            state_dir,
            data: serde_json::Value::Null,
            creator: Some(ProcessRef {
                pid: 0,
                start_time: 0,
            }),
        }
    }

    /// The backend's record, in the type the backend wrote it with ([`State::set_backend_data`],
    /// [`crate::Created::new`]); a state whose record does not read as one is an error.
    pub fn backend_data<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.data).map_err(|e| Error::BadState {
            id: self.id.clone(),
            reason: format!(
                "the {} backend's record in the state is unreadable: {e}",
                self.backend
            ),
        })
    }

    /// Replace the backend's record (the caller saves the state).
    pub fn set_backend_data<T: Serialize>(&mut self, data: &T) {
        self.data = serde_json::to_value(data).expect("backend data serializes");
    }

    /// Recompute `status` from the live process (or, while incomplete, from its creator).
    /// `paused` is not known here: the caller asks the backend (its freezer) and sets it.
    pub fn refresh(&mut self) {
        if let Some(creator) = &self.creator {
            self.status = if creator.is_alive() {
                Status::Creating
            } else {
                Status::Stopped
            };
            return;
        }
        self.status = if !proc::is_alive(self.pid, self.pid_start_time) {
            Status::Stopped
        } else if self.started {
            Status::Running
        } else {
            Status::Created
        };
    }

    /// True while the state is incomplete: `create` has not finished (or died before it did).
    pub fn is_incomplete(&self) -> bool {
        self.creator.is_some()
    }

    /// The OCI state document (what `isobox state` prints and hooks read on stdin).
    pub fn oci_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "pid": match self.status {
                Status::Stopped | Status::Creating => 0,
                _ => self.pid,
            },
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

    /// Lock an existing container (also one whose state is incomplete).
    pub fn lock(&self, id: &str) -> Result<Lock> {
        id::validate(id)?;
        let dir = self.dir(id);
        if !dir.is_dir() {
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
        let path = self.dir(&state.id).join("state.json");
        let body = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomic(&path, &body)
    }

    /// Load a container's state and refresh its status from the live process. A directory
    /// without a state file (its `create` died right after making it) loads as an incomplete,
    /// stopped state, so it can be seen and deleted.
    pub fn load(&self, id: &str) -> Result<State> {
        id::validate(id)?;
        let dir = self.dir(id);
        let path = dir.join("state.json");
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.is_dir() {
                    return Ok(State::unrecorded(id, dir));
                }
                return Err(Error::NotFound(id.to_string()));
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

    /// Ids of all containers (every state directory, complete or not), sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", self.root.display()), e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| id::validate(name).is_ok())
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
            creator: None,
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
    fn incomplete_state_is_creating_while_its_creator_lives_then_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::new(tmp.path());
        let (_dir, _lock) = store.create("half").unwrap();
        let mut st = sample(&store, "half");
        st.pid = 0;
        st.creator = Some(ProcessRef::current());
        store.save(&st).unwrap();
        let loaded = store.load("half").unwrap();
        assert!(loaded.is_incomplete());
        assert_eq!(loaded.status, Status::Creating);
        assert_eq!(loaded.oci_json()["pid"], 0);
        st.creator.as_mut().unwrap().start_time += 1; // the creator died, its pid recycled
        store.save(&st).unwrap();
        assert_eq!(store.load("half").unwrap().status, Status::Stopped);
        // Completing the state drops the creator for good.
        st.creator = None;
        store.save(&st).unwrap();
        assert!(!store.load("half").unwrap().is_incomplete());
    }

    #[test]
    fn a_state_dir_without_state_file_is_listed_loaded_and_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::new(tmp.path());
        let (_dir, lock) = store.create("bare").unwrap();
        drop(lock);
        std::fs::create_dir(tmp.path().join("not an id")).unwrap();
        std::fs::write(tmp.path().join("stray-file"), "").unwrap();
        assert_eq!(store.list().unwrap(), vec!["bare".to_string()]);
        let st = store.load("bare").unwrap();
        assert_eq!(st.status, Status::Stopped);
        assert!(st.is_incomplete());
        assert!(store.lock("bare").is_ok());
        assert!(matches!(store.lock("none"), Err(Error::NotFound(_))));
        assert!(matches!(store.load("none"), Err(Error::NotFound(_))));
    }

    #[test]
    fn process_ref_round_trips_and_tells_a_recycled_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let me = ProcessRef::current();
        assert!(me.is_alive());
        assert_eq!(ProcessRef::of(me.pid), Some(me));
        let path = tmp.path().join("x.pid");
        me.save(&path).unwrap();
        assert_eq!(ProcessRef::load(&path), Some(me));
        assert_eq!(ProcessRef::load(&tmp.path().join("none")), None);
        let other = ProcessRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_alive());
        // Not this process any more: nothing is signalled, and it counts as gone.
        assert!(other.kill_and_wait(std::time::Duration::from_millis(10)));
    }

    #[test]
    fn kill_and_wait_ends_and_reaps_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = ProcessRef::of(child.id() as i32).unwrap();
        assert!(p.kill_and_wait(std::time::Duration::from_secs(5)));
        assert!(proc::start_time(p.pid).is_none(), "reaped");
        let _ = child.wait(); // already reaped: ECHILD
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
