use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

/// A root with a chain `l -> l1 -> … -> target` of `count` links.
fn chain(root: &Path, from: &str, count: usize, target: &Path) {
    let mut prev = from.to_string();
    for i in 1..count {
        let next = format!("{from}{i}");
        symlink(&next, root.join(&prev)).unwrap();
        prev = next;
    }
    symlink(target, root.join(&prev)).unwrap();
}

fn ino(fd: &OwnedFd) -> u64 {
    fstat(fd).unwrap().st_ino
}

fn empty(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    /// A host directory outside the root, standing for /tmp/x.
    host: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    let host = tmp.path().join("host");
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::create_dir(&host).unwrap();
    Dirs {
        _tmp: tmp,
        root,
        host,
    }
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let d = dirs();
    symlink("/usr/lib", d.root.join("lib")).unwrap();
    symlink("../../../../usr", d.root.join("up")).unwrap();
    let r = Root::open(&d.root).unwrap();
    let lib = fs::metadata(d.root.join("usr/lib")).unwrap().ino();
    assert_eq!(ino(&r.resolve(Path::new("/lib")).unwrap()), lib);
    assert_eq!(ino(&r.resolve(Path::new("/up/lib")).unwrap()), lib);
    assert_eq!(ino(&r.resolve(Path::new("/../../usr/lib")).unwrap()), lib);
    assert_eq!(
        ino(&r.resolve(Path::new("/")).unwrap()),
        fs::metadata(&d.root).unwrap().ino()
    );
    let e = r.resolve(Path::new("/nope/x")).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(e.to_string(), "/nope/x: No such file or directory");
}

#[test]
fn more_than_40_links_is_an_error_and_creates_nothing() {
    let d = dirs();
    chain(&d.root, "l", 41, &d.host);
    let r = Root::open(&d.root).unwrap();
    let want = "/l/sub: too many levels of symbolic links inside the rootfs";
    assert_eq!(
        r.mkdir_all(Path::new("/l/sub")).unwrap_err().to_string(),
        want
    );
    assert_eq!(
        r.create_file(Path::new("/l/sub")).unwrap_err().to_string(),
        want
    );
    let e = r
        .mknod(Path::new("/l/sub"), SFlag::S_IFIFO, 0o666, 0, 0, 0)
        .unwrap_err();
    assert_eq!(e.errno, Errno::ELOOP);
    assert_eq!(r.resolve(Path::new("/l")).unwrap_err().errno, Errno::ELOOP);
    assert!(empty(&d.host));
    // 40 links are still fine, and they lead inside the root.
    let d = dirs();
    chain(&d.root, "l", 40, &d.host);
    let r = Root::open(&d.root).unwrap();
    r.mkdir_all(Path::new("/l/sub")).unwrap();
    assert!(empty(&d.host));
    let rel = d.host.strip_prefix("/").unwrap();
    assert!(d.root.join(rel).join("sub").is_dir());
}

#[test]
fn a_dangling_chain_pointing_outside_creates_inside() {
    let d = dirs();
    // The target does not exist in the root: what it names is created there.
    chain(&d.root, "l", 39, &d.host.join("x"));
    symlink("../../../../../../../../host-rel", d.root.join("up")).unwrap();
    let r = Root::open(&d.root).unwrap();
    let fd = r.mkdir_all(Path::new("/l/a/b")).unwrap();
    let inside = d.root.join(d.host.strip_prefix("/").unwrap()).join("x/a/b");
    assert_eq!(ino(&fd), fs::metadata(&inside).unwrap().ino());
    r.create_file(Path::new("/up/file")).unwrap();
    assert!(d.root.join("host-rel/file").is_file());
    r.create_file(Path::new("/../../etc/f")).unwrap();
    assert!(d.root.join("etc/f").is_file());
    assert!(empty(&d.host));
}

#[test]
fn a_link_loop_ends() {
    let d = dirs();
    symlink("/loop", d.root.join("loop")).unwrap();
    symlink("b", d.root.join("a")).unwrap();
    symlink("a", d.root.join("b")).unwrap();
    let r = Root::open(&d.root).unwrap();
    for p in ["/loop/x", "/a/x", "/a"] {
        let e = r.mkdir_all(Path::new(p)).unwrap_err();
        assert_eq!(e.errno, Errno::ELOOP, "{p}: {e}");
    }
}

#[test]
fn magic_links_are_refused() {
    // /proc/self/root is the host's "/": resolving through it would leave any root.
    let r = Root::open(Path::new("/")).unwrap();
    let e = r.resolve(Path::new("/proc/self/root/etc")).unwrap_err();
    assert_eq!(e.errno, Errno::EXDEV, "{e}");
    assert!(e.to_string().contains("magic link"), "{e}");
    assert!(r.resolve(Path::new("/proc/self/status")).is_ok());
}

#[test]
fn mknod_replaces_a_symlink_and_sets_the_exact_mode() {
    let d = dirs();
    let target = d.host.join("node");
    symlink(&target, d.root.join("dev/fifo")).unwrap();
    let r = Root::open(&d.root).unwrap();
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    r.mknod(
        Path::new("/dev/fifo"),
        SFlag::S_IFIFO,
        0o666,
        0,
        uid.as_raw(),
        gid.as_raw(),
    )
    .unwrap();
    let m = fs::symlink_metadata(d.root.join("dev/fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.permissions().mode() & 0o7777, 0o666);
    assert!(!target.exists() && empty(&d.host));
}

#[test]
fn files_links_and_unlink() {
    let d = dirs();
    let r = Root::open(&d.root).unwrap();
    r.create_file(Path::new("/etc/resolv.conf")).unwrap();
    assert!(d.root.join("etc/resolv.conf").is_file());
    // An existing path is opened as it is.
    assert!(is_dir(&r.create_file(Path::new("/usr")).unwrap()));
    r.symlink(Path::new("/proc/self/fd"), Path::new("/dev/fd"))
        .unwrap();
    assert_eq!(
        fs::read_link(d.root.join("dev/fd")).unwrap(),
        Path::new("/proc/self/fd")
    );
    assert!(r.exists(Path::new("/dev/fd")));
    r.unlink(Path::new("/dev/fd")).unwrap();
    r.unlink(Path::new("/dev/fd")).unwrap();
    r.unlink(Path::new("/no/such")).unwrap();
    assert!(!r.exists(Path::new("/dev/fd")));
    symlink(d.host.join("f"), d.root.join("dev/bindme")).unwrap();
    r.replace_with_file(Path::new("/dev/bindme")).unwrap();
    assert!(d.root.join("dev/bindme").is_file() && empty(&d.host));
    assert_eq!(
        r.parent_of(Path::new("/")).unwrap_err().errno,
        Errno::EINVAL
    );
}
