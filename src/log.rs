//! `--log FILE` / `--log-format text|json` / `--debug`, the way runc's callers expect them:
//! containerd reads the JSON lines of the log file to report errors.
//!
//! This is also the `log` facade's logger: the library crates warn with `log::warn!`, and
//! a warning goes to stderr ("isobox: warning: ...") and to the log file in its format.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::cli::LogFormat;

struct Logger {
    file: Option<std::fs::File>,
    format: LogFormat,
    debug: bool,
}

static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);

/// The `log` crate's entry point into [`LOGGER`].
struct Facade;

static FACADE: Facade = Facade;

impl ::log::Log for Facade {
    fn enabled(&self, meta: &::log::Metadata) -> bool {
        meta.level() <= ::log::max_level()
    }

    fn log(&self, record: &::log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = isobox_common::text::one_line(&record.args().to_string());
        let level = match record.level() {
            ::log::Level::Error => "error",
            ::log::Level::Warn => "warning",
            ::log::Level::Info => "info",
            ::log::Level::Debug | ::log::Level::Trace => "debug",
        };
        match record.level() {
            ::log::Level::Error | ::log::Level::Warn => {
                let _ = std::io::stderr().write_all(format!("isobox: {level}: {msg}\n").as_bytes());
                write(level, &msg);
            }
            _ => write(level, &msg),
        }
    }

    fn flush(&self) {}
}

pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) {
    let file = path.and_then(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| eprintln!("isobox: warning: cannot open log file {}: {e}", p.display()))
            .ok()
    });
    *LOGGER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Logger {
        file,
        format,
        debug,
    });
    if ::log::set_logger(&FACADE).is_ok() {
        ::log::set_max_level(if debug {
            ::log::LevelFilter::Debug
        } else {
            ::log::LevelFilter::Info
        });
    }
}

/// [`init`] from a command line clap refused, so that a usage error reaches the log file too
/// (an engine shows only what that file says). Reads the global `--log`, `--log-format` and
/// `--debug` up to the verb's first operand, past which an argument may be the workload's.
pub fn init_from_raw_args(args: impl IntoIterator<Item = std::ffi::OsString>) {
    let (path, format, debug) = raw_log_args(args);
    init(path.as_deref(), format, debug);
}

fn raw_log_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> (Option<std::path::PathBuf>, LogFormat, bool) {
    let (mut path, mut format, mut debug) = (None, LogFormat::Text, false);
    let mut args = args.into_iter().skip(1);
    let mut operands = 0;
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().map(|v| v.to_string_lossy().into_owned()))
        };
        match name.as_str() {
            "--" => break,
            "--log" => path = value().map(std::path::PathBuf::from),
            "--log-format" => {
                if value().as_deref() == Some("json") {
                    format = LogFormat::Json;
                }
            }
            "--root" => drop(value()),
            "--debug" => debug = true,
            _ if name.starts_with('-') => {}
            _ => {
                operands += 1;
                if operands == 2 {
                    break;
                }
            }
        }
    }
    (path, format, debug)
}

fn write(level: &str, msg: &str) {
    let mut guard = LOGGER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(logger) = guard.as_mut() else {
        return;
    };
    if level == "debug" && !logger.debug {
        return;
    }
    if logger.debug && logger.file.is_none() && level == "debug" {
        eprintln!("isobox: debug: {msg}");
    }
    if let Some(f) = logger.file.as_mut() {
        let line = line(logger.format, level, msg, SystemTime::now());
        let _ = writeln!(f, "{line}");
    }
}

/// One log line as runc (logrus) writes it: JSON `{"level","msg","time"}` with an RFC 3339
/// time, which containerd decodes into a Go `time.Time` to report the last error; or
/// logrus's text `time="…" level=… msg="…"`.
fn line(format: LogFormat, level: &str, msg: &str, at: SystemTime) -> String {
    let time = crate::clock::rfc3339(at, false);
    match format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!(
            "time=\"{time}\" level={level} msg={}",
            serde_json::Value::from(msg)
        ),
    }
}

pub fn error(msg: &str) {
    write("error", msg);
}

pub fn debug(msg: &str) {
    write("debug", msg);
}

#[cfg(test)]
mod tests {
    use super::{line, raw_log_args};
    use crate::cli::LogFormat;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn json_lines_are_runcs() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_149_656_590);
        let l = line(LogFormat::Json, "error", "bad \"x\"", at);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"level": "error", "msg": "bad \"x\"", "time": "2026-12-01T18:27:36Z"})
        );
        assert!(!l.contains('\n'));
    }

    #[test]
    fn text_lines_are_logrus_text() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_149_656);
        assert_eq!(
            line(LogFormat::Text, "warning", "a \"b\"", at),
            r#"time="2026-12-01T18:27:36Z" level=warning msg="a \"b\"""#
        );
    }

    #[test]
    fn a_refused_command_line_still_names_its_log_file() {
        let parse = |line: &str| raw_log_args(line.split(' ').map(std::ffi::OsString::from));
        let (path, format, debug) =
            parse("isobox --root /r --log /l.json --log-format json create --bogus x");
        assert_eq!(path.as_deref(), Some(std::path::Path::new("/l.json")));
        assert_eq!((format, debug), (LogFormat::Json, false));
        let (path, format, debug) = parse("isobox --log=/a --debug state --log-format=json id");
        assert_eq!(path.as_deref(), Some(std::path::Path::new("/a")));
        assert_eq!((format, debug), (LogFormat::Json, true));
        // Past the verb's first operand the arguments may be the workload's.
        let (path, format, _) = parse("isobox exec id sh --log /x --log-format json");
        assert_eq!((path, format), (None, LogFormat::Text));
    }
}
