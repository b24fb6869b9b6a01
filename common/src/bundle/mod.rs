//! Loading an OCI bundle: `config.json` parsed strictly with oci-spec and checked for what
//! isobox needs before anything is created on the host.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::text::{self, quote};
use crate::{Error, Result};

/// uid_t/gid_t -1: "no change" to setuid(2)/setgid(2), never an id.
const NO_ID: u32 = u32::MAX;

/// The most ranges a uid_map or gid_map takes (Linux 4.15 and later).
const MAX_ID_RANGES: usize = 340;

/// PATH used to find the executable when the process environment has none (runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A bundle whose config.json parsed and validated.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// `<dir>/config.json`, as named in errors.
    pub config_path: PathBuf,
    pub spec: Spec,
    /// Absolute path of the root filesystem on the host.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Load and validate the bundle in `dir`.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = fs::canonicalize(dir).map_err(|e| Error::Bundle {
            path: dir.to_path_buf(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "no such directory".to_string(),
                _ => e.to_string(),
            },
        })?;
        if !dir.is_dir() {
            return Err(Error::Bundle {
                path: dir,
                reason: "not a directory".into(),
            });
        }
        let config_path = dir.join("config.json");
        let text = match fs::read_to_string(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Bundle {
                    path: dir,
                    reason: "no config.json in the bundle (write one with `isobox spec`)".into(),
                })
            }
            Err(e) => return Err(Error::io(format!("reading {}", config_path.display()), e)),
        };
        Bundle::from_config_text(dir, &text)
    }

    /// Parse and validate `text` as the config.json of the bundle in `dir` (absolute, as
    /// [`Bundle::load`] canonicalizes it). The rootfs it names is checked on disk.
    pub fn from_config_text(dir: PathBuf, text: &str) -> Result<Bundle> {
        let config_path = dir.join("config.json");
        let spec = parse_spec(&config_path, text)?;
        let root = spec.root().as_ref().ok_or_else(|| Error::Config {
            file: config_path.clone(),
            field: "root".into(),
            reason: "missing (the bundle needs a root filesystem)".into(),
        })?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        let bundle = Bundle {
            dir,
            config_path,
            spec,
            rootfs,
        };
        bundle.validate()?;
        Ok(bundle)
    }

    /// An annotation of config.json.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }

    /// The process, validated when present. It may be absent at create: a container
    /// without one can be created but not started (runtime-spec, `process`).
    pub fn process(&self) -> Option<&Process> {
        self.spec.process().as_ref()
    }

    /// The container's PATH: the process environment's, else the default.
    pub fn search_path(&self) -> String {
        self.process()
            .and_then(|p| p.env().as_ref())
            .and_then(|env| env.iter().rev().find_map(|e| e.strip_prefix("PATH=")))
            .unwrap_or(DEFAULT_PATH)
            .to_string()
    }

    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Config {
            file: self.config_path.clone(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn validate(&self) -> Result<()> {
        let version = self.spec.version();
        if !version.starts_with("1.") {
            return Err(self.err(
                "ociVersion",
                format!("{} is not an OCI runtime-spec 1.x version", quote(version)),
            ));
        }
        if !self.rootfs.is_dir() {
            return Err(self.err(
                "root.path",
                format!(
                    "root filesystem {} does not exist",
                    text::path(&self.rootfs)
                ),
            ));
        }
        if let Some(process) = self.process() {
            self.validate_process(process)?;
        }
        self.validate_linux()?;
        if let Some(mounts) = self.spec.mounts() {
            for (i, m) in mounts.iter().enumerate() {
                if !m.destination().is_absolute() {
                    return Err(self.err(
                        format!("mounts[{i}].destination"),
                        format!(
                            "{} must be an absolute path",
                            quote(&m.destination().to_string_lossy())
                        ),
                    ));
                }
            }
        }
        if self.process().is_some() {
            self.resolve_executable()?;
        }
        Ok(())
    }

    fn validate_process(&self, process: &Process) -> Result<()> {
        validate_process(process, &self.config_path, "process.")
    }

    /// The kernel's rules for uid_map and gid_map, checked before anything is made: each
    /// range non-empty, within 0..4294967295 inside and outside, no two overlapping, at most
    /// 340 of them.
    fn validate_id_mappings(&self, linux: &oci_spec::runtime::Linux) -> Result<()> {
        for (name, maps) in [
            ("uidMappings", linux.uid_mappings()),
            ("gidMappings", linux.gid_mappings()),
        ] {
            let maps = maps.as_deref().unwrap_or_default();
            if maps.len() > MAX_ID_RANGES {
                return Err(self.err(
                    format!("linux.{name}"),
                    format!(
                        "{} ranges, the kernel takes at most {MAX_ID_RANGES}",
                        maps.len()
                    ),
                ));
            }
            let span =
                |first: u32, size: u32| (u64::from(first), u64::from(first) + u64::from(size));
            for (i, m) in maps.iter().enumerate() {
                let field = format!("linux.{name}[{i}]");
                if m.size() == 0 {
                    return Err(
                        self.err(format!("{field}.size"), "0: a range maps at least one id")
                    );
                }
                for (what, first) in [("containerID", m.container_id()), ("hostID", m.host_id())] {
                    let (_, end) = span(first, m.size());
                    if end > u64::from(NO_ID) {
                        return Err(self.err(
                            field,
                            format!(
                                "{what} {first} + size {} passes {}, the highest id a map can hold",
                                m.size(),
                                NO_ID - 1
                            ),
                        ));
                    }
                }
                for (j, o) in maps[..i].iter().enumerate() {
                    let overlap = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
                    for (what, mine, theirs) in [
                        ("containerID", m.container_id(), o.container_id()),
                        ("hostID", m.host_id(), o.host_id()),
                    ] {
                        if overlap(span(mine, m.size()), span(theirs, o.size())) {
                            return Err(self.err(
                                field,
                                format!("its {what} range overlaps that of linux.{name}[{j}]"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_linux(&self) -> Result<()> {
        let Some(linux) = self.spec.linux() else {
            return Ok(());
        };
        self.validate_id_mappings(linux)?;
        let mut seen = Vec::new();
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            if seen.contains(&ns.typ()) {
                return Err(self.err(
                    format!("linux.namespaces[{i}].type"),
                    format!("namespace {:?} listed twice", ns.typ()),
                ));
            }
            seen.push(ns.typ());
            if let Some(p) = ns.path() {
                if !p.exists() {
                    return Err(self.err(
                        format!("linux.namespaces[{i}].path"),
                        format!("{} does not exist", p.display()),
                    ));
                }
            }
        }
        let has_uts = seen.contains(&LinuxNamespaceType::Uts);
        if self.spec.hostname().is_some() && !has_uts {
            return Err(self.err(
                "hostname",
                "setting a hostname needs a uts namespace in linux.namespaces",
            ));
        }
        if !seen.contains(&LinuxNamespaceType::User) {
            for (name, maps) in [
                ("uidMappings", linux.uid_mappings()),
                ("gidMappings", linux.gid_mappings()),
            ] {
                if maps.as_ref().is_some_and(|m| !m.is_empty()) {
                    return Err(self.err(
                        format!("linux.{name}"),
                        "id mappings need a user namespace in linux.namespaces",
                    ));
                }
            }
        }
        if let Some(mem) = linux.resources().as_ref().and_then(|r| r.memory().as_ref()) {
            if let Some(limit) = mem.limit() {
                if limit == 0 || limit < -1 {
                    return Err(self.err(
                        "linux.resources.memory.limit",
                        format!("{limit} is not a valid limit (bytes > 0, or -1 for none)"),
                    ));
                }
                if let Some(swap) = mem.swap() {
                    if swap != -1 && limit > 0 && swap < limit {
                        return Err(self.err(
                            "linux.resources.memory.swap",
                            format!("{swap} is below memory.limit {limit} (swap counts memory plus swap)"),
                        ));
                    }
                }
            }
        }
        if let Some(cpu) = linux.resources().as_ref().and_then(|r| r.cpu().as_ref()) {
            // Empty means unset, as in runc.
            if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
                parse_cpu_list(cpus).map_err(|r| self.err("linux.resources.cpu.cpus", r))?;
            }
            if let (Some(q), Some(p)) = (cpu.quota(), cpu.period()) {
                if q > 0 && (p < 1000 || q < 1000) {
                    return Err(self.err(
                        "linux.resources.cpu",
                        format!("quota {q} and period {p} must each be at least 1000 µs"),
                    ));
                }
            }
        }
        if let Some(pids) = linux.resources().as_ref().and_then(|r| r.pids().as_ref()) {
            if pids.limit() == 0 || pids.limit() < -1 {
                return Err(self.err(
                    "linux.resources.pids.limit",
                    format!(
                        "{} is not a valid limit (> 0, or -1 for none)",
                        pids.limit()
                    ),
                ));
            }
        }
        if let Some(sysctl) = linux.sysctl() {
            for key in sysctl.keys() {
                if key.is_empty() || key.contains("..") || key.starts_with('/') {
                    return Err(self.err(
                        format!("linux.sysctl.{}", text::plain(key)),
                        "not a sysctl name",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Find the process's executable inside the rootfs the way execvp would, following
    /// symlinks within the rootfs. Returns its path as seen inside the container.
    pub fn resolve_executable(&self) -> Result<PathBuf> {
        let process = self
            .process()
            .ok_or_else(|| self.err("process", "missing: there is no executable to find"))?;
        let arg0 = &process.args().as_ref().expect("validated")[0];
        let candidates: Vec<PathBuf> = if arg0.contains('/') {
            vec![process.cwd().join(arg0)]
        } else {
            self.search_path()
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| Path::new(d).join(arg0))
                .collect()
        };
        for cand in &candidates {
            if resolve_in_root(&self.rootfs, cand).is_some_and(|fd| is_executable(&fd)) {
                return Ok(cand.clone());
            }
        }
        // A bind mount may bring the executable in; the container checks again at exec time.
        let covered = self.spec.mounts().iter().flatten().any(|m| {
            candidates
                .iter()
                .any(|c| c.starts_with(m.destination()) && m.destination() != Path::new("/"))
        });
        if covered {
            return Ok(candidates[0].clone());
        }
        let reason = if arg0.contains('/') {
            format!(
                "executable {} not found in the rootfs {}",
                quote(arg0),
                text::path(&self.rootfs)
            )
        } else {
            format!(
                "executable {} not found in the rootfs {} (searched PATH={})",
                quote(arg0),
                text::path(&self.rootfs),
                text::plain(&self.search_path())
            )
        };
        Err(self.err("process.args[0]", reason))
    }
}

/// Check a process spec as the runtime needs it: `file` and `prefix` name its fields in
/// errors (`process.` in config.json, nothing in the process file `exec --process` reads).
pub fn validate_process(process: &Process, file: &Path, prefix: &str) -> Result<()> {
    let err = |field: &str, reason: String| Error::Config {
        file: file.to_path_buf(),
        field: format!("{prefix}{field}"),
        reason,
    };
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(err("args", "must not be empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(err(
            "cwd",
            format!(
                "{} must be an absolute path",
                quote(&process.cwd().to_string_lossy())
            ),
        ));
    }
    if let Some(env) = process.env() {
        if let Some((i, bad)) = env.iter().enumerate().find(|(_, e)| !e.contains('=')) {
            return Err(err(
                &format!("env[{i}]"),
                format!("{} is not NAME=VALUE", quote(bad)),
            ));
        }
        if let Some((i, bad)) = env.iter().enumerate().find(|(_, e)| e.starts_with('=')) {
            return Err(err(
                &format!("env[{i}]"),
                format!("{} has an empty NAME", quote(bad)),
            ));
        }
    }
    // execve takes C strings: a NUL byte would cut the value short.
    let strings = [
        ("args", args),
        ("env", process.env().as_deref().unwrap_or_default()),
    ];
    for (field, list) in strings {
        if let Some((i, bad)) = list.iter().enumerate().find(|(_, a)| a.contains('\0')) {
            return Err(err(
                &format!("{field}[{i}]"),
                format!("{} contains a NUL byte", quote(bad)),
            ));
        }
    }
    if process.cwd().to_string_lossy().contains('\0') {
        return Err(err(
            "cwd",
            format!(
                "{} contains a NUL byte",
                quote(&process.cwd().to_string_lossy())
            ),
        ));
    }
    validate_user(process, &err)
}

/// setuid(-1) and setgid(-1) mean "no change": id 4294967295 would leave the workload
/// running as the runtime's user, root.
fn validate_user(process: &Process, err: &dyn Fn(&str, String) -> Error) -> Result<()> {
    let user = process.user();
    let none = |field: String| {
        Err(err(
            &field,
            format!(
                "{NO_ID} is not an id: it means \"no change\" to setuid/setgid, and the \
                     workload would keep running as root"
            ),
        ))
    };
    if user.uid() == NO_ID {
        return none("user.uid".into());
    }
    if user.gid() == NO_ID {
        return none("user.gid".into());
    }
    if let Some(i) = user
        .additional_gids()
        .iter()
        .flatten()
        .position(|g| *g == NO_ID)
    {
        return none(format!("user.additionalGids[{i}]"));
    }
    Ok(())
}

/// Parse config.json strictly: syntax errors carry line and column, type errors the field path.
pub fn parse_spec(file: &Path, text: &str) -> Result<Spec> {
    parse_strict(file, text)
}

/// Parse the OCI process JSON `exec --process` reads, as strictly as config.json.
pub fn parse_process(file: &Path, text: &str) -> Result<Process> {
    parse_strict(file, text)
}

/// Parse the OCI linux.resources JSON `update --resources` reads, as strictly as config.json.
pub fn parse_resources(file: &Path, text: &str) -> Result<oci_spec::runtime::LinuxResources> {
    parse_strict(file, text)
}

fn parse_strict<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T> {
    // Syntax first, so a broken file is reported by line and column rather than by field.
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(Error::Json {
            file: file.to_path_buf(),
            line: e.line(),
            column: e.column(),
            reason: strip_position(&e.to_string()),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        Error::Config {
            file: file.to_path_buf(),
            field: if path == "." {
                "(top level)".to_string()
            } else {
                path
            },
            reason: format!(
                "{} (line {}, column {})",
                strip_position(&inner.to_string()),
                inner.line(),
                inner.column()
            ),
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// CPUs a Linux kernel can have at most (x86_64's largest NR_CPUS): a cpuset names CPUs below.
pub const MAX_CPUS: u32 = 8192;

/// Parse a cpuset list such as `0-2,4` into its CPUs, ascending, each once. A CPU number
/// Linux cannot have is refused: a range such as `0-4294967295` would otherwise be billions
/// of entries.
pub fn parse_cpu_list(list: &str) -> std::result::Result<Vec<u32>, String> {
    let mut set = vec![false; MAX_CPUS as usize];
    for part in list.split(',').map(str::trim) {
        let bad = || format!("{} is not a CPU list like \"0-1,3\"", quote(list));
        if part.is_empty() {
            return Err(bad());
        }
        let (a, b): (u32, u32) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let n = part.parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if a > b {
            return Err(bad());
        }
        if b >= MAX_CPUS {
            return Err(format!(
                "{} names CPU {b}; Linux has at most {MAX_CPUS} CPUs (0-{})",
                quote(list),
                MAX_CPUS - 1
            ));
        }
        set[a as usize..=b as usize].fill(true);
    }
    Ok((0..MAX_CPUS).filter(|&c| set[c as usize]).collect())
}

/// Open `path` (as the container sees it) inside the rootfs `root`, following symlinks as the
/// container would but never out of it (see [`crate::rootpath`]). None when it does not
/// resolve (missing, too many links, a magic link).
pub fn resolve_in_root(root: &Path, path: &Path) -> Option<std::os::fd::OwnedFd> {
    crate::rootpath::Root::open(root).ok()?.resolve(path).ok()
}

/// A regular file with an execute bit, as execve wants.
fn is_executable(fd: &std::os::fd::OwnedFd) -> bool {
    nix::sys::stat::fstat(fd)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_mode & 0o111 != 0)
}

#[cfg(test)]
mod tests;
