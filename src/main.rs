//! `isobox`: the command line. Parsing and dispatch only; the work happens in the library
//! crates (`isobox-common`, the two backends).

mod backends;
mod cli;
mod commands;
mod compare;
mod log;
mod signals;
mod wait;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    log::init(cli.log.as_deref(), cli.log_format, cli.debug);
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            let msg = format!("{err:#}");
            log::error(&msg);
            eprintln!("isobox: {msg}");
            1
        }
    };
    std::process::exit(code);
}
