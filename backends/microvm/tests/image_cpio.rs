//! The cpio writer and the initramfs builder, checked against GNU cpio: listing, extraction,
//! names, modes, symlink targets and contents.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use isobox_microvm::image::cpio::{CpioWriter, Meta, S_IFCHR, S_IFIFO};
use isobox_microvm::image::{build_initramfs, build_initramfs_for_ram};
use isobox_microvm::MicrovmError;

fn cpio_available() -> bool {
    let ok = Command::new("cpio")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        isobox_common::skip::skip("GNU cpio is not installed");
    }
    ok
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `cpio -t` (or -tv) on an archive.
fn list(archive: &Path, verbose: bool) -> Vec<String> {
    let out = Command::new("cpio")
        .arg(if verbose { "-tv" } else { "-t" })
        .arg("--quiet")
        .stdin(std::fs::File::open(archive).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cpio -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `cpio -idv` into `dir`.
fn extract(archive: &Path, dir: &Path) {
    let out = Command::new("cpio")
        .args(["-idmv", "--quiet", "--no-absolute-filenames"])
        .current_dir(dir)
        .stdin(std::fs::File::open(archive).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cpio -idv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn writer_round_trips_through_gnu_cpio() {
    if !cpio_available() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let archive = d.path().join("a.cpio");
    let mut w = CpioWriter::new(std::fs::File::create(&archive).unwrap());
    w.dir(b"d", Meta::new(0o750)).unwrap();
    // Names of lengths 1..=4 and files of lengths 0..=5 exercise every padding case.
    for (name, data) in [
        (&b"d/a"[..], &b""[..]),
        (b"d/ab", b"1"),
        (b"d/abc", b"12"),
        (b"d/abcd", b"123"),
        (b"d/x", b"1234"),
        (b"d/yy", b"12345"),
    ] {
        w.file(name, Meta::new(0o640), data.len() as u64, &mut &data[..])
            .unwrap();
    }
    w.symlink(b"d/link", b"../target/of/link", Meta::default())
        .unwrap();
    w.node(b"d/fifo", Meta::new(S_IFIFO | 0o600)).unwrap();
    // A source shorter than announced is refused.
    let e = w
        .file(b"d/short", Meta::new(0o644), 10, &mut &b"abc"[..])
        .unwrap_err();
    assert!(e.to_string().contains("shrank"), "{e}");
    drop(w);

    // Rewrite without the failed entry and finish properly.
    let mut w = CpioWriter::new(std::fs::File::create(&archive).unwrap());
    w.dir(b"d", Meta::new(0o750)).unwrap();
    for (i, name) in ["d/a", "d/ab", "d/abc", "d/abcd", "d/x", "d/yy"]
        .iter()
        .enumerate()
    {
        let data = &b"12345"[..i];
        w.file(
            name.as_bytes(),
            Meta::new(0o640),
            data.len() as u64,
            &mut &data[..],
        )
        .unwrap();
    }
    w.symlink(b"d/link", b"../target/of/link", Meta::default())
        .unwrap();
    w.node(b"d/fifo", Meta::new(S_IFIFO | 0o600)).unwrap();
    assert_eq!(w.entries(), 9);
    let total = w.bytes_written();
    assert_eq!(total % 4, 0, "every entry ends 4-byte aligned");
    w.finish().unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"070701"));
    assert_eq!(
        &bytes[total as usize + 110..total as usize + 121],
        b"TRAILER!!!\0"
    );

    assert_eq!(
        list(&archive, false),
        ["d", "d/a", "d/ab", "d/abc", "d/abcd", "d/x", "d/yy", "d/link", "d/fifo"]
    );
    let verbose = list(&archive, true);
    assert!(verbose[0].starts_with("drwxr-x---"), "{verbose:?}");
    assert!(verbose[1].starts_with("-rw-r-----"), "{verbose:?}");
    assert!(
        verbose[7].starts_with("lrwxrwxrwx") && verbose[7].ends_with("d/link -> ../target/of/link"),
        "{verbose:?}"
    );
    assert!(verbose[8].starts_with("prw-------"), "{verbose:?}");

    let x = d.path().join("x");
    std::fs::create_dir(&x).unwrap();
    extract(&archive, &x);
    for (i, name) in ["a", "ab", "abc", "abcd", "x", "yy"].iter().enumerate() {
        assert_eq!(
            std::fs::read(x.join("d").join(name)).unwrap(),
            &b"12345"[..i],
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read_link(x.join("d/link")).unwrap(),
        Path::new("../target/of/link")
    );
    assert!(std::fs::symlink_metadata(x.join("d/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn writer_refuses_bad_names_and_types() {
    let mut w = CpioWriter::new(Vec::new());
    assert!(w.dir(b"", Meta::new(0o755)).is_err());
    assert!(w.dir(b"a\0b", Meta::new(0o755)).is_err());
    assert!(w.dir(&vec![b'a'; 5000], Meta::new(0o755)).is_err());
    assert!(w.node(b"f", Meta::new(0o100644)).is_err());
    assert!(w
        .file(b"big", Meta::new(0o644), 5 << 30, &mut std::io::empty())
        .is_err());
}

/// A rootfs with the kinds of entries a real image has.
fn make_rootfs(root: &Path) {
    let mk = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
    mk("usr/bin");
    mk("etc/empty.d");
    mk("proc"); // already there: must not be duplicated
    std::fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("etc/hostname"), b"guest\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/hostname"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let big: Vec<u8> = (0..1_000_003u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(root.join("usr/big.bin"), &big).unwrap();
    std::fs::hard_link(root.join("usr/big.bin"), root.join("usr/big-link.bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("etc/hostname.abs")).unwrap();
    std::os::unix::fs::symlink("missing/target", root.join("dangling")).unwrap();
    std::fs::write(root.join("init"), b"the image's own init, to be replaced").unwrap();
    nix::unistd::mkfifo(
        &root.join("etc/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let _ = std::os::unix::net::UnixListener::bind(root.join("etc/sock"));
}

#[test]
fn initramfs_holds_the_rootfs_and_the_agent_as_init() {
    if !cpio_available() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("rootfs");
    make_rootfs(&root);
    let agent = d.path().join("agent");
    std::fs::write(&agent, b"\x7fELF agent binary").unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = d.path().join("out/initramfs.cpio");
    std::fs::create_dir(d.path().join("out")).unwrap();

    let info = build_initramfs(&root, &agent, &out).unwrap();
    assert_eq!(info.path, out);
    assert_eq!(info.size_bytes, std::fs::metadata(&out).unwrap().len());
    let names = list(&out, false);
    assert_eq!(info.files as usize, names.len());
    for want in [
        "bin",
        "dangling",
        "etc",
        "etc/empty.d",
        "etc/fifo",
        "etc/hostname",
        "etc/hostname.abs",
        "proc",
        "usr",
        "usr/big-link.bin",
        "usr/big.bin",
        "usr/bin",
        "usr/bin/tool",
        "sys",
        "dev",
        "tmp",
        "run",
        "dev/console",
        "init",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert_eq!(
        names.iter().filter(|n| *n == "init").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "proc").count(),
        1,
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "etc/sock"),
        "sockets are skipped: {names:?}"
    );
    // Parents come before their children, as the kernel needs.
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(pos("usr") < pos("usr/bin") && pos("usr/bin") < pos("usr/bin/tool"));
    assert!(pos("dev") < pos("dev/console"));

    let verbose = list(&out, true);
    let line = |n: &str| {
        verbose
            .iter()
            .find(|l| l.ends_with(&format!(" {n}")) || l.contains(&format!(" {n} -> ")))
            .unwrap()
            .clone()
    };
    assert!(line("init").starts_with("-rwxr-xr-x"), "{}", line("init"));
    assert!(
        line("etc/hostname").starts_with("-rw-------"),
        "{}",
        line("etc/hostname")
    );
    assert!(line("tmp").starts_with("drwxrwxrwt"), "{}", line("tmp"));
    assert!(
        line("dev/console").starts_with("crw-------"),
        "{}",
        line("dev/console")
    );

    let x = d.path().join("x");
    std::fs::create_dir(&x).unwrap();
    extract(&out, &x);
    assert_eq!(
        std::fs::read(x.join("init")).unwrap(),
        b"\x7fELF agent binary"
    );
    assert_eq!(
        std::fs::metadata(x.join("init")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        std::fs::read(x.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        std::fs::metadata(x.join("usr/bin/tool")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read(x.join("usr/big.bin")).unwrap(),
        std::fs::read(root.join("usr/big.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read(x.join("usr/big-link.bin")).unwrap(),
        std::fs::read(root.join("usr/big.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(x.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        std::fs::read_link(x.join("etc/hostname.abs")).unwrap(),
        Path::new("/etc/hostname")
    );
    assert_eq!(
        std::fs::read_link(x.join("dangling")).unwrap(),
        Path::new("missing/target")
    );
    assert!(std::fs::symlink_metadata(x.join("etc/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    if is_root() {
        let c = std::fs::symlink_metadata(x.join("dev/console")).unwrap();
        assert!(c.file_type().is_char_device());
        assert_eq!(c.rdev(), libc::makedev(5, 1));
        assert_eq!(c.mode() & S_IFCHR, S_IFCHR);
    }
    // Only the archive is left in the output directory.
    let left: Vec<_> = std::fs::read_dir(d.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["initramfs.cpio"]);
}

#[test]
fn a_rootfs_too_big_for_the_ram_is_refused_and_nothing_is_left() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("blob"), vec![7u8; 3 << 20]).unwrap();
    let agent = d.path().join("agent");
    std::fs::write(&agent, b"agent").unwrap();
    let outdir = d.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("initramfs.cpio");

    // 66 MiB of RAM leaves room for a 1 MiB archive only.
    let e = build_initramfs_for_ram(&root, &agent, &out, 66).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, MicrovmError::Initramfs { path, .. } if path == &root),
        "{msg}"
    );
    assert!(msg.contains("66 MiB") && msg.contains("3.0 MiB"), "{msg}");
    assert_eq!(
        std::fs::read_dir(&outdir).unwrap().count(),
        0,
        "files left behind"
    );

    // With enough RAM the same rootfs builds.
    let info = build_initramfs_for_ram(&root, &agent, &out, 128).unwrap();
    assert!(info.size_bytes > 3 << 20);
}

#[test]
fn bad_inputs_name_the_culprit_and_leave_nothing() {
    let d = tempfile::tempdir().unwrap();
    let outdir = d.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("i.cpio");
    let root = d.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    let agent = d.path().join("agent");
    std::fs::write(&agent, b"agent").unwrap();

    let e = build_initramfs(&d.path().join("nope"), &agent, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    let e = build_initramfs(&root, &d.path().join("no-agent"), &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-agent"), "{e}");
    let e = build_initramfs(&root, &root, &out).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    let e = build_initramfs(&root, &agent, &d.path().join("no/such/dir/i.cpio"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("temporary file"), "{e}");
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 0);
}
