//! The guest kernel command line, Firecracker-like: serial console on ttyS0 (the agent uses
//! ttyS1), no modules unless the agent loads its own, reboot ends the VM, no keyboard
//! controller probing.

use crate::hypervisor::Hypervisor;

/// Arguments every VM gets.
const COMMON: &[&str] = &[
    "console=ttyS0",
    "panic=-1",
    "i8042.noaux",
    "i8042.nomux",
    "i8042.dumbkbd",
    "quiet",
    // Under software emulation the early TSC calibration against the PIT sometimes hangs;
    // a given frequency skips it (32 of 32 boots finished with it, 16 of 20 without).
    "tsc_early_khz=2600000",
    "rdinit=/init",
];

/// The command line for `hypervisor`. The agent ends the VM with a reboot: the built-in VMM
/// stops on the keyboard-controller reset (`reboot=k`). qemu's microvm machine has no i8042,
/// where `reboot=k` spends ~1.5 s polling the absent controller before falling back, so qemu
/// (run with `-no-reboot`) gets the immediate triple-fault reset and no PCI probing.
///
/// `modules`: the agent loads the virtio-fs modules (then turns module loading off itself);
/// otherwise the kernel takes none (`nomodule`).
pub fn kernel_cmdline(hypervisor: Hypervisor, modules: bool) -> String {
    let mut args: Vec<&str> = COMMON.to_vec();
    if !modules {
        args.insert(2, "nomodule");
    }
    match hypervisor {
        Hypervisor::Builtin => args.insert(1, "reboot=k"),
        Hypervisor::Qemu => {
            args.insert(1, "reboot=t");
            args.insert(2, "pci=off");
        }
    }
    args.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_has_console_init_and_reset_mode() {
        let b = kernel_cmdline(Hypervisor::Builtin, false);
        assert!(b.starts_with("console=ttyS0 reboot=k panic=-1 nomodule"));
        assert!(b.contains("tsc_early_khz=2600000") && b.ends_with("rdinit=/init"));
        let q = kernel_cmdline(Hypervisor::Qemu, true);
        assert!(q.contains("reboot=t pci=off") && !q.contains("reboot=k"));
        assert!(!q.contains("nomodule"));
    }
}
