//! Every kind of bad input gets a one-line error naming the file, field or id and the reason,
//! a non-zero exit, and leaves nothing behind.
//!
//! The cases are data: `tests/bad-input/<case>/case.json` (format below), all run by the one
//! test `corpus`; `ISOBOX_CASE=<name> cargo test --test bad_input corpus` runs one of them.
//! The tests further down need several commands and stay code.
//!
//! ```text
//! {
//!   "description": "one line: what is bad",
//!   "expect": "substring the one-line error must contain",
//!   "expect_microvm": "optional: another substring for the --backend microvm run",
//!   "config": { JSON merge patch (RFC 7386) applied to default_config(["/bin/sh","-c","true"]) },
//!   "rootfs": [ {"symlink": ["a", "b"]}, {"chain": {"from": "l", "count": 41, "target": "/x"}},
//!               {"mkdir": "d"}, {"write": ["etc/x", "text"]}, {"remove": "bin/sh"},
//!               {"sized": ["big", 100000000]} ],          // a sparse file of that many bytes
//!   "args": ["--kernel", "/nonexistent"],    // after `run`, before `--bundle B ID`
//!   "id": "container id (default: the directory name)",
//!   "env": {"ISOBOX_BACKEND": "xen"},       // environment of the isobox process
//!   "raw_config": false,                     // true: the case's own config.json as is (or none)
//!   "bundle": "optional: a bundle path to pass instead of the prepared one",
//!   "host_paths_absent": ["$HOST_TMP/x"],    // must not exist afterwards
//!   "microvm": true,                         // also run with --backend microvm
//!   "container": false,                      // not with the container backend (microVM-only)
//!   "long": [{"pointer": "/process/env/0", "prefix": "PATH=", "repeat": "/x:", "count": 9}]
//!                                            // set a config value to a huge string
//! }
//! ```
//! `$HOST_TMP` (a fresh host directory per run) and `$BUNDLE` are replaced everywhere in the
//! case, and `$ROOTFS` too.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{stderr, Isobox, TestBundle};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bad-input");
/// A bad input fails fast; a run still going after this is killed and counted as a failure.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest acceptable error line: a few paths and values of at most 200 characters each.
const MAX_LINE: usize = 2100;

fn say(line: &str) {
    // libtest captures print!/eprint! but not the raw stderr descriptor: the per-case lines
    // are meant to be seen.
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let obj = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            obj.remove(k);
        } else {
            merge_patch(obj.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Cut a message for an assertion so one huge error does not drown the report.
fn cut(s: &str) -> String {
    if s.chars().count() <= 400 {
        return s.to_string();
    }
    let head: String = s.chars().take(400).collect();
    format!("{head}… ({} bytes)", s.len())
}

fn substitute(text: &str, vars: &[(&str, &Path)]) -> String {
    let mut text = text.to_string();
    for (name, path) in vars {
        text = text.replace(name, &path.to_string_lossy());
    }
    text
}

fn apply_rootfs_op(rootfs: &Path, op: &Value) -> Result<(), String> {
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or(format!("bad rootfs op {op}"))
    };
    let obj = op.as_object().ok_or(format!("bad rootfs op {op}"))?;
    let (kind, arg) = obj.iter().next().ok_or(format!("bad rootfs op {op}"))?;
    let io = |e: std::io::Error| format!("rootfs op {op}: {e}");
    match kind.as_str() {
        "symlink" => {
            let (link, target) = (s(&arg[0])?, s(&arg[1])?);
            let link = rootfs.join(link);
            if let Some(p) = link.parent() {
                fs::create_dir_all(p).map_err(io)?;
            }
            let _ = fs::remove_file(&link);
            symlink(target, link).map_err(io)?;
        }
        "chain" => {
            // from -> from1 -> from2 -> … -> from{count-1} -> target: `count` links.
            let from = s(&arg["from"])?;
            let count = arg["count"].as_u64().ok_or(format!("bad chain {op}"))?;
            let target = s(&arg["target"])?;
            let name = |i: u64| {
                if i == 0 {
                    from.clone()
                } else {
                    format!("{from}{i}")
                }
            };
            for i in 0..count {
                let next = if i + 1 == count {
                    target.clone()
                } else {
                    // Relative to the link's own directory.
                    Path::new(&name(i + 1))
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                };
                let link = rootfs.join(name(i));
                if let Some(p) = link.parent() {
                    fs::create_dir_all(p).map_err(io)?;
                }
                symlink(next, link).map_err(io)?;
            }
        }
        "sized" => {
            let len = arg[1].as_u64().ok_or(format!("bad rootfs op {op}"))?;
            let f = fs::File::create(rootfs.join(s(&arg[0])?)).map_err(io)?;
            f.set_len(len).map_err(io)?;
        }
        "mkdir" => fs::create_dir_all(rootfs.join(s(arg)?)).map_err(io)?,
        "write" => {
            let path = rootfs.join(s(&arg[0])?);
            if let Some(p) = path.parent() {
                fs::create_dir_all(p).map_err(io)?;
            }
            fs::write(path, s(&arg[1])?).map_err(io)?;
        }
        "remove" => {
            let path = rootfs.join(s(arg)?);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path).map_err(io)?,
                Ok(_) => fs::remove_file(&path).map_err(io)?,
                Err(e) => return Err(io(e)),
            }
        }
        _ => return Err(format!("unknown rootfs op {kind:?}")),
    }
    Ok(())
}

