//! The guest agent: PID 1 of the microVM. It prepares the guest, greets the host over ttyS1,
//! runs the workload and the other sessions the host opens (`exec`), relays their stdio,
//! terminals and signals, reports their exits, and powers the VM off once the workload has
//! ended. It never panics on bad input: as PID 1 a panic would be a kernel panic.

pub mod cgroup;
pub mod init;
pub mod mux;
pub mod network;
pub mod session;
pub mod shared;
pub mod workload;

use init::log;

/// The exit code reported when a process cannot be started (as a shell does).
pub const EXEC_FAILED: i32 = 127;

/// Run the agent as PID 1 and power off at the end.
pub fn run_as_init() -> ! {
    init::mount_early_filesystems();
    // The guest's own network namespace: loopback up, as in a container's new one.
    if let Err(e) = isobox_common::net::loopback_up() {
        init::log(&format!("bringing up lo: {e}"));
    }
    init::setup_console();
    // A shared root: its modules now, so the devices are there when the host asks to mount.
    if shared::has_modules() {
        if let Err(e) = shared::load_modules() {
            log(&e);
        }
    }
    if let Err(e) = serve() {
        log(&e);
    }
    init::power_off()
}

/// Open the agent's line, run the conversation, and drain the line before the VM ends.
fn serve() -> Result<(), String> {
    let tty = init::open_agent_tty()?;
    let mut mux = mux::Mux::new(tty)?;
    let result = mux.run();
    // The VM resets right after this returns: the last frames must have left the UART.
    if let Err(e) = nix::sys::termios::tcdrain(mux.line()) {
        log(&format!("draining the agent line: {e}"));
    }
    result
}
