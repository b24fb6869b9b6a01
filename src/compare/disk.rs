//! What each runtime needs on disk beyond the bundle, and which hypervisor a microVM run used.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use isobox_microvm::image::initramfs::build_initramfs;

use super::measure::run_measured;
use super::row::DiskPart;
use super::runtimes::{which, Kind, Runtime};

/// The files `rt` needs: its binary; for the microVM also the guest kernel and initramfs
/// (`isobox kernel` names them), the guest agent, and the hypervisor binary when it is not the
/// built-in VMM.
///
/// With qemu the rootfs is shared (virtio-fs): the initramfs is the agent's with the kernel's
/// modules, cached for every VM, and virtiofsd is needed. The built-in VMM's initramfs is
/// built per run in the container's state dir from the rootfs and the agent; one is built
/// from `rootfs` in `scratch` to learn its size.
pub fn parts(
    rt: &Runtime,
    exe: &Path,
    hypervisor: Option<&str>,
    rootfs: &Path,
    scratch: &Path,
) -> Vec<DiskPart> {
    let mut parts = Vec::new();
    let mut initramfs = None;
    let mut add = |what: &str, path: &Path| push_file(&mut parts, what, path);
    match rt.kind {
        Kind::Host => {}
        Kind::Oci => {
            if let Some((bin, _)) = rt.binary_size() {
                add(&rt.name, &bin);
            }
        }
        Kind::Isobox => {
            add("isobox", exe);
            if rt.backend == "microvm" {
                for (what, path) in kernel_files(exe) {
                    add(&what, &path);
                }
                let on_qemu = hypervisor.is_some_and(|h| h.to_ascii_lowercase().contains("qemu"));
                if let Ok(agent) = isobox_microvm::backend::find_agent(None) {
                    add("agent", &agent);
                    if on_qemu {
                        if let Some(cached) = shared_root_initramfs(&agent) {
                            add("initramfs (agent and virtio-fs modules, cached)", &cached);
                        }
                    } else {
                        let out = scratch.join("initramfs-for-size.cpio");
                        initramfs = build_initramfs(rootfs, &agent, &out).ok();
                        let _ = fs::remove_file(&out);
                    }
                }
                if let Some(q) = which("qemu-system-x86_64").filter(|_| on_qemu) {
                    add("qemu", &q);
                    if let Ok(v) = isobox_microvm::virtiofs::find_binary() {
                        add("virtiofsd", &v);
                    }
                }
            }
        }
    }
    if let Some(info) = initramfs {
        parts.push(DiskPart {
            what: "initramfs (built per run: rootfs + agent)".into(),
            path: "<state dir>/initramfs".into(),
            bytes: info.size_bytes,
        });
    }
    parts
}

/// The cached initramfs a qemu guest with a shared root boots (built if it is not there yet).
fn shared_root_initramfs(agent: &Path) -> Option<PathBuf> {
    use isobox_microvm::image::{self, ResolveOptions};
    let kernel = image::resolve_kernel(None, &ResolveOptions::no_provision()).ok()?;
    let data = image::data_dir();
    let modules = image::modules::find(&data, kernel.release.as_deref()?)?;
    image::modules::agent_initramfs(&data, agent, &modules).ok()
}

/// Add `path` as a part unless it is missing, not a file, or already listed.
fn push_file(parts: &mut Vec<DiskPart>, what: &str, path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        if meta.is_file() && !parts.iter().any(|p| Path::new(&p.path) == path) {
            parts.push(DiskPart {
                what: what.to_string(),
                path: path.display().to_string(),
                bytes: meta.len(),
            });
        }
    }
}

/// Files `isobox kernel` names on its stdout: every absolute path of an existing file, tagged
/// by what its name suggests.
fn kernel_files(exe: &Path) -> Vec<(String, PathBuf)> {
    let argv: Vec<OsString> = vec![exe.into(), "kernel".into()];
    let Ok(out) = run_measured(&argv, &[], Duration::from_secs(120)) else {
        return Vec::new();
    };
    if !out.success() {
        return Vec::new();
    }
    paths_in(&String::from_utf8_lossy(&out.stdout))
}

