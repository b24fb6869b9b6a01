//! `--log FILE` / `--log-format text|json` / `--debug`, the way runc's callers expect them:
//! containerd reads the JSON lines of the log file to report errors.
//!
//! This is also the `log` facade's logger: the library crates warn with `log::warn!`, and
//! a warning goes to stderr ("isobox: warning: ...") and to the log file in its format.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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

fn write(level: &str, msg: &str) {
    let mut guard = LOGGER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(logger) = guard.as_mut() else {
        return;
    };
    if level == "debug" && !logger.debug {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    if logger.debug && logger.file.is_none() && level == "debug" {
        eprintln!("isobox: debug: {msg}");
    }
    if let Some(f) = logger.file.as_mut() {
        let line = match logger.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": now}).to_string()
            }
            LogFormat::Text => format!("{now:.6} {level}: {msg}"),
        };
        let _ = writeln!(f, "{line}");
    }
}

pub fn error(msg: &str) {
    write("error", msg);
}

pub fn debug(msg: &str) {
    write("debug", msg);
}
