//! A stand-alone VM host process for tests: `vm_host vm-host --state-dir DIR`, the same
//! arguments the isobox binary's hidden subcommand takes.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, cmd, flag, dir] if cmd == "vm-host" && flag == "--state-dir" => {
            std::process::exit(isobox_microvm::vm_host_main(std::path::Path::new(dir)))
        }
        _ => {
            eprintln!("usage: vm_host vm-host --state-dir DIR");
            std::process::exit(2)
        }
    }
}
