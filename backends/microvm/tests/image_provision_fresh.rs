//! Provisioning on a machine without package lists: apt-get download fails, isobox runs
//! apt-get update and retries. The empty lists live in a temporary directory named through
//! APT_CONFIG, so the host's own lists are untouched.

use isobox_microvm::image::provision_kernel;

/// Downloads the package lists and ~27 MB. Run with
/// `cargo test -p isobox-microvm --test image_provision_fresh -- --ignored`.
#[test]
#[ignore = "runs apt-get update and downloads the Debian cloud kernel package"]
fn provisioning_updates_missing_package_lists_and_retries() {
    if !nix::unistd::geteuid().is_root() {
        isobox_common::skip::skip("apt-get update needs root");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let lists = d.path().join("lists");
    std::fs::create_dir_all(lists.join("partial")).unwrap();
    let conf = d.path().join("apt.conf");
    std::fs::write(
        &conf,
        format!("Dir::State::Lists \"{}\";\n", lists.display()),
    )
    .unwrap();
    // This test binary runs this one test, so the environment change reaches nothing else.
    std::env::set_var("APT_CONFIG", &conf);

    let data = d.path().join("data");
    let report = match provision_kernel(&data, true) {
        Ok(r) => r,
        Err(e) => {
            isobox_common::skip::skip(&format!("apt-get cannot reach a package mirror here: {e}"));
            return;
        }
    };
    assert!(
        std::fs::read_dir(&lists).unwrap().count() > 2,
        "apt-get update filled no lists"
    );
    assert!(report.vmlinux.is_file());
    assert!(report.vmlinux_bytes > 10 << 20);
}
