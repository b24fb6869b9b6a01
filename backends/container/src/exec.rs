//! The final execve: finding the executable in the container's PATH and building its
//! environment. Failures are printed on the container's stderr (the caller of `start` cannot
//! see them) and end the process with 127.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use isobox_common::bundle::DEFAULT_PATH;

/// The PATH of an environment list (the last PATH= wins, as getenv would see it).
pub fn search_path(env: &[String]) -> String {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string()
}

/// The paths execvp would try for `arg0`.
pub fn candidates(arg0: &str, path: &str) -> Vec<PathBuf> {
    if arg0.contains('/') {
        return vec![PathBuf::from(arg0)];
    }
    path.split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| Path::new(d).join(arg0))
        .collect()
}

/// The environment with HOME added when the config has none.
pub fn environment(env: &[String], home: impl FnOnce() -> String) -> Vec<String> {
    let mut out = env.to_vec();
    if !out.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={}", home()));
    }
    out
}

fn cstrings<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<CString>, String> {
    items
        .map(|s| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte")))
        .collect()
}

/// Exec `args` with `env`; returns only on failure, with a message naming the executable and
/// the PATH searched.
pub fn exec(args: &[String], env: &[String]) -> String {
    let argv = match cstrings(args.iter().map(String::as_str)) {
        Ok(a) => a,
        Err(e) => return format!("process.args: {e}"),
    };
    let envp = match cstrings(env.iter().map(String::as_str)) {
        Ok(e) => e,
        Err(e) => return format!("process.env: {e}"),
    };
    let path = search_path(env);
    let mut first_err: Option<std::io::Error> = None;
    for cand in candidates(&args[0], &path) {
        let Ok(c) = CString::new(cand.as_os_str().as_bytes()) else {
            continue;
        };
        let err = match nix::unistd::execve(&c, &argv, &envp) {
            Ok(never) => match never {},
            Err(e) => std::io::Error::from(e),
        };
        // Like execvp: a missing file means try the next directory; report the first error
        // that says more than "not found".
        let better = first_err.as_ref().is_none_or(|f| {
            f.kind() == std::io::ErrorKind::NotFound && err.kind() != std::io::ErrorKind::NotFound
        });
        if better {
            first_err = Some(err);
        }
        if args[0].contains('/') {
            break;
        }
    }
    let err = first_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT));
    if args[0].contains('/') {
        format!("exec {:?}: {err}", args[0])
    } else {
        format!("exec {:?}: {err} (searched PATH={path})", args[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup_follows_execvp() {
        assert_eq!(candidates("/bin/sh", "/x"), vec![PathBuf::from("/bin/sh")]);
        assert_eq!(candidates("./run", "/x"), vec![PathBuf::from("./run")]);
        assert_eq!(
            candidates("sh", "/usr/bin::/bin"),
            vec![
                PathBuf::from("/usr/bin/sh"),
                PathBuf::from("./sh"),
                PathBuf::from("/bin/sh")
            ]
        );
    }

    #[test]
    fn last_path_wins_and_default_applies() {
        let env = vec!["PATH=/a".to_string(), "X=1".into(), "PATH=/b".into()];
        assert_eq!(search_path(&env), "/b");
        assert_eq!(search_path(&[]), DEFAULT_PATH);
    }

    #[test]
    fn home_is_added_only_when_missing() {
        let env = environment(&["A=1".to_string()], || "/root".into());
        assert_eq!(env, ["A=1", "HOME=/root"]);
        let env = environment(&["HOME=/h".to_string()], || unreachable!());
        assert_eq!(env, ["HOME=/h"]);
    }

    #[test]
    fn failed_exec_names_the_executable_and_path() {
        let msg = exec(
            &["no-such-binary-isobox".to_string()],
            &["PATH=/nonexistent".to_string()],
        );
        assert!(msg.contains("\"no-such-binary-isobox\""), "{msg}");
        assert!(msg.contains("PATH=/nonexistent"), "{msg}");
    }
}
