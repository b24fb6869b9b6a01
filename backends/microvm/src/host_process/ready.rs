//! The readiness pipe from the host process back to `create`: one report, `ok` or
//! `error: <reason>`, then the pipe is closed.

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;

use super::config::READY_FD_ENV;

pub struct Ready(Option<File>);

impl Ready {
    /// Take the descriptor named by the environment (absent when run by hand).
    pub fn from_env() -> Self {
        let fd = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|fd| *fd > 2);
        std::env::remove_var(READY_FD_ENV);
        // SAFETY: `create` passed this descriptor for us alone; we own it from here on and
        // mark it close-on-exec so the hypervisor does not inherit it.
        Ready(fd.map(|fd| unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            File::from_raw_fd(fd)
        }))
    }

    /// Send the one report: Ok(true) once written, Ok(false) when it was already sent (or
    /// nobody was given to listen), Err when the write failed (`create` is gone).
    pub fn report(&mut self, outcome: Result<(), &str>) -> std::io::Result<bool> {
        let Some(mut f) = self.0.take() else {
            return Ok(false);
        };
        let text = match outcome {
            Ok(()) => "ok\n".to_string(),
            Err(msg) => format!("error: {msg}\n"),
        };
        f.write_all(text.as_bytes()).map(|()| true)
    }
}

/// Parse a report read to EOF: `Ok` for `ok`, the reason otherwise.
pub fn parse_report(text: &str) -> Result<(), String> {
    match text.strip_prefix("error: ") {
        _ if text.trim_end() == "ok" => Ok(()),
        Some(reason) => Err(reason.trim_end().to_string()),
        None if text.is_empty() => Err("the VM host process ended without a report".into()),
        None => Err(format!(
            "unexpected report from the VM host process: {text:?}"
        )),
    }
}
