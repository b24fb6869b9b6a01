//! The ar/tar/deb reader on packages built here with dpkg-deb, in each compression.

use std::path::{Path, PathBuf};
use std::process::Command;

use isobox_microvm::image::{ar, deb};
use isobox_microvm::MicrovmError;

const KERNEL_BYTES: usize = 200_000;

fn kernel_bytes() -> Vec<u8> {
    (0..KERNEL_BYTES)
        .map(|i| (i % 253) as u8 ^ (i >> 9) as u8)
        .collect()
}

/// Builds a package with a control file, docs and boot/vmlinuz-<release>; None when dpkg-deb
/// is not installed.
fn build_deb(dir: &Path, compression: &str) -> Option<PathBuf> {
    let root = dir.join(format!("pkg-{compression}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/doc/linux-image-9.9.9-test")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: linux-image-9.9.9-test\nVersion: 9.9.9-1\nArchitecture: amd64\n\
         Maintainer: Test <test@example.invalid>\nDepends: kmod,\n linux-base (>= 4.3~)\n\
         Description: a test kernel\n",
    )
    .unwrap();
    std::fs::write(
        root.join("usr/share/doc/linux-image-9.9.9-test/README"),
        "docs\n",
    )
    .unwrap();
    std::fs::write(
        root.join("boot/System.map-9.9.9-test"),
        "ffffffff81000000 T _text\n",
    )
    .unwrap();
    std::fs::write(root.join("boot/vmlinuz-9.9.9-test"), kernel_bytes()).unwrap();
    let out = dir.join(format!("test-{compression}.deb"));
    let status = match Command::new("dpkg-deb")
        .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
        .arg(&root)
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
    {
        Ok(s) => s,
        Err(e) => {
            isobox_common::skip::skip(&format!("dpkg-deb cannot run: {e}"));
            return None;
        }
    };
    assert!(status.success(), "dpkg-deb -Z{compression} failed");
    Some(out)
}

#[test]
fn reads_control_and_kernel_from_packages_in_every_compression() {
    let d = tempfile::tempdir().unwrap();
    for z in ["xz", "gzip", "zstd", "none"] {
        let Some(pkg) = build_deb(d.path(), z) else {
            return;
        };
        let members = ar::list(&pkg).unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names[0], "debian-binary", "{z}: {names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("data.tar")),
            "{z}: {names:?}"
        );

        let control = deb::read_control(&pkg).unwrap();
        assert_eq!(
            deb::control_field(&control, "Package").as_deref(),
            Some("linux-image-9.9.9-test")
        );
        let deps = deb::parse_depends(&deb::control_field(&control, "Depends").unwrap());
        let dep_names: Vec<&str> = deps.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(dep_names, ["kmod", "linux-base"]);

        let mut out = Vec::new();
        let (path, n) = deb::extract_first(&pkg, deb::is_boot_vmlinuz, &mut out)
            .unwrap()
            .unwrap_or_else(|| panic!("{z}: no boot/vmlinuz-* found"));
        assert_eq!(path, Path::new("boot/vmlinuz-9.9.9-test"));
        assert_eq!(n as usize, KERNEL_BYTES);
        assert!(out == kernel_bytes(), "{z}: kernel bytes differ");

        let mut none = Vec::new();
        let missing = deb::extract_first(&pkg, |p| p.starts_with("nowhere"), &mut none).unwrap();
        assert!(missing.is_none() && none.is_empty());
    }
}

#[test]
fn damaged_packages_are_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let Some(pkg) = build_deb(d.path(), "xz") else {
        return;
    };
    let bytes = std::fs::read(&pkg).unwrap();

    let cut = d.path().join("cut.deb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 100]).unwrap();
    let e = deb::extract_first(&cut, deb::is_boot_vmlinuz, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&e, MicrovmError::Unpack { path, .. } if path == &cut),
        "{e}"
    );
    assert!(e.to_string().contains("past the end"), "{e}");

    let text = d.path().join("text.deb");
    std::fs::write(&text, "this is not a package").unwrap();
    let e = deb::read_control(&text).unwrap_err();
    assert!(e.to_string().contains("not an ar archive"), "{e}");

    // An ar archive that is not a package.
    let plain = d.path().join("plain.a");
    std::fs::write(d.path().join("member.txt"), "x").unwrap();
    let st = Command::new("ar")
        .arg("rc")
        .arg(&plain)
        .arg(d.path().join("member.txt"))
        .status();
    if st.is_ok_and(|s| s.success()) {
        let e = deb::read_control(&plain).unwrap_err();
        assert!(e.to_string().contains("not a Debian package"), "{e}");
    }
}
