//! The workload's root. Shared from the host by virtio-fs, the agent loads the kernel's
//! virtio-fs modules from its initramfs, then, on the host's Mount request, mounts the
//! bundle's rootfs and its volumes by tag, moves the early file systems onto it, and makes it
//! the root of the guest; in both cases it masks paths and makes paths read-only there.

use std::fs;
use std::path::{Path, PathBuf};

use isobox_common::protect::remount_bind;
use isobox_common::protocol::{FsMount, MountRequest};
use isobox_common::rootpath::{fd_path, Root};
use nix::mount::{mount, MsFlags};

use super::init::log;

/// The modules, loaded in file-name order (the host numbers them).
const MODULES_DIR: &str = "/isobox/modules";
/// Where the shared root is assembled before it becomes `/`.
const NEW_ROOT: &str = "/isobox/root";
/// Where each volume share is mounted before its binds (outside the workload's root).
const SHARES_DIR: &str = "/isobox/shares";
/// The early file systems (see [`super::init::mount_early_filesystems`]) moved onto the new
/// root (/dev with its submounts). /proc goes last: every mount target is reached through
/// /proc/self/fd.
const MOVED: [&str; 5] = ["/sys", "/dev", "/tmp", "/run", "/proc"];

/// Whether this initramfs carries modules, i.e. the host shares the root.
pub fn has_modules() -> bool {
    Path::new(MODULES_DIR).is_dir()
}

/// Load every module of the initramfs, then switch module loading off for good: the workload
/// cannot load any, whatever its capabilities.
pub fn load_modules() -> Result<(), String> {
    let mut names: Vec<PathBuf> = fs::read_dir(MODULES_DIR)
        .map_err(|e| format!("listing {MODULES_DIR}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort_by_key(|p| {
        let n = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let (i, _) = n.split_once('-').unwrap_or(("", ""));
        i.parse::<u32>().unwrap_or(u32::MAX)
    });
    for m in &names {
        let f = fs::File::open(m).map_err(|e| format!("opening {}: {e}", m.display()))?;
        match nix::kmod::finit_module(&f, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("loading {}: {e}", m.display())),
        }
    }
    fs::write("/proc/sys/kernel/modules_disabled", "1")
        .map_err(|e| format!("disabling module loading: {e}"))
}

fn sys_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    what: &str,
) -> Result<(), String> {
    mount(source, target, fstype, flags, None::<&str>).map_err(|e| format!("{what}: {e}"))
}

/// The workload's /dev, as a container's: a tmpfs over the kernel's devtmpfs (which holds the
/// agent's line and every device of the VM) with only the default nodes and linux.devices,
/// a devpts instance of its own and the usual links (the bundle's /dev and /dev/pts mounts
/// when it has them, else runc's defaults); then the bundle's other kernel file systems.
fn workload_dev(req: &MountRequest) -> Result<(), String> {
    use isobox_common::devnodes;
    let open = || Root::open(Path::new("/")).map_err(|e| format!("opening /: {e}"));
    let bundle_fs = |fstype: &str, at: &str| {
        req.filesystems
            .iter()
            .find(|m| m.fstype == fstype && m.destination.trim_end_matches('/') == at)
    };
    let dev = bundle_fs("tmpfs", "/dev").cloned().unwrap_or(FsMount {
        fstype: "tmpfs".into(),
        destination: "/dev".into(),
        flags: (MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME).bits(),
        data: Some("mode=755,size=65536k".into()),
    });
    mount_fs(&open()?, &dev)?;
    // Reopened: the old fd names the devtmpfs underneath.
    let root = open()?;
    devnodes::create(&root, &devnodes::defaults(), false).map_err(|e| e.to_string())?;
    devnodes::create(&root, &req.devices, false).map_err(|e| e.to_string())?;
    let mut pts = bundle_fs("devpts", "/dev/pts").cloned().unwrap_or(FsMount {
        fstype: "devpts".into(),
        destination: "/dev/pts".into(),
        flags: (MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC).bits(),
        data: Some("ptmxmode=0666,mode=0620".into()),
    });
    // Always an instance of its own: the initramfs's holds the agent's terminals.
    pts.data = Some(match pts.data.as_deref() {
        Some(d) if d.split(',').any(|o| o == "newinstance") => d.to_string(),
        Some(d) if !d.is_empty() => format!("newinstance,{d}"),
        _ => "newinstance".into(),
    });
    mount_fs(&root, &pts)?;
    devnodes::links(&open()?).map_err(|e| e.to_string())?;
    for m in &req.filesystems {
        let at = m.destination.trim_end_matches('/');
        if (m.fstype == "tmpfs" && at == "/dev") || (m.fstype == "devpts" && at == "/dev/pts") {
            continue;
        }
        // The agent's own /proc and /sys take the bundle's flags in place: one mount there,
        // as in a container, not a second one on top.
        if m.data.is_none()
            && ((m.fstype == "proc" && at == "/proc") || (m.fstype == "sysfs" && at == "/sys"))
        {
            remount_bind(Path::new(at), MsFlags::from_bits_truncate(m.flags))
                .map_err(|e| format!("applying the options of {} on {at}: {e}", m.fstype))?;
            continue;
        }
        mount_fs(&open()?, m)?;
    }
    Ok(())
}

