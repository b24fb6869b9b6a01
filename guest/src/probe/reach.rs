//! Host resources the workload can reach: kernel symbols, device nodes, cgroupfs, sysrq,
//! mounts. Every check opens and closes at most; nothing is read from a device or written.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Stop walking /sys/fs/cgroup after this many entries (a host can have thousands).
const CGROUP_WALK_LIMIT: usize = 4000;

/// The `reachable` object of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Reachable {
    /// `/proc/kallsyms` is readable and shows non-zero addresses (kptr_restrict not in force).
    pub kallsyms_addresses: bool,
    /// `/dev/kvm` opens read-write.
    pub dev_kvm: bool,
    /// `/dev/mem` opens read-only.
    pub dev_mem: bool,
    /// Raw disk nodes present in /dev (sd*, vd*, nvme*, xvd*, hd*).
    pub raw_disks_present: Vec<String>,
    /// Those of them that open read-only.
    pub raw_disks_readable: Vec<String>,
    /// `raw_disks_readable` is not empty.
    pub raw_disk: bool,
    /// Some file or directory under /sys/fs/cgroup passes faccessat(W_OK, AT_EACCESS), which
    /// honours read-only mounts.
    pub cgroupfs_writable: bool,
    /// The first writable cgroupfs path found.
    pub cgroupfs_writable_path: Option<String>,
    /// `/proc/sysrq-trigger` opens for writing (nothing is written).
    pub sysrq_trigger_writable: bool,
    /// Lines of /proc/self/mounts; null when unreadable.
    pub mounts: Option<usize>,
}

/// Whether a kallsyms text shows at least one non-zero address.
pub fn kallsyms_has_addresses(text: &str) -> bool {
    text.lines().take(200).any(|l| {
        l.split_whitespace()
            .next()
            .and_then(|a| u64::from_str_radix(a, 16).ok())
            .is_some_and(|a| a != 0)
    })
}

/// Whether a /dev entry name is a raw disk (whole disk or partition).
pub fn is_raw_disk_name(name: &str) -> bool {
    let rest = ["sd", "vd", "xvd", "hd"]
        .iter()
        .find_map(|p| name.strip_prefix(p));
    match rest {
        Some(r) => r.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
        None => name
            .strip_prefix("nvme")
            .is_some_and(|r| r.chars().next().is_some_and(|c| c.is_ascii_digit())),
    }
}

fn opens(path: &Path, flags: i32) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // O_NONBLOCK: a device open must never wait. O_NOCTTY: never acquire a terminal.
    let flags = flags | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    // SAFETY: c is a valid NUL-terminated path; the fd is closed right away.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd >= 0 {
        // SAFETY: fd was just opened here.
        unsafe { libc::close(fd) };
    }
    fd >= 0
}

fn writable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid path; faccessat only checks permissions.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

/// Breadth-first walk of /sys/fs/cgroup, returning the first writable path.
fn first_writable_cgroup() -> Option<PathBuf> {
    let mut queue = vec![PathBuf::from("/sys/fs/cgroup")];
    let mut seen = 0;
    while !queue.is_empty() && seen < CGROUP_WALK_LIMIT {
        let dir = queue.remove(0);
        if writable(&dir) {
            return Some(dir);
        }
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            seen += 1;
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                queue.push(path);
            } else if writable(&path) {
                return Some(path);
            }
        }
    }
    None
}

fn raw_disks() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_raw_disk_name(n))
        .collect();
    names.sort();
    names
}

pub fn probe() -> Reachable {
    let kallsyms = std::fs::read("/proc/kallsyms")
        .map(|raw| kallsyms_has_addresses(&String::from_utf8_lossy(&raw)))
        .unwrap_or(false);
    let present = raw_disks();
    let readable: Vec<String> = present
        .iter()
        .filter(|n| opens(&Path::new("/dev").join(n), libc::O_RDONLY))
        .cloned()
        .collect();
    let cg = first_writable_cgroup();
    Reachable {
        kallsyms_addresses: kallsyms,
        dev_kvm: opens(Path::new("/dev/kvm"), libc::O_RDWR),
        dev_mem: opens(Path::new("/dev/mem"), libc::O_RDONLY),
        raw_disk: !readable.is_empty(),
        raw_disks_present: present,
        raw_disks_readable: readable,
        cgroupfs_writable: cg.is_some(),
        cgroupfs_writable_path: cg.map(|p| p.display().to_string()),
        sysrq_trigger_writable: opens(Path::new("/proc/sysrq-trigger"), libc::O_WRONLY),
        mounts: std::fs::read_to_string("/proc/self/mounts")
            .ok()
            .map(|t| t.lines().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_zero_vs_real() {
        let hidden = "0000000000000000 A fixed_percpu_data\n0000000000000000 T _text\n";
        let real = "0000000000000000 A fixed_percpu_data\nffffffff81000000 T _text\n";
        assert!(!kallsyms_has_addresses(hidden));
        assert!(kallsyms_has_addresses(real));
        assert!(!kallsyms_has_addresses(""));
    }

    #[test]
    fn raw_disk_names() {
        for n in [
            "sda",
            "sda1",
            "vdb",
            "xvda2",
            "nvme0",
            "nvme0n1",
            "nvme0n1p3",
            "hdc",
        ] {
            assert!(is_raw_disk_name(n), "{n}");
        }
        assert!(!is_raw_disk_name("sg0"));
        assert!(!is_raw_disk_name("snd"));
        assert!(!is_raw_disk_name("stdin"));
        assert!(!is_raw_disk_name("nvme-fabrics"));
        assert!(!is_raw_disk_name("vhost-net"));
        assert!(!is_raw_disk_name("hwrng"));
        assert!(!is_raw_disk_name("sd"));
    }
}
