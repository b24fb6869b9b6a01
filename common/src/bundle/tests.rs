use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::BackendKind;

/// A bundle dir with a rootfs holding an executable /bin/tool and a symlink /bin/sh -> tool.
fn bundle_with(config: &serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("rootfs/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("tool"), b"#!/bin/true\n").unwrap();
    fs::set_permissions(bin.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("tool", bin.join("sh")).unwrap();
    std::os::unix::fs::symlink("/bin/tool", bin.join("abs")).unwrap();
    fs::write(bin.join("data"), b"x").unwrap();
    fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn base() -> serde_json::Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["sh", "-c", "true"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "hostname": "box",
        "linux": {"namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}]}
    })
}

fn load_err(config: &serde_json::Value) -> String {
    let dir = bundle_with(config);
    Bundle::load(dir.path()).unwrap_err().to_string()
}

fn with(mut v: serde_json::Value, pointer: &str, value: serde_json::Value) -> serde_json::Value {
    *v.pointer_mut(pointer).unwrap() = value;
    v
}

#[test]
fn valid_bundle_loads_and_resolves_through_symlinks() {
    let dir = bundle_with(&base());
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(
        b.rootfs,
        fs::canonicalize(dir.path()).unwrap().join("rootfs")
    );
    assert_eq!(b.resolve_executable().unwrap(), Path::new("/bin/sh"));
    assert_eq!(b.search_path(), "/bin");
}

#[test]
fn absolute_symlink_resolves_inside_the_rootfs() {
    let dir = bundle_with(&with(base(), "/process/args", json!(["/bin/abs"])));
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(b.resolve_executable().unwrap(), Path::new("/bin/abs"));
    let fd = resolve_in_root(&b.rootfs, Path::new("/bin/abs")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let ino = nix::sys::stat::fstat(&fd).unwrap().st_ino;
    assert_eq!(ino, fs::metadata(b.rootfs.join("bin/tool")).unwrap().ino());
}

#[test]
fn missing_bundle_dir() {
    let err = Bundle::load(Path::new("/nonexistent/isobox-bundle"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/isobox-bundle") && err.contains("no such directory"),
        "{err}"
    );
}

#[test]
fn missing_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let err = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no config.json"), "{err}");
}

#[test]
fn invalid_json_names_line_and_column() {
    let dir = bundle_with(&base());
    fs::write(
        dir.path().join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\",\n  oops\n}",
    )
    .unwrap();
    let err = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("config.json: invalid JSON at line 3, column 3"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_the_field() {
    let err = load_err(&with(base(), "/process/args", json!("sh")));
    assert!(err.contains("config.json: process.args:"), "{err}");
    let err = load_err(&with(base(), "/process/user/uid", json!(-1)));
    assert!(err.contains("process.user.uid"), "{err}");
    let err = load_err(&with(base(), "/linux/namespaces/0/type", json!("bogus")));
    assert!(err.contains("linux.namespaces[0].type"), "{err}");
}

#[test]
fn empty_args() {
    let err = load_err(&with(base(), "/process/args", json!([])));
    assert!(
        err.ends_with("config.json: process.args: must not be empty"),
        "{err}"
    );
}

#[test]
fn missing_rootfs() {
    let err = load_err(&with(base(), "/root/path", json!("nope")));
    assert!(
        err.contains("root.path: root filesystem") && err.contains("nope does not exist"),
        "{err}"
    );
}

#[test]
fn executable_not_found_names_it_and_the_path() {
    let err = load_err(&with(base(), "/process/args", json!(["frobnicate"])));
    assert!(
        err.contains("process.args[0]: executable \"frobnicate\" not found")
            && err.contains("searched PATH=/bin"),
        "{err}"
    );
    // Present but not executable is not found either.
    let err = load_err(&with(base(), "/process/args", json!(["/bin/data"])));
    assert!(err.contains("executable \"/bin/data\" not found"), "{err}");
}

#[test]
fn terminal_true_loads() {
    let mut v = base();
    v["process"]["terminal"] = json!(true);
    v["process"]["consoleSize"] = json!({"height": 24, "width": 80});
    let dir = bundle_with(&v);
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(b.process().unwrap().terminal(), Some(true));
}

#[test]
fn an_exec_process_file_names_its_own_fields() {
    let file = Path::new("/run/p.json");
    let err = parse_process(
        file,
        r#"{"args": ["sh"], "cwd": "/", "user": {"uid": "x"}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("/run/p.json: user.uid: invalid type"),
        "{err}"
    );
    let p = parse_process(
        file,
        r#"{"args": ["sh"], "cwd": "rel", "user": {"uid": 0, "gid": 0}}"#,
    )
    .unwrap();
    let err = validate_process(&p, file, "").unwrap_err().to_string();
    assert!(
        err.starts_with("/run/p.json: cwd: \"rel\" must be an absolute path"),
        "{err}"
    );
    let err = parse_process(file, "{").unwrap_err().to_string();
    assert!(err.contains("/run/p.json: invalid JSON at line 1"), "{err}");
}

#[test]
fn bad_values() {
    let cases = [
        (with(base(), "/ociVersion", json!("2.0.0")), "ociVersion"),
        (
            with(base(), "/process/cwd", json!("relative")),
            "process.cwd",
        ),
        (
            with(base(), "/process/env", json!(["NOEQUALS"])),
            "process.env[0]",
        ),
        (
            with(
                base(),
                "/linux/namespaces",
                json!([{"type": "pid"}, {"type": "pid"}, {"type": "uts"}]),
            ),
            "linux.namespaces[1].type",
        ),
        (
            with(base(), "/linux/namespaces", json!([{"type": "pid"}])),
            "hostname",
        ),
        (
            with(
                base(),
                "/linux/namespaces/0",
                json!({"type": "pid", "path": "/proc/none/ns/pid"}),
            ),
            "linux.namespaces[0].path",
        ),
    ];
    for (config, field) in cases {
        let err = load_err(&config);
        assert!(
            err.contains(&format!("config.json: {field}")),
            "{field}: {err}"
        );
    }
}

#[test]
fn bad_resources() {
    let mut v = base();
    v["linux"]["resources"] = json!({"memory": {"limit": 0}});
    assert!(load_err(&v).contains("linux.resources.memory.limit"));
    v["linux"]["resources"] = json!({"memory": {"limit": 1048576, "swap": 1024}});
    assert!(load_err(&v).contains("linux.resources.memory.swap"));
    v["linux"]["resources"] = json!({"cpu": {"cpus": "0-x"}});
    assert!(load_err(&v).contains("linux.resources.cpu.cpus"));
    v["linux"]["resources"] = json!({"pids": {"limit": 0}});
    assert!(load_err(&v).contains("linux.resources.pids.limit"));
}

#[test]
fn cpu_lists() {
    assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
    assert!(parse_cpu_list("2-1").is_err());
    assert!(parse_cpu_list("").is_err());
}

#[test]
fn cpu_lists_are_sets_of_cpus_linux_can_have() {
    // Each CPU once, ascending: a microVM gets one vCPU per CPU of the set.
    assert_eq!(parse_cpu_list("3,0-1,1,0").unwrap(), vec![0, 1, 3]);
    assert_eq!(parse_cpu_list("8191").unwrap(), vec![8191]);
    // This range used to be expanded into 2^32 entries (16 GiB) before anything was checked.
    let err = parse_cpu_list("0-4294967295").unwrap_err();
    assert!(
        err.contains("CPU 4294967295") && err.contains("at most 8192"),
        "{err}"
    );
    assert!(parse_cpu_list("8192").is_err());
    let mut huge = base();
    huge["linux"]["resources"] = json!({"cpu": {"cpus": "0-99999999"}});
    let err = load_err(&huge);
    assert!(err.contains("linux.resources.cpu.cpus"), "{err}");
}

#[test]
fn backend_choice_order() {
    let dir = bundle_with(&base());
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(
        BackendKind::choose(None, &b, None, None).unwrap(),
        BackendKind::Container
    );
    assert_eq!(
        BackendKind::choose(None, &b, None, Some("microvm")).unwrap(),
        BackendKind::Microvm
    );
    assert!(BackendKind::choose(None, &b, None, Some("xen"))
        .unwrap_err()
        .to_string()
        .contains("ISOBOX_BACKEND"));

    let mut v = base();
    v["annotations"] = json!({"io.isobox.backend": "microvm"});
    let dir = bundle_with(&v);
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(
        BackendKind::choose(None, &b, None, Some("container")).unwrap(),
        BackendKind::Microvm
    );
    assert_eq!(
        BackendKind::choose(Some(BackendKind::Container), &b, None, None).unwrap(),
        BackendKind::Container
    );
    // The program name: below the annotation, above the environment.
    assert_eq!(
        BackendKind::choose(None, &b, Some("isobox-vm"), None).unwrap(),
        BackendKind::Microvm
    );
    v["annotations"] = json!({"io.isobox.backend": "container"});
    let dir = bundle_with(&v);
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(
        BackendKind::choose(None, &b, Some("isobox-vm"), Some("microvm")).unwrap(),
        BackendKind::Container
    );
    let dir = bundle_with(&base());
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(
        BackendKind::choose(None, &b, Some("isobox-vm"), Some("container")).unwrap(),
        BackendKind::Microvm
    );
    assert_eq!(
        BackendKind::choose(Some(BackendKind::Container), &b, Some("isobox-vm"), None).unwrap(),
        BackendKind::Container
    );
    for other in ["isobox", "runc", "isobox-vm.old", ""] {
        assert_eq!(BackendKind::for_program(other), None, "{other:?}");
        assert_eq!(
            BackendKind::choose(None, &b, Some(other), Some("microvm")).unwrap(),
            BackendKind::Microvm,
            "{other:?}"
        );
        assert_eq!(
            BackendKind::choose(None, &b, Some(other), None).unwrap(),
            BackendKind::Container,
            "{other:?}"
        );
    }
    v["annotations"] = json!({"io.isobox.backend": "qemu"});
    let dir = bundle_with(&v);
    let b = Bundle::load(dir.path()).unwrap();
    let err = BackendKind::choose(None, &b, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("annotations.io.isobox.backend") && err.contains("unknown backend"),
        "{err}"
    );
}

#[test]
fn uid_and_gid_minus_one_are_refused() {
    for (pointer, value, field) in [
        (
            "/process/user/uid",
            json!(4294967295u32),
            "process.user.uid",
        ),
        (
            "/process/user/gid",
            json!(4294967295u32),
            "process.user.gid",
        ),
        (
            "/process/user/additionalGids",
            json!([5, 4294967295u32]),
            "process.user.additionalGids[1]",
        ),
    ] {
        let mut config = base();
        config["process"]["user"][pointer.rsplit('/').next().unwrap()] = value;
        let err = load_err(&config);
        assert!(err.contains(&format!("{field}: 4294967295")), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
    let mut ok = base();
    ok["process"]["user"] = json!({"uid": 4294967294u32, "gid": 1000, "additionalGids": [0]});
    let dir = bundle_with(&ok);
    Bundle::load(dir.path()).unwrap();
}

#[test]
fn id_mappings_are_checked_with_their_field() {
    let err_for = |maps: serde_json::Value| {
        let mut config = base();
        config["linux"]["uidMappings"] = maps;
        load_err(&config)
    };
    let err = err_for(json!([{"containerID": 1, "hostID": 0, "size": 4294967295u32}]));
    assert!(err.contains("linux.uidMappings[0]: containerID 1"), "{err}");
    let err = err_for(json!([{"containerID": 0, "hostID": 4294967295u32, "size": 1}]));
    assert!(err.contains("linux.uidMappings[0]: hostID"), "{err}");
    let err = err_for(json!([{"containerID": 0, "hostID": 1000, "size": 0}]));
    assert!(err.contains("linux.uidMappings[0].size"), "{err}");
    let err = err_for(json!([
        {"containerID": 0, "hostID": 100000, "size": 65536},
        {"containerID": 70000, "hostID": 165535, "size": 10}
    ]));
    assert!(
        err.contains(
            "linux.uidMappings[1]: its hostID range overlaps that of linux.uidMappings[0]"
        ),
        "{err}"
    );
    let mut config = base();
    config["linux"]["gidMappings"] = json!([
        {"containerID": 0, "hostID": 100000, "size": 65536},
        {"containerID": 65535, "hostID": 0, "size": 1}
    ]);
    let err = load_err(&config);
    assert!(
        err.contains("linux.gidMappings[1]: its containerID range"),
        "{err}"
    );
    // The whole range, and adjacent ranges, are fine.
    let mut config = base();
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    config["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": 0, "size": 4294967295u32}
    ]);
    config["linux"]["gidMappings"] = json!([
        {"containerID": 0, "hostID": 100000, "size": 65536},
        {"containerID": 65536, "hostID": 1000, "size": 1}
    ]);
    let dir = bundle_with(&config);
    Bundle::load(dir.path()).unwrap();
}

#[test]
fn process_is_optional_at_load() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("process");
    let dir = bundle_with(&v);
    let b = Bundle::load(dir.path()).unwrap();
    assert!(b.process().is_none());
    assert_eq!(b.search_path(), DEFAULT_PATH);
    let err = b.resolve_executable().unwrap_err().to_string();
    assert!(
        err.ends_with("config.json: process: missing: there is no executable to find"),
        "{err}"
    );
}

#[test]
fn config_text_validates_as_load_does() {
    let dir = bundle_with(&base());
    let canon = fs::canonicalize(dir.path()).unwrap();
    let b = Bundle::from_config_text(canon.clone(), &base().to_string()).unwrap();
    assert_eq!(b.config_path, canon.join("config.json"));
    assert_eq!(b.rootfs, canon.join("rootfs"));
    // The same checks against the same rootfs, the same errors.
    for bad in [
        with(base(), "/process/args", json!(["/bin/nope"])),
        with(base(), "/ociVersion", json!("2.0")),
        json!({"ociVersion": "1.0.2"}),
    ] {
        fs::write(dir.path().join("config.json"), bad.to_string()).unwrap();
        let loaded = Bundle::load(dir.path()).unwrap_err().to_string();
        let from_text = Bundle::from_config_text(canon.clone(), &bad.to_string())
            .unwrap_err()
            .to_string();
        assert_eq!(from_text, loaded);
    }
}
