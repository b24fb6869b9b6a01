//! The bundle's `mounts`, done inside the container's mount namespace before pivot_root.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::cgroups::Mode as CgroupMode;
use crate::error::{ContainerError, Result};
use crate::mountinfo;
use crate::paths::{self, fd_path, Root, RootError};
pub use isobox_common::mount_opts::{plan, PlannedMount};
pub use isobox_common::protect::remount_bind;

/// Whether the bundle mounts its own /dev (then isobox fills it with the default devices).
pub fn mounts_dev(mounts: &[PlannedMount]) -> bool {
    mounts
        .iter()
        .any(|m| m.destination == Path::new("/dev") && !m.opts.is_bind())
}

/// What the mounts need to know about the container being built.
pub struct MountContext {
    pub rootfs: PathBuf,
    pub cgroup_mode: Option<CgroupMode>,
    pub cgroup_ns: bool,
}

fn mount_err(m: &PlannedMount, what: String) -> ContainerError {
    ContainerError::Mount {
        destination: m.destination.clone(),
        reason: format!("mounts[{}]: {what}", m.index),
    }
}

fn sys_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    nix::mount::mount(source, target, fstype, flags, data)
}

/// The mount point of `m` inside the rootfs, created if missing (a file when a non-directory
/// is bound there, else a directory), as an O_PATH fd: resolved inside the rootfs, so a
/// symlink there cannot make it a host path.
fn make_mount_point(m: &PlannedMount, root: &Root) -> Result<OwnedFd> {
    let file_wanted = m.opts.is_bind()
        && m.source
            .as_ref()
            .and_then(|s| fs::metadata(s).ok())
            .is_some_and(|meta| !meta.is_dir());
    let res = if file_wanted {
        root.create_file(&m.destination)
    } else {
        root.mkdir_all(&m.destination)
    };
    res.map_err(|e| dest_err(m, e))
}

fn dest_err(m: &PlannedMount, e: RootError) -> ContainerError {
    ContainerError::Init(format!("mounts[{}].destination: {e}", m.index))
}

/// A place to mount on: `path` inside `root`, resolved again for every step, since an fd
/// opened before a mount still names the directory underneath it.
struct At<'a> {
    root: &'a Root,
    path: PathBuf,
    /// The path as the container sees it, for messages.
    shown: PathBuf,
}

impl At<'_> {
    fn open(&self, m: &PlannedMount) -> Result<OwnedFd> {
        self.root.resolve(&self.path).map_err(|e| dest_err(m, e))
    }
}

/// Do every planned mount under `ctx.rootfs`, calling `before_cgroup` before each cgroup
/// filesystem mount.
pub fn mount_all(
    mounts: &[PlannedMount],
    ctx: &MountContext,
    before_cgroup: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    for m in mounts {
        if m.typ == "cgroup" || m.typ == "cgroup2" {
            before_cgroup()?;
        }
        mount_one(m, ctx)?;
    }
    Ok(())
}

fn mount_one(m: &PlannedMount, ctx: &MountContext) -> Result<()> {
    // Opened for each mount: one on "/" changes what the rootfs path leads to.
    let root = paths::open_root(&ctx.rootfs)?;
    let dest = make_mount_point(m, &root)?;
    let target = fd_path(&dest);
    let at = At {
        root: &root,
        path: m.destination.clone(),
        shown: m.destination.clone(),
    };
    if m.typ == "cgroup" || m.typ == "cgroup2" {
        mount_cgroup(m, &at, &target, ctx)?;
    } else if m.opts.is_bind() {
        let src = m.source.as_deref().expect("planned binds have a source");
        let first = m.opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        sys_mount(Some(src), &target, None, first, None)
            .map_err(|e| mount_err(m, format!("binding {}: {e}", src.display())))?;
        let extra = m.opts.remount_flags();
        if !extra.is_empty() {
            remount_bind(&fd_path(&at.open(m)?), extra)
                .map_err(|e| mount_err(m, format!("remounting with {extra:?}: {e}")))?;
        }
    } else {
        let data = m.opts.data_string();
        let src = m.source.clone().unwrap_or_else(|| PathBuf::from(&m.typ));
        let typ = (!m.typ.is_empty()).then_some(m.typ.as_str());
        sys_mount(Some(&src), &target, typ, m.opts.flags, data.as_deref())
            .map_err(|e| mount_err(m, format!("mounting {} ({}): {e}", src.display(), m.typ)))?;
    }
    if !m.opts.propagation.is_empty() {
        let mounted = at.open(m)?;
        for p in &m.opts.propagation {
            sys_mount(None, &fd_path(&mounted), None, *p, None)
                .map_err(|e| mount_err(m, format!("setting propagation {p:?}: {e}")))?;
        }
    }
    Ok(())
}

/// A host cgroup hierarchy as a `cgroup` mount shows it: where the host mounts it, and the
/// container's own cgroup there (None when it cannot be named, as inside a cgroup namespace).
struct HostHierarchy {
    mount_point: PathBuf,
    own: Option<PathBuf>,
}