/// Entries of `dir` whose name contains `needle`.
fn entries_with(dir: &Path, needle: &str) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(needle))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Host processes whose command line mentions `needle` (a VM host process, qemu).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        if let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{pid}: {}", cut(&cmd)));
            }
        }
    }
    found
}

struct Case {
    name: String,
    dir: PathBuf,
    text: String,
}

impl Case {
    fn load_all() -> Vec<Case> {
        let mut cases: Vec<Case> = fs::read_dir(CORPUS)
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("case.json").is_file())
            .map(|e| Case {
                name: e.file_name().to_string_lossy().into_owned(),
                dir: e.path(),
                text: fs::read_to_string(e.path().join("case.json")).unwrap(),
            })
            .collect();
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        cases
    }

    fn spec(&self) -> Result<Value, String> {
        serde_json::from_str(&self.text).map_err(|e| format!("case.json: {e}"))
    }

    /// Run the case once: the error line it printed, or what went wrong.
    fn run(&self, backend_args: &[&str]) -> Result<String, String> {
        let spec = self.spec()?;
        let id = spec["id"].as_str().unwrap_or(&self.name).to_string();
        let host_tmp = tempfile::Builder::new()
            .prefix("isobox-host-")
            .tempdir()
            .unwrap();
        let run_tmp = tempfile::Builder::new()
            .prefix("isobox-tmpdir-")
            .tempdir()
            .unwrap();
        let bundle = TestBundle::sh("true");
        let vars = [
            ("$HOST_TMP", host_tmp.path()),
            ("$BUNDLE", bundle.path()),
            ("$ROOTFS", &bundle.rootfs()),
        ];
        let spec: Value = serde_json::from_str(&substitute(&self.text, &vars))
            .map_err(|e| format!("case.json after substitution: {e}"))?;

        let config_path = bundle.path().join("config.json");
        if spec["raw_config"].as_bool().unwrap_or(false) {
            fs::remove_file(&config_path).unwrap();
            if let Ok(text) = fs::read_to_string(self.dir.join("config.json")) {
                fs::write(&config_path, substitute(&text, &vars)).unwrap();
            }
        } else {
            let mut config = support::default_config(&["/bin/sh", "-c", "true"]);
            if !spec["config"].is_null() {
                merge_patch(&mut config, &spec["config"]);
            }
            for long in spec["long"].as_array().into_iter().flatten() {
                let pointer = long["pointer"].as_str().ok_or("long: no pointer")?;
                let count = long["count"].as_u64().ok_or("long: no count")? as usize;
                let text = long["prefix"].as_str().unwrap_or_default().to_string()
                    + &long["repeat"]
                        .as_str()
                        .ok_or("long: no repeat")?
                        .repeat(count);
                *config
                    .pointer_mut(pointer)
                    .ok_or(format!("long: no {pointer} in the config"))? = Value::String(text);
            }
            fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        }
        for op in spec["rootfs"].as_array().into_iter().flatten() {
            apply_rootfs_op(&bundle.rootfs(), op)?;
        }
        let bundle_arg = spec["bundle"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| bundle.path().to_path_buf());
        let mut args: Vec<String> = spec["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().expect("args are strings").to_string())
            .collect();
        args.extend(backend_args.iter().map(|s| s.to_string()));
        let expect = match (backend_args.is_empty(), spec["expect_microvm"].as_str()) {
            (false, Some(e)) => e,
            _ => spec["expect"].as_str().ok_or("case.json: no \"expect\"")?,
        };

        let tmp = std::env::temp_dir();
        let tmp_before = entries_with(&tmp, &id);
        let ib = Isobox::new();
        let err_file = tempfile::tempfile().unwrap();
        let mut child = ib
            .cmd()
            .arg("run")
            .args(&args)
            .arg("--bundle")
            .arg(&bundle_arg)
            .arg(&id)
            .env("TMPDIR", run_tmp.path())
            .envs(
                spec["env"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
            )
            .stdout(Stdio::null())
            .stderr(err_file.try_clone().unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {RUN_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err_file = err_file;
        err_file.rewind().unwrap();
        let mut err = Vec::new();
        err_file.read_to_end(&mut err).unwrap();
        let err = String::from_utf8_lossy(&err).into_owned();

        let mut problems = Vec::new();
        if status.success() {
            problems.push("exit status 0".to_string());
        }
        // A warning (e.g. that the microVM is software-emulated) may precede the error.
        let lines = err
            .trim_end_matches('\n')
            .lines()
            .filter(|l| !l.starts_with("isobox: warning: "))
            .count();
        if lines != 1 {
            problems.push(format!("{lines} lines on stderr: {}", cut(&err)));
        }
        // Values in errors are cut (at 200 characters each): no line may be huge.
        if let Some(long) = err.lines().find(|l| l.len() > MAX_LINE) {
            problems.push(format!("a {}-byte line: {}", long.len(), cut(long)));
        }
        // An I/O error whose context already printed its cause must not print it again.
        if let Some(twice) = err.lines().find(|l| l.matches("(os error ").count() > 1) {
            problems.push(format!("the OS error more than once: {}", cut(twice)));
        }
        let matching = err.lines().filter(|l| l.contains(expect)).count();
        if matching != 1 {
            problems.push(format!("no line contains {expect:?}: {}", cut(&err)));
        }
        // The state root is private to this run: after a failure it must be empty.
        let left: Vec<_> = fs::read_dir(ib.root.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !left.is_empty() {
            problems.push(format!("left in the state root: {left:?}"));
        }
        if !support::processes_of(&id).is_empty() {
            problems.push(format!("processes left: {:?}", support::processes_of(&id)));
        }
        for needle in [ib.root.path(), bundle.path()] {
            let procs = processes_mentioning(&needle.to_string_lossy());
            if !procs.is_empty() {
                problems.push(format!("processes left: {procs:?}"));
            }
        }
        // The cgroup paths of "." and ".." are existing directories, not the container's.
        let cgroups = if id == "." || id == ".." {
            Vec::new()
        } else {
            support::cgroup_dirs(&id)
        };
        for cg in cgroups {
            if cg.exists() {
                problems.push(format!("cgroup {} left behind", cg.display()));
            }
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let canon = fs::canonicalize(bundle.path()).unwrap();
        for m in mounts.lines() {
            if m.contains(&*canon.to_string_lossy())
                || m.contains(&*host_tmp.path().to_string_lossy())
            {
                problems.push(format!("mount left: {m}"));
            }
        }
        let private_tmp: Vec<_> = fs::read_dir(run_tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        if !private_tmp.is_empty() {
            problems.push(format!("temporary files left in $TMPDIR: {private_tmp:?}"));
        }
        // (An empty id matches every name: the private $TMPDIR check covers that case.)
        let new_tmp: Vec<_> = entries_with(&tmp, &id)
            .difference(&tmp_before)
            .filter(|p| {
                !id.is_empty()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("isobox"))
            })
            .cloned()
            .collect();
        if !new_tmp.is_empty() {
            problems.push(format!(
                "temporary files left in {}: {new_tmp:?}",
                tmp.display()
            ));
        }
        for p in spec["host_paths_absent"].as_array().into_iter().flatten() {
            let p = Path::new(p.as_str().expect("host_paths_absent are strings"));
            if fs::symlink_metadata(p).is_ok() {
                problems.push(format!("host path {} exists", p.display()));
            }
        }
        if problems.is_empty() {
            Ok(err
                .lines()
                .find(|l| l.contains(expect))
                .unwrap_or_default()
                .to_string())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Every case of tests/bad-input, for the container backend and, where the case says so, the
/// microVM backend.
#[test]
fn corpus() {
    require_root!();
    let only = std::env::var("ISOBOX_CASE").ok().filter(|s| !s.is_empty());
    let cases: Vec<Case> = Case::load_all()
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name))
        .collect();
    assert!(!cases.is_empty(), "no case named {only:?} in {CORPUS}");
    if cases
        .iter()
        .any(|c| c.spec().unwrap_or_default()["microvm"] == true)
    {
        support::ensure_guest_kernel().unwrap();
    }
    let (mut runs, mut vm_runs, mut failures) = (0, 0, Vec::new());
    for case in &cases {
        let spec = case.spec().unwrap_or_default();
        let microvm = spec["microvm"].as_bool().unwrap_or(false);
        let container = spec["container"].as_bool().unwrap_or(true);
        let mut backends: Vec<(&str, Vec<&str>)> = Vec::new();
        if container || !microvm {
            backends.push(("container", vec![]));
        }
        if microvm {
            backends.push(("microvm", vec!["--backend", "microvm"]));
        }
        for (label, args) in backends {
            runs += 1;
            if label == "microvm" {
                vm_runs += 1;
            }
            let started = Instant::now();
            let result = case.run(&args);
            let ms = started.elapsed().as_millis();
            match result {
                Ok(line) => say(&format!(
                    "bad-input {} [{label}]: ok ({ms} ms): {}",
                    case.name,
                    isobox_common::text::cut(&line, 300)
                )),
                Err(why) => {
                    say(&format!("bad-input {} [{label}]: FAILED: {why}", case.name));
                    failures.push(format!("{} [{label}]: {why}", case.name));
                }
            }
        }
    }
    say(&format!(
        "bad-input: {} cases, {runs} runs ({vm_runs} microvm), {} passed, {} failed",
        cases.len(),
        runs - failures.len(),
        failures.len()
    ));
    if only.is_none() {
        // The corpus is the promise: it may grow, not silently shrink.
        assert!(cases.len() >= 80, "only {} bad-input cases", cases.len());
        assert!(
            vm_runs >= 20,
            "only {vm_runs} bad-input cases run on the microVM"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} bad-input runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The runner itself: merge patch and the chain builder.
#[test]
fn runner_merge_patch_follows_rfc7386() {
    let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "arr": [1, 2]});
    merge_patch(
        &mut t,
        &json!({"a": "z", "c": {"f": null}, "arr": [3], "n": {"x": 1}}),
    );
    assert_eq!(
        t,
        json!({"a": "z", "c": {"d": "e"}, "arr": [3], "n": {"x": 1}})
    );
}

#[test]
fn runner_chain_has_count_links() {
    let dir = tempfile::tempdir().unwrap();
    apply_rootfs_op(
        dir.path(),
        &json!({"chain": {"from": "d/l", "count": 3, "target": "/x"}}),
    )
    .unwrap();
    assert_eq!(
        fs::read_link(dir.path().join("d/l")).unwrap(),
        Path::new("l1")
    );
    assert_eq!(
        fs::read_link(dir.path().join("d/l1")).unwrap(),
        Path::new("l2")
    );
    assert_eq!(
        fs::read_link(dir.path().join("d/l2")).unwrap(),
        Path::new("/x")
    );
    assert!(fs::symlink_metadata(dir.path().join("d/l3")).is_err());
}

#[test]
fn duplicate_id_keeps_the_first_container() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("exec sleep 100");
    let out = ib.run_detached(&["create", "dup"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ib.run_detached(&["create", "dup"], b.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container \"dup\" already exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ib.state("dup")["status"], "created");
    // Only a stopped container may be deleted without --force.
    let out = ib.run(&["delete", "--force", "dup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ib.assert_nothing_left("dup", Some(b.path()));
}

#[test]
fn unknown_id() {
    require_root!();
    let ib = Isobox::new();
    for verb in [
        &["state", "ghost"][..],
        &["start", "ghost"],
        &["kill", "ghost"],
        &["delete", "ghost"],
        &["ps", "ghost"],
    ] {
        let out = ib.run(verb);
        assert!(!out.status.success(), "{verb:?}");
        assert!(
            stderr(&out).contains("container \"ghost\" does not exist"),
            "{verb:?}: {}",
            stderr(&out)
        );
    }
}

/// Every line of a `--log-format json` file, each checked to be one object as runc writes it
/// (what containerd decodes: a level, a message and an RFC 3339 time such as
/// "2026-12-01T18:27:36Z").
fn runc_json_log(log: &Path) -> Vec<Value> {
    let text = fs::read_to_string(log).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let level = v["level"].as_str().unwrap_or_else(|| panic!("level: {l}"));
            assert!(
                ["debug", "info", "warning", "error"].contains(&level),
                "{l}"
            );
            assert!(v["msg"].is_string(), "{l}");
            let time = v["time"].as_str().unwrap_or_else(|| panic!("time: {l}"));
            let shape: String = time
                .chars()
                .map(|c| if c.is_ascii_digit() { 'D' } else { c })
                .collect();
            assert_eq!(shape, "DDDD-DD-DDTDD:DD:DDZ", "{l}");
            assert_eq!(v.as_object().unwrap().len(), 3, "{l}");
            v
        })
        .collect()
}

/// The message containerd shows: the last error line's.
fn last_error(lines: &[Value]) -> String {
    lines
        .iter()
        .rev()
        .find(|l| l["level"] == "error")
        .and_then(|l| l["msg"].as_str())
        .unwrap_or_else(|| panic!("no error line in {lines:?}"))
        .to_string()
}

#[test]
fn errors_reach_the_json_log_file() {
    require_root!();
    let ib = Isobox::new();
    let log = ib.root.path().join("isobox.log");
    let out = ib
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "ghost"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = last_error(&runc_json_log(&log));
    assert!(msg.contains("\"ghost\" does not exist"), "{msg}");

    // A create that fails in the container's setup, as an engine runs it.
    let mut b = TestBundle::sh("true");
    b.edit(|c| c["process"]["args"] = json!(["/no/such/program"]));
    let out = ib
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(b.path())
        .arg("logged")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = last_error(&runc_json_log(&log));
    assert!(msg.contains("/no/such/program"), "{msg}");
    ib.assert_nothing_left("logged", Some(b.path()));

    // A command line isobox refuses is logged too.
    let out = ib
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "create", "--no-such-flag", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = last_error(&runc_json_log(&log));
    assert!(msg.contains("--no-such-flag"), "{msg}");
}

#[test]
fn library_warnings_reach_the_log_file_and_stderr() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    b.edit(|c| c["hooks"] = json!({"poststart": [{"path": "/bin/false"}]}));
    let log = ib.root.path().join("isobox.log");
    let out = ib
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "run", "--bundle"])
        .arg(b.path())
        .arg("warn")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("isobox: warning: container warn: poststart hook /bin/false")),
        "{err}"
    );
    let lines = runc_json_log(&log);
    let warning = lines
        .iter()
        .find(|l| l["level"] == "warning")
        .unwrap_or_else(|| panic!("no warning in the log: {lines:?}"));
    assert!(
        warning["msg"]
            .as_str()
            .unwrap()
            .contains("poststart hook /bin/false"),
        "{warning}"
    );
}

#[test]
fn a_bad_command_line_is_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isobox"))
        .args(["run", "--backend", "xen", "--bundle", ".", "x"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("'xen'") && err.contains("container, microvm"),
        "{err}"
    );
}
