//! The guest kernel's modules that the agent loads to mount its shared root (virtio-fs over
//! virtio-mmio), and the small initramfs that carries them with the agent.
//!
//! They come from the kernel's own package, unpacked beside it in the cache when it is
//! provisioned, or from the host's /lib/modules when the guest runs the host's kernel.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::cpio::{CpioWriter, Meta, S_IFCHR};
use super::datadir::kernels_dir;
use super::deb;
use crate::error::{MicrovmError, Result};

/// In load order, as paths under `lib/modules/<release>/`: virtio-mmio, virtio-fs and
/// virtio-net (with the failover modules it needs).
pub const GUEST_MODULES: [&str; 8] = [
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/fs/fuse/fuse.ko",
    "kernel/fs/fuse/virtiofs.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
];

/// Where the agent finds them in its initramfs (loaded in file-name order).
pub const GUEST_MODULES_DIR: &str = "isobox/modules";

/// `<data>/kernels/modules-<release>`.
pub fn modules_dir(data_dir: &Path, release: &str) -> PathBuf {
    kernels_dir(data_dir).join(format!("modules-{release}"))
}

fn base(module: &str) -> &str {
    module.rsplit('/').next().unwrap_or(module)
}

/// The modules of `release` in load order: from the cache, else the host's /lib/modules.
pub fn find(data_dir: &Path, release: &str) -> Option<Vec<PathBuf>> {
    let cached = modules_dir(data_dir, release);
    let host = Path::new("/lib/modules").join(release);
    [
        GUEST_MODULES.map(|m| cached.join(base(m))),
        GUEST_MODULES.map(|m| host.join(m)),
    ]
    .into_iter()
    .find(|set| set.iter().all(|p| p.is_file()))
    .map(Vec::from)
}

/// The modules of `release`, unpacked from its package first when the cache predates them.
pub fn ensure(data_dir: &Path, release: &str, progress: bool) -> Result<Vec<PathBuf>> {
    if let Some(m) = find(data_dir, release) {
        return Ok(m);
    }
    super::provision::provision_modules(data_dir, release, progress)?;
    find(data_dir, release).ok_or_else(|| MicrovmError::Provision {
        step: format!("unpacking the modules of {release}"),
        reason: format!("{} is incomplete", modules_dir(data_dir, release).display()),
    })
}

/// Unpack the modules of `release` from its package `deb` into the cache.
pub fn extract(deb_path: &Path, data_dir: &Path, release: &str) -> Result<PathBuf> {
    let dir = modules_dir(data_dir, release);
    let err = |reason: String| MicrovmError::Provision {
        step: format!("unpacking the modules of {release}"),
        reason,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".modules-")
        .tempdir_in(kernels_dir(data_dir))
        .map_err(|e| err(format!("a work directory: {e}")))?;
    let prefix = Path::new("lib/modules").join(release);
    let n = deb::extract_each(deb_path, |p| {
        let rel = p.strip_prefix(&prefix).ok()?;
        GUEST_MODULES
            .iter()
            .find(|m| Path::new(m) == rel)
            .map(|m| tmp.path().join(base(m)))
    })?;
    if n != GUEST_MODULES.len() {
        let missing: Vec<&str> = GUEST_MODULES
            .iter()
            .filter(|m| !tmp.path().join(base(m)).is_file())
            .copied()
            .collect();
        return Err(err(format!(
            "{} has no {} under {}",
            deb_path.display(),
            missing.join(", "),
            prefix.display()
        )));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let kept = tmp.keep();
    std::fs::rename(&kept, &dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        err(format!("renaming into {}: {e}", dir.display()))
    })?;
    Ok(dir)
}

