//! Who the workload is: uids, gids, groups and the user-namespace id maps.

use serde::Serialize;

/// The `user` object of the report.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Raw `/proc/self/uid_map` (null when unreadable).
    pub uid_map: Option<String>,
    /// Raw `/proc/self/gid_map` (null when unreadable).
    pub gid_map: Option<String>,
    /// True when uid_map is anything but the initial namespace's `0 0 4294967295`; null when
    /// uid_map is unreadable.
    pub in_user_ns: Option<bool>,
}

/// Whether an id map is the identity map of the initial user namespace.
pub fn is_identity_map(text: &str) -> bool {
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| !r.is_empty())
        .collect();
    matches!(rows.as_slice(), [row] if row.as_slice() == ["0", "0", "4294967295"])
}

fn groups() -> Vec<u32> {
    // SAFETY: with size 0 getgroups only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(n) else {
        return Vec::new();
    };
    let mut buf: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: buf holds `n` gids.
    let got = unsafe { libc::getgroups(n, buf.as_mut_ptr()) };
    buf.truncate(usize::try_from(got).unwrap_or(0));
    buf
}

pub fn probe() -> (User, Vec<String>) {
    let mut errors = Vec::new();
    let mut read = |path: &str| match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(format!("user: reading {path}: {e}"));
            None
        }
    };
    let uid_map = read("/proc/self/uid_map");
    let gid_map = read("/proc/self/gid_map");
    // SAFETY: these getters cannot fail and take no arguments.
    let (uid, gid, euid, egid) = unsafe {
        (
            libc::getuid(),
            libc::getgid(),
            libc::geteuid(),
            libc::getegid(),
        )
    };
    let user = User {
        uid,
        gid,
        euid,
        egid,
        groups: groups(),
        in_user_ns: uid_map.as_deref().map(|m| !is_identity_map(m)),
        uid_map,
        gid_map,
    };
    (user, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_map_detection() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(is_identity_map("0 0 4294967295"));
        // A rootless container: root inside is 1000 outside.
        assert!(!is_identity_map("         0       1000          1\n"));
        // A big but partial range is still a user namespace.
        assert!(!is_identity_map("0 0 65536\n"));
        // Two rows, even if the first is the identity-looking one.
        assert!(!is_identity_map("0 0 4294967295\n1 1 1\n"));
        // A user namespace whose map was never written.
        assert!(!is_identity_map(""));
    }
}
