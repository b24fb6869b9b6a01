//! `isobox-probe [--containment] [--pretty]`: prints one JSON object describing what this
//! sandbox lets the workload see and reach (schema in `isobox_guest::probe`).

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "usage: isobox-probe [--containment] [--pretty]\n  \
    --containment  also run the memory and fork containment checks (caps from\n                 \
    ISOBOX_PROBE_MEM_MIB, default 512, and ISOBOX_PROBE_FORKS, default 1024)\n  \
    --pretty       indent the JSON\n";

fn main() -> ExitCode {
    let mut opts = isobox_guest::probe::Options::default();
    let mut pretty = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--containment" => opts.containment = true,
            "--pretty" => pretty = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprint!("isobox-probe: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let report = isobox_guest::probe::run(opts);
    let json = match report.to_json(pretty) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("isobox-probe: serializing the report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{json}").and_then(|()| out.flush()) {
        eprintln!("isobox-probe: writing stdout: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
