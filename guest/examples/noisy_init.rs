//! A stand-in for the guest agent in the microVM's tests: an /init that writes bytes which are
//! not a frame on the agent's line, then waits.

use std::io::Write;

fn main() {
    let _ = nix::mount::mount(
        Some("dev"),
        "/dev",
        Some("devtmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    if let Ok(mut line) = std::fs::OpenOptions::new().write(true).open("/dev/ttyS1") {
        let _ = line.write_all(b"not a frame\n");
    }
    std::thread::sleep(std::time::Duration::from_secs(1000));
}