/// A `cgroup` mount at `at` (whose mount point is the fd path `target`): cgroup2 on a v2
/// host; on v1 and hybrid hosts a tmpfs holding one mount per v1 hierarchy (plus `unified`
/// on hybrid hosts), like runc. Each shows the container's own cgroup as its root.
fn mount_cgroup(m: &PlannedMount, at: &At, target: &Path, ctx: &MountContext) -> Result<()> {
    let flags = m.opts.flags;
    let mode = if m.typ == "cgroup2" {
        CgroupMode::V2
    } else {
        ctx.cgroup_mode.unwrap_or(CgroupMode::V2)
    };
    let mounts = mountinfo::read().map_err(|e| mount_err(m, format!("reading mountinfo: {e}")))?;
    // By now the init is in its cgroup (the caller waited for it).
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| mount_err(m, format!("reading /proc/self/cgroup: {e}")))?;
    let unified = |default: &str| {
        let entry = mounts.iter().find(|e| e.fstype == "cgroup2");
        let mount_point = entry.map_or_else(|| PathBuf::from(default), |e| e.mount_point.clone());
        let root = entry.map_or_else(|| PathBuf::from("/"), |e| e.root.clone());
        let own = mountinfo::own_cgroup_dir(&proc_cgroup, &mount_point, &root, None);
        HostHierarchy { mount_point, own }
    };
    if mode == CgroupMode::V2 {
        let host = unified("/sys/fs/cgroup");
        return mount_cgroup_fs(m, &host, at, "cgroup2", flags, None, ctx);
    }
    let fs_flags = flags - MsFlags::MS_RDONLY;
    sys_mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        fs_flags,
        Some("mode=755"),
    )
    .map_err(|e| mount_err(m, format!("mounting the cgroup tmpfs: {e}")))?;
    // The fresh tmpfs is ours: the hierarchies go in relative to its root.
    let tmp = Root::from_fd(at.open(m)?);
    let sub_at = |name: &str| At {
        root: &tmp,
        path: PathBuf::from(name),
        shown: at.shown.join(name),
    };
    for h in mountinfo::v1_hierarchies(&mounts) {
        let sub = sub_at(&h.name);
        tmp.mkdir_all(&sub.path)
            .map_err(|e| mount_err(m, format!("creating {}: {e}", sub.shown.display())))?;
        let own = mountinfo::own_cgroup_dir(&proc_cgroup, &h.host_path, &h.root, Some(&h.options));
        let host = HostHierarchy {
            mount_point: h.host_path.clone(),
            own,
        };
        mount_cgroup_fs(m, &host, &sub, "cgroup", flags, Some(&h.options), ctx)?;
        if h.name.contains(',') {
            for part in h.name.split(',') {
                if !tmp.exists(Path::new(part)) {
                    tmp.symlink(Path::new(&h.name), Path::new(part))
                        .map_err(|e| mount_err(m, format!("linking {part}: {e}")))?;
                }
            }
        }
    }
    if mode == CgroupMode::Hybrid {
        let sub = sub_at("unified");
        tmp.mkdir_all(&sub.path)
            .map_err(|e| mount_err(m, format!("creating {}: {e}", sub.shown.display())))?;
        let host = unified("/sys/fs/cgroup/unified");
        mount_cgroup_fs(m, &host, &sub, "cgroup2", flags, None, ctx)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        sys_mount(
            None,
            &fd_path(&at.open(m)?),
            None,
            flags | MsFlags::MS_REMOUNT,
            Some("mode=755"),
        )
        .map_err(|e| mount_err(m, format!("making the cgroup tmpfs read-only: {e}")))?;
    }
    Ok(())
}

/// Mount one cgroup hierarchy at `at`, showing the container's own cgroup as its root. In a
/// cgroup namespace a fresh mount does that; without one a fresh mount would show the whole
/// host hierarchy, so the container's own directory is bound instead, as runc does on v1
/// (and where the kernel refuses the fresh mount, what can be named is bound).
fn mount_cgroup_fs(
    m: &PlannedMount,
    host: &HostHierarchy,
    at: &At,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
    ctx: &MountContext,
) -> Result<()> {
    let shown = at.shown.display();
    let dest = at.open(m)?;
    let target = fd_path(&dest);
    let (source, refused) = if ctx.cgroup_ns {
        match sys_mount(Some(Path::new(fstype)), &target, Some(fstype), flags, data) {
            Ok(()) => return Ok(()),
            Err(e) if e == nix::errno::Errno::EPERM || e == nix::errno::Errno::EBUSY => {
                (host.own.as_deref().unwrap_or(&host.mount_point), Some(e))
            }
            Err(e) => return Err(mount_err(m, format!("mounting {fstype} at {shown}: {e}"))),
        }
    } else {
        let own = host.own.as_deref().ok_or_else(|| {
            mount_err(
                m,
                format!(
                    "the container's cgroup is not below the root of the host's {} mount",
                    host.mount_point.display()
                ),
            )
        })?;
        (own, None)
    };
    sys_mount(
        Some(source),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e2| {
        let first = refused
            .map(|e| format!("mounting {fstype} at {shown} failed ({e}) and "))
            .unwrap_or_default();
        mount_err(
            m,
            format!("{first}binding {} at {shown}: {e2}", source.display()),
        )
    })?;
    let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
    if !extra.is_empty() {
        remount_bind(&fd_path(&at.open(m)?), extra)
            .map_err(|e| mount_err(m, format!("remounting {shown} with {extra:?}: {e}")))?;
    }
    Ok(())
}
