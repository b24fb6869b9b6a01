//! Every kind of bad input gets a one-line error naming the file, field or id and the reason,
//! a non-zero exit, and leaves nothing behind.

mod support;

use std::fs;
use std::path::Path;

use serde_json::json;
use support::{stderr, Isobox, TestBundle};

/// Run `isobox run --bundle B ID`, expect failure with `needle` in a one-line error, and
/// check nothing is left behind.
fn expect_failure(ib: &Isobox, bundle: &Path, id: &str, needle: &str) {
    let out = ib
        .cmd()
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{id}: succeeded");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{id}: not one line: {err}"
    );
    assert!(err.contains(needle), "{id}: {err:?} lacks {needle:?}");
    ib.assert_nothing_left(id, Some(bundle));
}

#[test]
fn no_bundle() {
    require_root!();
    let ib = Isobox::new();
    expect_failure(
        &ib,
        Path::new("/nonexistent/bundle"),
        "nob",
        "bundle /nonexistent/bundle: no such directory",
    );
}

#[test]
fn no_config_json() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("true");
    fs::remove_file(b.path().join("config.json")).unwrap();
    expect_failure(&ib, b.path(), "nocfg", "no config.json");
}

#[test]
fn invalid_json_with_line_and_column() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("true");
    fs::write(
        b.path().join("config.json"),
        "{\"ociVersion\": \"1.0.2\",\n \"process\": [}\n",
    )
    .unwrap();
    expect_failure(
        &ib,
        b.path(),
        "badjson",
        "config.json: invalid JSON at line 2, column",
    );
}

#[test]
fn wrong_type_and_value() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    b.edit(|c| c["process"]["user"]["uid"] = json!("root"));
    expect_failure(&ib, b.path(), "badtype", "config.json: process.user.uid:");
    b.edit(|c| {
        c["process"]["user"]["uid"] = json!(0);
        c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "teleport"}]);
    });
    expect_failure(
        &ib,
        b.path(),
        "badvalue",
        "config.json: linux.namespaces[1].type:",
    );
}

#[test]
fn empty_args() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    b.edit(|c| c["process"]["args"] = json!([]));
    expect_failure(
        &ib,
        b.path(),
        "noargs",
        "config.json: process.args: must not be empty",
    );
}

#[test]
fn missing_rootfs() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("true");
    fs::remove_dir_all(b.rootfs()).unwrap();
    expect_failure(&ib, b.path(), "norootfs", "root.path: root filesystem");
}

#[test]
fn executable_not_found() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    b.edit(|c| c["process"]["args"] = json!(["no-such-tool", "x"]));
    expect_failure(
        &ib,
        b.path(),
        "noexe",
        "process.args[0]: executable \"no-such-tool\" not found in the rootfs",
    );
    let out = ib
        .cmd()
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg("noexe")
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("searched PATH=/bin:/sbin:/usr/bin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn terminal_is_not_supported_yet() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    b.edit(|c| c["process"]["terminal"] = json!(true));
    expect_failure(
        &ib,
        b.path(),
        "tty",
        "process.terminal: true is not supported yet",
    );
}

#[test]
fn duplicate_id_keeps_the_first_container() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("exec sleep 100");
    let out = ib.run_detached(&["create", "dup"], b.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ib.run_detached(&["create", "dup"], b.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container \"dup\" already exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ib.state("dup")["status"], "created");
    let out = ib.run(&["delete", "dup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ib.assert_nothing_left("dup", Some(b.path()));
}

#[test]
fn malformed_id() {
    require_root!();
    let ib = Isobox::new();
    let b = TestBundle::sh("true");
    for id in ["../escape", "a/b", "bad id", ".."] {
        let out = ib
            .cmd()
            .args(["run", "--bundle"])
            .arg(b.path())
            .arg(id)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{id}");
        assert!(
            stderr(&out).contains("container id"),
            "{id}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        fs::read_dir(ib.root.path()).map(|d| d.count()).unwrap_or(0),
        0
    );
}

#[test]
fn unknown_id() {
    require_root!();
    let ib = Isobox::new();
    for verb in [
        &["state", "ghost"][..],
        &["start", "ghost"],
        &["kill", "ghost"],
        &["delete", "ghost"],
        &["ps", "ghost"],
    ] {
        let out = ib.run(verb);
        assert!(!out.status.success(), "{verb:?}");
        assert!(
            stderr(&out).contains("container \"ghost\" does not exist"),
            "{verb:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn resource_limit_the_host_cannot_apply() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    // CPU 4095 does not exist on any test host: the kernel refuses the cpuset.
    b.edit(|c| c["linux"]["resources"] = json!({"cpu": {"cpus": "4095"}}));
    expect_failure(
        &ib,
        b.path(),
        "nocpu",
        "config.json: linux.resources.cpu.cpus",
    );
}

#[test]
fn bad_backend_annotation() {
    require_root!();
    let ib = Isobox::new();
    let mut b = TestBundle::sh("true");
    b.edit(|c| c["annotations"] = json!({"io.isobox.backend": "xen"}));
    expect_failure(
        &ib,
        b.path(),
        "badbackend",
        "annotations.io.isobox.backend: unknown backend \"xen\"",
    );
}

#[test]
fn errors_reach_the_json_log_file() {
    require_root!();
    let ib = Isobox::new();
    let log = ib.root.path().join("isobox.log");
    let out = ib
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "ghost"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"]
            .as_str()
            .unwrap()
            .contains("\"ghost\" does not exist"),
        "{line}"
    );
}
