//! A rootfs is hostile: no symlink in it, however long the chain, absolute or through "..",
//! may make isobox create or mount anything on the host. Paths used as mount destinations,
//! linux.devices paths and masked paths resolve inside the rootfs or fail, naming the field.

mod support;

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use support::{stderr, Isobox, TestBundle};

/// A host directory outside the rootfs, standing for /tmp/x: `dir/x` exists and is empty.
/// Not under /tmp, which the test config covers with a tmpfs, so what lands inside the
/// rootfs instead can be seen from the host.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::Builder::new()
            .prefix("isobox-escape-")
            .tempdir_in("/var/tmp")
            .unwrap();
        fs::create_dir(dir.path().join("x")).unwrap();
        Host { dir }
    }

    fn x(&self) -> PathBuf {
        self.dir.path().join("x")
    }

    /// Where the host path `x` lands when a link to it is resolved inside `rootfs`.
    fn inside(&self, rootfs: &Path) -> PathBuf {
        rootfs.join(self.x().strip_prefix("/").unwrap())
    }

    /// Nothing was created here: the directory holds only the empty `x`.
    fn assert_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x"], "something was created on the host");
        let inside: Vec<_> = fs::read_dir(self.x()).unwrap().collect();
        assert!(inside.is_empty(), "created on the host: {inside:?}");
    }
}

/// `rootfs/first -> /first1 -> /first2 -> … -> target` ("/" in `first` becomes "_" in the
/// others): `count` links in all.
fn chain(rootfs: &Path, first: &str, count: usize, target: &Path) {
    let tag = first.replace('/', "_");
    for i in 0..count {
        let link = if i == 0 {
            rootfs.join(first)
        } else {
            rootfs.join(format!("{tag}{i}"))
        };
        let to = if i + 1 == count {
            target.to_path_buf()
        } else {
            PathBuf::from(format!("/{tag}{}", i + 1))
        };
        symlink(to, link).unwrap();
    }
}

/// `isobox run` must fail with one line containing `needle`, leaving nothing behind.
fn expect_failure(ib: &Isobox, b: &TestBundle, id: &str, needle: &str) {
    let out = ib.run_bundle(b, id);
    let err = stderr(&out);
    assert!(!out.status.success(), "{id}: succeeded");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{id}: not one line: {err}"
    );
    assert!(err.contains(needle), "{id}: {err:?} lacks {needle:?}");
    ib.assert_nothing_left(id, Some(b.path()));
}

fn expect_success(ib: &Isobox, b: &TestBundle, id: &str) {
    let out = ib.run_bundle(b, id);
    assert!(out.status.success(), "{id}: {}", stderr(&out));
    ib.assert_nothing_left(id, Some(b.path()));
}

fn add_mount(b: &mut TestBundle, m: serde_json::Value) {
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(m));
}

/// A bundle whose /dev is the rootfs's own (no tmpfs over it), so links there are used.
fn with_rootfs_dev(script: &str) -> TestBundle {
    let mut b = TestBundle::sh(script);
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
        // Masking binds /dev/null, which such a /dev lacks.
        c["linux"]["maskedPaths"] = json!([]);
    });
    b
}

const TOO_MANY: &str = "too many levels of symbolic links inside the rootfs";

#[test]
fn tmpfs_destination_through_more_than_40_links_fails() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh("true");
    chain(&b.rootfs(), "l", 41, &host.x());
    add_mount(
        &mut b,
        json!({"destination": "/l/sub", "type": "tmpfs", "source": "tmpfs"}),
    );
    expect_failure(
        &Isobox::new(),
        &b,
        "esc-tmpfs41",
        &format!("mounts[5].destination: /l/sub: {TOO_MANY}"),
    );
    host.assert_untouched();
}

#[test]
fn tmpfs_destination_through_fewer_links_lands_inside() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh("grep -q \" $D \" /proc/self/mountinfo && test -d /l/sub");
    chain(&b.rootfs(), "l", 39, &host.x());
    let d = host.x().join("sub");
    add_mount(
        &mut b,
        json!({"destination": "/l/sub", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.edit(|c| {
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("D={}", d.display())))
    });
    expect_success(&Isobox::new(), &b, "esc-tmpfs39");
    assert!(host.inside(&b.rootfs()).join("sub").is_dir());
    host.assert_untouched();
}

