//! `check` and `kernel`: what this host offers each backend, said plainly.

use std::path::Path;

use anyhow::Result;
use isobox_microvm::hypervisor::{self, HypervisorChoice};
use isobox_microvm::image::kernel::{resolve_kernel, ResolveOptions};

pub fn check() -> Result<()> {
    let kvm = isobox_microvm::host::detect();
    println!("kvm:        {}", kvm.describe());
    match hypervisor::select(HypervisorChoice::Auto, &hypervisor::host_support()) {
        Ok(sel) => println!(
            "microvm:    --hypervisor auto runs {} with {}",
            sel.hypervisor.as_str(),
            sel.accelerator.as_str()
        ),
        Err(e) => println!("microvm:    unavailable: {e}"),
    }
    match isobox_microvm::qemu::find_binary() {
        Ok(path) => println!("qemu:       {}", path.display()),
        Err(e) => println!("qemu:       not found ({e})"),
    }
    match isobox_container::cgroups::detect() {
        Ok(mode) => println!("cgroups:    {}", describe_cgroups(mode)),
        Err(e) => println!("cgroups:    unusable: {e}"),
    }
    println!("namespaces: {}", namespaces().join(" "));
    match resolve_kernel(None, &ResolveOptions::no_provision()) {
        Ok(info) => println!("kernel:     {} ({})", info.path.display(), info.source),
        Err(_) => println!(
            "kernel:     none cached; the first microVM run (or `isobox kernel --fetch`) downloads linux-image-cloud-amd64"
        ),
    }
    Ok(())
}

fn describe_cgroups(mode: isobox_container::cgroups::Mode) -> &'static str {
    use isobox_container::cgroups::Mode;
    match mode {
        Mode::V1 => "v1 (one hierarchy per controller)",
        Mode::V2 => "v2 (unified hierarchy)",
        Mode::Hybrid => "hybrid (v1 controllers, v2 hierarchy without controllers)",
    }
}

/// Namespace kinds this kernel offers (from /proc/self/ns).
fn namespaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/ns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with("_for_children"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn kernel(explicit: Option<&Path>, fetch: bool) -> Result<()> {
    let opts = if fetch {
        ResolveOptions::default()
    } else {
        ResolveOptions::no_provision()
    };
    match resolve_kernel(explicit, &opts) {
        Ok(info) => {
            println!("{info}");
            // The modules a shared root needs (virtio-fs), from the kernel's own package.
            if let Some(release) = &info.release {
                let data = isobox_microvm::image::data_dir();
                let found = if fetch {
                    Some(isobox_microvm::image::modules::ensure(
                        &data, release, true,
                    )?)
                } else {
                    isobox_microvm::image::modules::find(&data, release)
                };
                match found.as_ref().and_then(|m| m.first()) {
                    Some(m) => println!("modules: {}", m.parent().unwrap_or(m).display()),
                    None => println!("modules: none for {release} yet (`isobox kernel --fetch`)"),
                }
            }
            Ok(())
        }
        Err(e) if !fetch && explicit.is_none() => {
            println!("no guest kernel cached ({e})");
            println!("`isobox kernel --fetch`, or the first microVM run, downloads linux-image-cloud-amd64 with apt-get; or pass --kernel PATH / set ISOBOX_KERNEL");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
