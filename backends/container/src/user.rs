//! process.user: supplementary groups, gid and uid, with capabilities kept across the switch.

use oci_spec::runtime::User;

use crate::error::{ContainerError, Result};
use isobox_common::caps::{self, CapMasks};

fn os_err(step: String) -> ContainerError {
    ContainerError::io(step, std::io::Error::last_os_error())
}

/// Whether setgroups(2) is allowed in this user namespace (a gid map written by an
/// unprivileged parent denies it).
fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}

/// Switch to the process's user and set the capability sets. The bounding set is reduced
/// first (it needs CAP_SETPCAP); PR_SET_KEEPCAPS keeps the permitted set across setresuid so
/// capset can then set exactly what the config lists.
pub fn switch(user: &User, caps: Option<&CapMasks>) -> Result<()> {
    if let Some(m) = caps {
        caps::drop_bounding(m)?;
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            return Err(os_err("prctl(PR_SET_KEEPCAPS)".into()));
        }
    }
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    if setgroups_allowed() {
        // SAFETY: setgroups with a valid array and its length.
        if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
            return Err(os_err(format!(
                "process.user.additionalGids: setgroups({groups:?})"
            )));
        }
    } else if !groups.is_empty() {
        return Err(ContainerError::Init(
            "process.user.additionalGids: setgroups is denied in this user namespace".into(),
        ));
    }
    let (uid, gid) = (user.uid(), user.gid());
    // SAFETY: plain id-setting syscalls.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(os_err(format!(
            "process.user.gid: setresgid({gid}) (is it mapped?)"
        )));
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(os_err(format!(
            "process.user.uid: setresuid({uid}) (is it mapped?)"
        )));
    }
    if let Some(m) = caps {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
        caps::apply(m)?;
    }
    Ok(())
}

/// The home directory of `uid` in an /etc/passwd text.
pub fn home_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nbad line\n";
        assert_eq!(home_of(passwd, 0).as_deref(), Some("/root"));
        assert_eq!(home_of(passwd, 33).as_deref(), Some("/var/www"));
        assert_eq!(home_of(passwd, 1000), None);
    }
}