#[test]
fn bind_destination_through_more_than_40_links_fails() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh("true");
    fs::create_dir(b.path().join("src")).unwrap();
    fs::write(b.path().join("src/marker"), "m").unwrap();
    chain(&b.rootfs(), "l", 41, &host.x());
    let src = b.path().join("src");
    add_mount(
        &mut b,
        json!({"destination": "/l/sub", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
    );
    expect_failure(
        &Isobox::new(),
        &b,
        "esc-bind41",
        &format!("mounts[5].destination: /l/sub: {TOO_MANY}"),
    );
    host.assert_untouched();
}

#[test]
fn bind_destinations_through_fewer_links_land_inside() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh(
        "test \"$(cat /l/sub/marker)\" = m && test \"$(cat /l/file)\" = f && ! touch /l/sub/w",
    );
    fs::create_dir(b.path().join("src")).unwrap();
    fs::write(b.path().join("src/marker"), "m").unwrap();
    fs::write(b.path().join("file"), "f").unwrap();
    chain(&b.rootfs(), "l", 39, &host.x());
    let (src, file) = (b.path().join("src"), b.path().join("file"));
    add_mount(
        &mut b,
        json!({"destination": "/l/sub", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/l/file", "type": "bind", "source": file, "options": ["bind"]}),
    );
    expect_success(&Isobox::new(), &b, "esc-bind39");
    let inside = host.inside(&b.rootfs());
    assert!(inside.join("sub").is_dir() && inside.join("file").is_file());
    host.assert_untouched();
}

#[test]
fn device_under_more_than_40_links_fails() {
    require_root!();
    let host = Host::new();
    let mut b = with_rootfs_dev("true");
    chain(&b.rootfs(), "dev/xd", 41, &host.x());
    b.edit(|c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/xd/mem", "type": "c", "major": 1, "minor": 1, "fileMode": 0o666}])
    });
    expect_failure(
        &Isobox::new(),
        &b,
        "esc-dev41",
        &format!("linux.devices[0].path: /dev/xd/mem: {TOO_MANY}"),
    );
    host.assert_untouched();
}

#[test]
fn device_path_that_is_a_link_is_replaced_inside() {
    require_root!();
    let host = Host::new();
    let mut b = with_rootfs_dev("test -c /dev/xmem && test -c /dev/xd/mem");
    // /dev/xmem -> a chain (long or short, it is not followed: the node replaces it).
    chain(&b.rootfs(), "dev/xmem", 41, &host.x());
    chain(&b.rootfs(), "dev/xd", 39, &host.x());
    b.edit(|c| {
        c["linux"]["devices"] = json!([
            {"path": "/dev/xmem", "type": "c", "major": 1, "minor": 1, "fileMode": 0o666},
            {"path": "/dev/xd/mem", "type": "c", "major": 1, "minor": 1, "fileMode": 0o666}
        ])
    });
    expect_success(&Isobox::new(), &b, "esc-devlink");
    for node in [
        b.rootfs().join("dev/xmem"),
        host.inside(&b.rootfs()).join("mem"),
    ] {
        let m = fs::symlink_metadata(&node).unwrap();
        assert!(m.file_type().is_char_device(), "{}", node.display());
        assert_eq!(m.rdev(), libc::makedev(1, 1));
        assert_eq!(m.permissions().mode() & 0o7777, 0o666);
    }
    host.assert_untouched();
}

#[test]
fn device_path_with_dotdot_is_refused() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh("true");
    chain(&b.rootfs(), "l", 3, &host.x());
    b.edit(|c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/../l/mem", "type": "c", "major": 1, "minor": 1, "fileMode": 0o666}])
    });
    expect_failure(
        &Isobox::new(),
        &b,
        "esc-devdotdot",
        "linux.devices[0].path: /dev/../l/mem must not contain \"..\"",
    );
    host.assert_untouched();
}

#[test]
fn masked_path_through_more_than_40_links_fails() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh("true");
    chain(&b.rootfs(), "l", 41, &host.x());
    b.edit(|c| {
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/l"))
    });
    expect_failure(
        &Isobox::new(),
        &b,
        "esc-mask41",
        &format!("linux.maskedPaths[3]: /l: {TOO_MANY}"),
    );
    host.assert_untouched();
}