/// Mount a fresh instance of `m`'s file system at its destination in `root`. Read-only is
/// made a flag of the mount, by a remount, never of the superblock: proc, sysfs and cgroup2
/// have one superblock each in the guest, which the agent itself writes through.
fn mount_fs(root: &Root, m: &FsMount) -> Result<(), String> {
    let at = root
        .mkdir_all(Path::new(&m.destination))
        .map_err(|e| format!("creating {}: {e}", m.destination))?;
    let flags = MsFlags::from_bits_truncate(m.flags);
    let what =
        |e: &dyn std::fmt::Display| format!("mounting {} on {}: {e}", m.fstype, m.destination);
    mount(
        Some(m.fstype.as_str()),
        fd_path(&at).as_path(),
        Some(m.fstype.as_str()),
        flags - MsFlags::MS_RDONLY,
        m.data.as_deref(),
    )
    .map_err(|e| what(&e))?;
    if flags.contains(MsFlags::MS_RDONLY) {
        // The new mount sits on the target: reach it through the root again.
        let on_top = root
            .resolve(Path::new(&m.destination))
            .map_err(|e| what(&e))?;
        remount_bind(fd_path(&on_top).as_path(), flags).map_err(|e| what(&e))?;
    }
    Ok(())
}

/// Move the mount at `dir` to the same place in `root`.
fn move_onto(root: &Root, dir: &str) -> Result<(), String> {
    let target = root
        .mkdir_all(Path::new(dir))
        .map_err(|e| format!("creating {dir} in the shared root: {e}"))?;
    sys_mount(
        Some(Path::new(dir)),
        fd_path(&target).as_path(),
        None,
        MsFlags::MS_MOVE,
        &format!("moving {dir} onto the shared root"),
    )
}

/// Put the workload's root in place: the shared one when there is a root tag, else the
/// initramfs; then the sysctl values, and its masked and read-only paths.
pub fn mount_root(req: &MountRequest) -> Result<(), String> {
    if !req.root_tag.is_empty() {
        mount_shared(req)?;
    }
    workload_dev(req)?;
    isobox_common::protect::sysctl(&req.sysctl).map_err(|e| e.to_string())?;
    isobox_common::protect::masked_paths(&req.masked_paths).map_err(|e| e.to_string())?;
    isobox_common::protect::readonly_paths(&req.readonly_paths).map_err(|e| e.to_string())?;
    // Last, as in a container: the mount points above may have been made in the root.
    if req.root_readonly {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY)
            .map_err(|e| format!("making the root read-only: {e}"))?;
    }
    Ok(())
}

/// Assemble the workload's root from the shares and switch to it.
fn mount_shared(req: &MountRequest) -> Result<(), String> {
    fs::create_dir_all(NEW_ROOT).map_err(|e| format!("creating {NEW_ROOT}: {e}"))?;
    let new_root = Path::new(NEW_ROOT);
    sys_mount(
        Some(Path::new(&req.root_tag)),
        new_root,
        Some("virtiofs"),
        MsFlags::empty(),
        &format!("mounting the shared root (virtio-fs tag {})", req.root_tag),
    )?;
    let root = Root::open(new_root).map_err(|e| format!("opening the shared root: {e}"))?;
    // The early file systems first, so that volumes under /run or /tmp land on them.
    for dir in &MOVED[..MOVED.len() - 1] {
        move_onto(&root, dir)?;
    }
    for v in &req.volumes {
        let share = Path::new(SHARES_DIR).join(&v.tag);
        if !share.is_dir() {
            fs::create_dir_all(&share).map_err(|e| format!("creating {}: {e}", share.display()))?;
            sys_mount(
                Some(Path::new(&v.tag)),
                &share,
                Some("virtiofs"),
                MsFlags::empty(),
                &format!("mounting virtio-fs tag {}", v.tag),
            )?;
        }
        let source = if v.name.is_empty() {
            share
        } else {
            share.join(&v.name)
        };
        let dest = Path::new(&v.destination);
        let what = format!("mount at {}", v.destination);
        let target = if source.is_dir() {
            root.mkdir_all(dest)
        } else {
            root.create_file(dest)
        }
        .map_err(|e| format!("{what}: {e}"))?;
        let target = fd_path(&target);
        sys_mount(
            Some(&source),
            target.as_path(),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            &what,
        )?;
        let flags = MsFlags::from_bits_truncate(v.flags);
        if !flags.is_empty() {
            // The bind now sits on the target: reach it through the root again.
            let on_top = root.resolve(dest).map_err(|e| format!("{what}: {e}"))?;
            remount_bind(fd_path(&on_top).as_path(), flags)
                .map_err(|e| format!("{what}: applying its options: {e}"))?;
        }
    }
    move_onto(&root, MOVED[MOVED.len() - 1])?;
    drop(root);
    // switch_root: the shared root replaces the initramfs as `/`.
    std::env::set_current_dir(new_root).map_err(|e| format!("entering {NEW_ROOT}: {e}"))?;
    sys_mount(
        Some(Path::new(".")),
        Path::new("/"),
        None,
        MsFlags::MS_MOVE,
        "moving the shared root onto /",
    )?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot into the shared root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    log("the shared root is mounted");
    Ok(())
}
