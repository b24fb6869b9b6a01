//! The root filesystem: propagation, the self bind, pivot_root, and what is done after it
//! (sysctl, read-only and masked paths, a read-only root).

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{ContainerError, Result};
use crate::mountinfo;
use crate::mounts::remount_bind;
use isobox_common::protect;

fn mnt(dest: &Path, reason: String) -> ContainerError {
    ContainerError::Mount {
        destination: dest.to_path_buf(),
        reason,
    }
}

fn none() -> Option<&'static Path> {
    None
}

/// Set the propagation of every mount (linux.rootfsPropagation, default rslave), make the
/// mount holding the rootfs private (slave for a slave propagation) so neither the self bind
/// nor pivot_root reaches the host (pivot_root refuses a shared parent, and binding from an
/// unbindable one fails), and bind the rootfs onto itself so it is a mount point of its own.
/// As runc's prepareRoot.
pub fn prepare(rootfs: &Path, propagation: MsFlags) -> Result<()> {
    nix::mount::mount(none(), "/", None::<&str>, propagation, None::<&str>).map_err(|e| {
        mnt(
            Path::new("/"),
            format!("linux.rootfsPropagation: setting {propagation:?}: {e}"),
        )
    })?;
    let parent_flag = if propagation.contains(MsFlags::MS_SLAVE) {
        MsFlags::MS_SLAVE
    } else {
        MsFlags::MS_PRIVATE
    };
    let real =
        fs::canonicalize(rootfs).map_err(|e| mnt(rootfs, format!("resolving the rootfs: {e}")))?;
    let mounts = mountinfo::read().map_err(|e| mnt(rootfs, format!("reading mountinfo: {e}")))?;
    let holder = mountinfo::containing(&mounts, &real)
        .map(|m| m.mount_point.clone())
        .unwrap_or_else(|| "/".into());
    nix::mount::mount(none(), &holder, None::<&str>, parent_flag, None::<&str>).map_err(|e| {
        mnt(
            &holder,
            format!("setting the propagation of the mount holding the rootfs: {e}"),
        )
    })?;
    nix::mount::mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| mnt(rootfs, format!("binding the rootfs onto itself: {e}")))
}

/// Make `rootfs` the root: pivot_root(".", ".") stacks the old root on top of the new one,
/// which is then detached (after making it a slave so the unmount does not reach the host).
/// Then the new root gets linux.rootfsPropagation when that is shared or unbindable: applied
/// before, it would have been the host root's (private and slave were already applied by
/// [`prepare`]).
pub fn pivot(rootfs: &Path, propagation: MsFlags) -> Result<()> {
    let step = |what: &str, e: Errno| mnt(rootfs, format!("pivot_root: {what}: {e}"));
    let dir =
        fs::File::open(rootfs).map_err(|e| mnt(rootfs, format!("opening the rootfs: {e}")))?;
    nix::unistd::fchdir(&dir).map_err(|e| step("chdir", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| step("pivot_root", e))?;
    nix::mount::mount(
        none(),
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| step("making the old root a slave", e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| step("detaching the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| step("chdir /", e))?;
    if !propagation.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_SLAVE) {
        nix::mount::mount(none(), "/", None::<&str>, propagation, None::<&str>).map_err(|e| {
            mnt(
                Path::new("/"),
                format!("linux.rootfsPropagation: setting {propagation:?} on the new root: {e}"),
            )
        })?;
    }
    Ok(())
}

/// Without a mount namespace: chroot into the rootfs (runc does the same), mounting nothing,
/// so no mount is made in the host's namespace.
pub fn chroot(rootfs: &Path) -> Result<()> {
    nix::unistd::chroot(rootfs).map_err(|e| mnt(rootfs, format!("chroot: {e}")))?;
    nix::unistd::chdir("/").map_err(|e| mnt(rootfs, format!("chroot: chdir /: {e}")))
}

/// What a config without a mount namespace may not ask for: each would mount, remount or
/// create something in the host's mount namespace or its files. Errors are (field, reason).
pub fn check_without_mount_ns(
    spec: &oci_spec::runtime::Spec,
) -> std::result::Result<(), (String, String)> {
    let why = "needs a mount namespace (add {\"type\": \"mount\"} to linux.namespaces)";
    if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err((
            "mounts[0]".into(),
            format!("{why}: without one it would be mounted on the host"),
        ));
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        return Err((
            "root.readonly".into(),
            format!("{why}: without one the remount would reach the host's mount"),
        ));
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    // runc refuses these two the same way ("unable to restrict sys entries without a
    // private MNT namespace").
    for (field, paths) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        if paths.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err((
                field.into(),
                format!("{why}: without one the paths would be mounted over on the host"),
            ));
        }
    }
    if linux
        .rootfs_propagation()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err((
            "linux.rootfsPropagation".into(),
            format!("{why}: without one it would change the host's mounts"),
        ));
    }
    if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err((
            "linux.devices".into(),
            format!("{why}: without one the nodes would be made in the rootfs on the host and outlive the container"),
        ));
    }
    Ok(())
}

/// Write linux.sysctl under /proc/sys (see [`protect::sysctl`]).
pub fn sysctl(values: &HashMap<String, String>) -> Result<()> {
    protect::sysctl(values).map_err(from_protect)
}

/// linux.readonlyPaths, after pivot_root (see [`protect::readonly_paths`]).
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    protect::readonly_paths(paths).map_err(from_protect)
}

/// linux.maskedPaths, after pivot_root (see [`protect::masked_paths`]).
pub fn masked_paths(paths: &[String]) -> Result<()> {
    protect::masked_paths(paths).map_err(from_protect)
}

/// The container's own words for the shared code's errors.
fn from_protect(e: isobox_common::Error) -> ContainerError {
    match e {
        isobox_common::Error::Setup(text) => ContainerError::Init(text),
        isobox_common::Error::Mount {
            destination,
            reason,
        } => ContainerError::Mount {
            destination,
            reason,
        },
        other => other.into(),
    }
}

/// root.readonly: remount / read-only.
pub fn readonly_root() -> Result<()> {
    remount_bind(Path::new("/"), MsFlags::MS_RDONLY).map_err(|e| {
        mnt(
            Path::new("/"),
            format!("root.readonly: remount read-only: {e}"),
        )
    })
}
