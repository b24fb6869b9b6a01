//! The guest agent: PID 1 of the microVM. It prepares the guest, greets the host over ttyS1,
//! runs the one workload the host asks for, relays its stdio and signals, reports its exit and
//! powers the VM off. It never panics on bad input: as PID 1 a panic would be a kernel panic.

pub mod init;
pub mod session;
pub mod workload;

use isobox_common::protocol::{self, ExitStatus, Message};

use init::log;
use session::Sender;

/// The exit code reported when the workload cannot be started (as a shell does).
pub const EXEC_FAILED: i32 = 127;

/// Run the agent as PID 1 and power off at the end.
pub fn run_as_init() -> ! {
    init::mount_early_filesystems();
    init::setup_console();
    if let Err(e) = serve() {
        log(&e);
    }
    init::power_off()
}

/// Open the agent's line, run the conversation, and drain the line before the VM ends.
fn serve() -> Result<(), String> {
    let tty = init::open_agent_tty()?;
    let reader = tty
        .try_clone()
        .map_err(|e| format!("duplicating the {} descriptor: {e}", init::AGENT_TTY))?;
    let tx = Sender::new(tty);
    let result = converse(reader, &tx);
    // The VM resets right after this returns: the last frames must have left the UART.
    tx.drain();
    result
}

/// Hello both ways, then one Exec (or Shutdown) to its end.
fn converse(mut reader: std::fs::File, tx: &Sender) -> Result<(), String> {
    if !tx.send(&Message::hello()) {
        return Err("cannot send Hello to the host".into());
    }
    let hello = protocol::read_message(&mut reader)
        .map_err(|e| e.to_string())?
        .ok_or("host closed the line before Hello")?;
    if let Err(e) = protocol::check_hello(&hello, "host") {
        tx.send(&Message::Error(e.to_string()));
        return Err(e.to_string());
    }
    loop {
        let msg = protocol::read_message(&mut reader)
            .map_err(|e| e.to_string())?
            .ok_or("host closed the line before Exec")?;
        match msg {
            Message::Exec(req) => {
                match workload::spawn(&req) {
                    Ok(child) => {
                        session::supervise(child, reader, tx);
                    }
                    Err(e) => {
                        log(&e);
                        tx.send(&Message::Error(e));
                        tx.send(&Message::Exit(ExitStatus {
                            code: Some(EXEC_FAILED),
                            signal: None,
                        }));
                    }
                }
                return Ok(());
            }
            Message::Shutdown => return Ok(()),
            // Signals or input before the workload exists have nobody to go to.
            Message::Signal(_) | Message::SignalAll(_) | Message::Stdin(_) | Message::StdinEof => {}
            other => log(&format!(
                "ignoring unexpected {} frame before Exec",
                other.name()
            )),
        }
    }
}