#[test]
fn masked_path_through_fewer_links_masks_inside() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh("test -d /l && ! test -e /l/secret");
    chain(&b.rootfs(), "l", 39, &host.x());
    let inside = host.inside(&b.rootfs());
    fs::create_dir_all(&inside).unwrap();
    fs::write(inside.join("secret"), "s").unwrap();
    b.edit(|c| {
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/l"))
    });
    expect_success(&Isobox::new(), &b, "esc-mask39");
    host.assert_untouched();
}

#[test]
fn masked_path_through_a_proc_magic_link_fails() {
    require_root!();
    let mut b = TestBundle::sh("true");
    b.edit(|c| {
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/proc/self/root/etc"))
    });
    expect_failure(
        &Isobox::new(),
        &b,
        "esc-maskmagic",
        "linux.maskedPaths[3]: /proc/self/root/etc: goes through a /proc magic link",
    );
}

#[test]
fn readonly_path_through_a_proc_magic_link_fails() {
    require_root!();
    let mut b = TestBundle::sh("true");
    b.edit(|c| {
        c["linux"]["readonlyPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/proc/1/cwd"))
    });
    expect_failure(
        &Isobox::new(),
        &b,
        "esc-romagic",
        "linux.readonlyPaths[2]: /proc/1/cwd: goes through a /proc magic link",
    );
}

#[test]
fn mount_destination_through_a_proc_magic_link_fails() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh("true");
    // Before pivot_root, /proc/self/root of the container's init is the host's root.
    let dest = Path::new("/proc/self/root").join(host.x().strip_prefix("/").unwrap());
    add_mount(
        &mut b,
        json!({"destination": dest.join("m"), "type": "tmpfs", "source": "tmpfs"}),
    );
    expect_failure(
        &Isobox::new(),
        &b,
        "esc-mntmagic",
        "mounts[5].destination: /proc/self/root/",
    );
    host.assert_untouched();
}

#[test]
fn links_pointing_outside_and_dotdot_destinations_stay_inside() {
    require_root!();
    let host = Host::new();
    let mut b = TestBundle::sh("true");
    let x = host.x();
    let up = Path::new("../../../../../../../..").join(x.strip_prefix("/").unwrap());
    symlink(&up, b.rootfs().join("rel")).unwrap();
    symlink(&x, b.rootfs().join("abs")).unwrap();
    let dotdot = Path::new("/../../../..").join(x.strip_prefix("/").unwrap());
    for dest in [
        Path::new("/rel/a").to_path_buf(),
        Path::new("/abs/b").to_path_buf(),
        dotdot.join("c"),
        Path::new("/etc/../../d").to_path_buf(),
    ] {
        add_mount(
            &mut b,
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}),
        );
    }
    expect_success(&Isobox::new(), &b, "esc-outside");
    let inside = host.inside(&b.rootfs());
    for d in ["a", "b", "c"] {
        assert!(inside.join(d).is_dir(), "{d} not inside the rootfs");
    }
    assert!(b.rootfs().join("d").is_dir());
    host.assert_untouched();
}

#[test]
fn cgroup_bind_and_propagation_mounts_act_on_what_was_mounted() {
    require_root!();
    // Every step after a mount (remount read-only, the cgroup hierarchies inside their
    // tmpfs, propagation) must reach the new mount, not the directory under it.
    let script = "{ test -e /sys/fs/cgroup/cgroup.controllers || test -d /sys/fs/cgroup/memory; } \
        && ! mkdir /sys/fs/cgroup/x 2>/dev/null \
        && grep -q ' /shared ' /proc/self/mountinfo \
        && test \"$(cat /ro/marker)\" = m && ! touch /ro/w 2>/dev/null && touch /tmp/w";
    for (id, cgroupns) in [("esc-cg-ns", true), ("esc-cg-host", false)] {
        let mut b = TestBundle::sh(script);
        fs::create_dir(b.path().join("src")).unwrap();
        fs::write(b.path().join("src/marker"), "m").unwrap();
        let src = b.path().join("src");
        add_mount(
            &mut b,
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                   "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        );
        add_mount(
            &mut b,
            json!({"destination": "/shared", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]}),
        );
        add_mount(
            &mut b,
            json!({"destination": "/ro", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
        );
        if cgroupns {
            b.edit(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "cgroup"}))
            });
        }
        expect_success(&Isobox::new(), &b, id);
    }
}
