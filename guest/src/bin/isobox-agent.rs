//! The guest agent binary: `/init` of the microVM's initramfs.

fn main() {
    if std::process::id() != 1 {
        eprintln!("isobox-agent: must run as PID 1 inside an isobox microVM");
        std::process::exit(2);
    }
    isobox_guest::agent::run_as_init()
}