/// The initramfs of a guest whose root is shared: the agent as /init, the modules, and the
/// mount points the agent uses before it switches to the shared root. Built once per agent
/// and module set into `<data>/kernels/`, and reused.
pub fn agent_initramfs(data_dir: &Path, agent: &Path, modules: &[PathBuf]) -> Result<PathBuf> {
    let err = |reason: String| MicrovmError::Initramfs {
        path: agent.to_path_buf(),
        reason,
    };
    let mut inputs = vec![agent.to_path_buf()];
    inputs.extend_from_slice(modules);
    // Keyed by what identifies each input's content cheaply: a rebuilt agent gets a new one.
    let mut key: u64 = 0xcbf2_9ce4_8422_2325;
    for p in &inputs {
        let m = std::fs::metadata(p).map_err(|e| err(format!("{}: {e}", p.display())))?;
        for v in [
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
        ] {
            key = (key ^ v).wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.as_os_str().as_encoded_bytes() {
            key = (key ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let dir = kernels_dir(data_dir);
    let out = dir.join(format!("agent-initramfs-{key:016x}.cpio"));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(".agent-initramfs-")
        .tempfile_in(&dir)
        .map_err(|e| err(format!("a temporary file in {}: {e}", dir.display())))?;
    let file = tmp.as_file().try_clone().map_err(|e| err(e.to_string()))?;
    let mut w = CpioWriter::new(BufWriter::new(file));
    let mut write = || -> std::io::Result<()> {
        for d in [
            "dev",
            "proc",
            "sys",
            "isobox",
            GUEST_MODULES_DIR,
            "isobox/root",
        ] {
            w.dir(d.as_bytes(), Meta::new(0o755))?;
        }
        let console = Meta {
            mode: S_IFCHR | 0o600,
            rdev_major: 5,
            rdev_minor: 1,
            ..Meta::default()
        };
        w.node(b"dev/console", console)?;
        let mut add = |name: String, path: &Path, mode: u32| -> std::io::Result<()> {
            let f = File::open(path)?;
            let len = f.metadata()?.len();
            w.file(name.as_bytes(), Meta::new(mode), len, &mut &f)
        };
        add("init".into(), agent, 0o755)?;
        for (i, m) in modules.iter().enumerate() {
            let name = m.file_name().unwrap_or_default().to_string_lossy();
            add(format!("{GUEST_MODULES_DIR}/{i}-{name}"), m, 0o644)?;
        }
        Ok(())
    };
    write().map_err(|e| err(e.to_string()))?;
    let mut bw = w.finish().map_err(|e| err(e.to_string()))?;
    bw.flush().map_err(|e| err(e.to_string()))?;
    drop(bw);
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(&out)
        .map_err(|e| err(format!("rename into place: {}", e.error)))?;
    remove_stale(&dir, &out);
    Ok(out)
}

/// Remove the initramfs files of earlier agents, once no VM can still be starting from them
/// (qemu reads its initramfs as it starts).
fn remove_stale(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let ours = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("agent-initramfs-") && n.ends_with(".cpio"));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(600));
        if ours && old && p != keep {
            let _ = std::fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_found_in_the_cache_in_load_order() {
        let data = tempfile::tempdir().unwrap();
        assert_eq!(find(data.path(), "0.0-test"), None);
        let dir = modules_dir(data.path(), "0.0-test");
        std::fs::create_dir_all(&dir).unwrap();
        for m in GUEST_MODULES {
            std::fs::write(dir.join(base(m)), b"\x7fELF").unwrap();
        }
        let found = find(data.path(), "0.0-test").unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "virtio_ring.ko",
                "virtio.ko",
                "virtio_mmio.ko",
                "fuse.ko",
                "virtiofs.ko",
                "failover.ko",
                "net_failover.ko",
                "virtio_net.ko"
            ]
        );
        // Built once, then reused.
        let agent = data.path().join("agent");
        std::fs::write(&agent, b"agent").unwrap();
        let a = agent_initramfs(data.path(), &agent, &found).unwrap();
        let b = agent_initramfs(data.path(), &agent, &found).unwrap();
        assert_eq!(a, b);
        let body = std::fs::read(&a).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("isobox/modules/4-virtiofs.ko"), "{text}");
        assert!(text.contains("isobox/modules/7-virtio_net.ko"), "{text}");
        assert!(text.contains("TRAILER!!!"));
    }
}
