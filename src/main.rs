//! `isobox`: the command line. Parsing and dispatch only; the work happens in the library
//! crates (`isobox-common`, the two backends).

mod backends;
mod cli;
mod clock;
mod commands;
mod compare;
mod log;
mod relay;
mod signals;
mod wait;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            log::init_from_raw_args(std::env::args_os());
            usage_error(e)
        }
    };
    log::init(cli.log.as_deref(), cli.log_format, cli.debug);
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            let msg = message(&err);
            log::error(&msg);
            eprintln!("isobox: {msg}");
            1
        }
    };
    std::process::exit(code);
}

/// The file name isobox runs as (argv[0]'s last component); `isobox-vm` makes the microVM
/// the default backend.
pub fn program_name() -> Option<String> {
    let argv0 = std::env::args_os().next()?;
    let name = std::path::Path::new(&argv0).file_name()?;
    Some(name.to_string_lossy().into_owned())
}

/// The error and its causes as one bounded line. A cause whose text the message already
/// ends with (an I/O error whose context printed its source) is not repeated.
fn message(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if msg.is_empty() {
            msg = text;
        } else if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    isobox_common::text::one_line(&msg)
}

/// A bad command line is one line too (clap's own rendering spans several); help and
/// version go out as clap prints them.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line");
    let mut msg = first.trim_start_matches("error: ").to_string();
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        msg.push_str(&format!(" (possible values: {})", valid.join(", ")));
    }
    let msg = isobox_common::text::one_line(&msg);
    log::error(&msg);
    eprintln!("isobox: {msg} (see isobox --help)");
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn the_os_error_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let err = isobox_common::Error::io("open /x", io);
        let msg = message(&anyhow::Error::new(err));
        assert_eq!(msg.matches("No such file or directory").count(), 1, "{msg}");
        assert!(msg.starts_with("open /x: No such file"), "{msg}");
    }

    #[test]
    fn a_message_is_one_bounded_line() {
        let err = anyhow::anyhow!("bad {}\nsecond line", "v".repeat(500_000));
        let msg = message(&err);
        assert!(!msg.contains('\n'));
        assert!(msg.len() < 5000, "{}", msg.len());
    }

    #[test]
    fn context_and_cause_both_show() {
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&err), "outer: inner");
    }
}
