//! Closing inherited descriptors in the container init.

use std::os::fd::RawFd;

/// The ranges of descriptors from 3 up that are not in `keep`.
pub fn gaps(keep: &[RawFd]) -> Vec<(u32, u32)> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd >= 3)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut out = Vec::new();
    let mut lo = 3u32;
    for fd in keep {
        if fd > lo {
            out.push((lo, fd - 1));
        }
        lo = fd + 1;
    }
    out.push((lo, u32::MAX));
    out
}

/// Close every descriptor from 3 up except those in `keep`.
pub fn close_all_except(keep: &[RawFd]) {
    for (lo, hi) in gaps(keep) {
        // SAFETY: close_range only closes descriptors; none of the kept ones are in range.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
        if rc != 0 {
            // Kernels before 5.9: close what /proc lists.
            close_listed(lo, hi);
        }
    }
}

fn close_listed(lo: u32, hi: u32) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= lo && fd <= hi)
        .collect();
    for fd in fds {
        // SAFETY: closing a descriptor that is not kept (the read_dir one is already gone).
        unsafe { libc::close(fd as RawFd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_skip_kept_descriptors() {
        assert_eq!(gaps(&[]), vec![(3, u32::MAX)]);
        assert_eq!(gaps(&[5, 3, 9, 1]), vec![(4, 4), (6, 8), (10, u32::MAX)]);
        assert_eq!(gaps(&[3, 4]), vec![(5, u32::MAX)]);
    }
}
