//! A stand-in for the guest agent in the microVM's tests: an /init that prints one line on the
//! console and ends the VM without ever saying Hello.

fn main() {
    println!("fake init here");
    // SAFETY: plain syscall; as PID 1 it resets the VM.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
}