/// Absolute paths of existing files mentioned in `text`, with a guess at what each is.
fn paths_in(text: &str) -> Vec<(String, PathBuf)> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '=')
        .filter(|t| t.starts_with('/'))
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            let what = if name.contains("initr") || name.contains("cpio") {
                "initramfs"
            } else if name.contains("agent") {
                "agent"
            } else {
                "kernel"
            };
            (what.to_string(), p)
        })
        .collect()
}

/// The hypervisor and accelerator a microVM run names on stderr ("software-emulated (qemu
/// TCG, …)", "hypervisor: qemu, accelerator: tcg"): the first known name of each.
pub fn parse_vm_label(stderr: &str) -> (Option<String>, Option<String>) {
    const HYPERVISORS: &[&str] = &["qemu", "builtin", "firecracker", "cloud-hypervisor"];
    const ACCELERATORS: &[&str] = &["tcg", "kvm"];
    let lower = stderr.to_ascii_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|t| !t.is_empty())
        .collect();
    let first = |names: &[&str]| {
        tokens
            .iter()
            .find(|t| names.contains(t))
            .map(|t| t.to_string())
    };
    (first(HYPERVISORS), first(ACCELERATORS))
}

/// What `run --backend microvm` picks on this host when no hypervisor is named.
pub fn auto_vm_label() -> (Option<String>, Option<String>) {
    use isobox_microvm::hypervisor::{host_support, select, HypervisorChoice};
    match select(HypervisorChoice::Auto, &host_support()) {
        Ok(sel) => (
            Some(sel.hypervisor.as_str().to_string()),
            Some(sel.accelerator.as_str().to_string()),
        ),
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_label_forms() {
        assert_eq!(
            parse_vm_label("isobox: microvm: hypervisor: qemu, accelerator: tcg\n"),
            (Some("qemu".into()), Some("tcg".into()))
        );
        assert_eq!(
            parse_vm_label("x\nhypervisor=builtin accel=kvm\n"),
            (Some("builtin".into()), Some("kvm".into()))
        );
        assert_eq!(
            parse_vm_label(
                "isobox: warning: the microVM is software-emulated (qemu TCG, much slower): \
                 nested PVM KVM: /dev/kvm works (or a hypervisor underneath)"
            ),
            (Some("qemu".into()), Some("tcg".into()))
        );
        assert_eq!(parse_vm_label("nothing here"), (None, None));
    }

    #[test]
    fn finds_existing_paths_only() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("vmlinux-6.1");
        let i = dir.path().join("initramfs.cpio");
        fs::write(&k, b"k").unwrap();
        fs::write(&i, b"i").unwrap();
        let text = format!(
            "kernel: {}\ninitramfs=\"{}\"\nmissing /no/such/file\n",
            k.display(),
            i.display()
        );
        let found = paths_in(&text);
        assert_eq!(found, vec![("kernel".into(), k), ("initramfs".into(), i)]);
    }

    #[test]
    fn parts_of_an_oci_runtime_and_the_host() {
        let tmp = Path::new("/tmp/none");
        let rts = super::super::runtimes::discover(Path::new("/bin/sh"), tmp, false);
        let host = rts.iter().find(|r| r.kind == Kind::Host).unwrap();
        let none = Path::new("/nonexistent");
        assert!(parts(host, Path::new("/bin/sh"), None, none, none).is_empty());
        if let Some(runc) = rts.iter().find(|r| r.name == "runc" && r.binary.is_some()) {
            let p = parts(runc, Path::new("/bin/sh"), None, none, none);
            assert_eq!(p.len(), 1);
            assert!(p[0].bytes > 1_000_000, "runc is a few MB: {p:?}");
        }
        let container = &rts[0];
        let p = parts(container, Path::new("/bin/sh"), None, none, none);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].what, "isobox");
    }
}
