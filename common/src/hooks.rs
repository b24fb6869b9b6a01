//! Running OCI hooks: each gets the container's state JSON on stdin and must exit 0.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::{Bundle, Error, Result};

/// The OCI state document handed to hooks.
pub fn state_json(id: &str, status: &str, pid: i32, bundle: &Bundle) -> Vec<u8> {
    let annotations = bundle.spec.annotations().clone().unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle.dir,
        "annotations": annotations,
    }))
    .expect("state serializes")
}

/// Run `hooks` in order; the first that fails (non-zero, signal, timeout) stops the rest.
/// For prestart, createRuntime, createContainer and startContainer, whose failure is an
/// error of the operation.
pub fn run(kind: &str, hooks: &[Hook], state_json: &[u8]) -> Result<()> {
    for hook in hooks {
        run_one(kind, hook, state_json)?;
    }
    Ok(())
}

/// Run every one of `hooks` in order, also after one failed, and return the failures. For
/// poststart and poststop, whose failures the runtime-spec makes warnings.
pub fn run_all(kind: &str, hooks: &[Hook], state_json: &[u8]) -> Vec<Error> {
    hooks
        .iter()
        .filter_map(|hook| run_one(kind, hook, state_json).err())
        .collect()
}

fn run_one(kind: &str, hook: &Hook, state_json: &[u8]) -> Result<()> {
    let fail = |reason: String| Error::Hook {
        kind: kind.to_string(),
        path: hook.path().clone(),
        reason,
    };
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some(arg0) = args.first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
        }
        cmd.args(args.iter().skip(1));
    }
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for e in env {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state_json);
    }
    let Some(timeout) = hook.timeout() else {
        return match child.wait() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(fail(format!("failed: {status}"))),
            Err(e) => Err(fail(format!("waiting: {e}"))),
        };
    };
    let deadline = Instant::now() + Duration::from_secs(timeout.max(1) as u64);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(fail(format!("failed: {status}"))),
            Ok(None) => {}
            Err(e) => return Err(fail(format!("waiting: {e}"))),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timed out after {timeout}s")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Hook {
        serde_json::from_value(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", script]
        }))
        .unwrap()
    }

    #[test]
    fn run_stops_at_the_first_failure_and_run_all_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("second");
        let hooks = [sh("exit 3"), sh(&format!("touch {}", mark.display()))];
        let err = run("prestart", &hooks, b"{}").unwrap_err().to_string();
        assert!(err.starts_with("prestart hook /bin/sh: failed"), "{err}");
        assert!(!mark.exists());
        let errs = run_all("poststart", &hooks, b"{}");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].to_string().contains("exit status: 3"),
            "{}",
            errs[0]
        );
        assert!(mark.exists(), "the hook after the failed one did not run");
    }
}
