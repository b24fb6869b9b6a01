use super::*;

#[test]
fn the_hello_timeout_follows_the_accelerator_unless_the_environment_says() {
    assert_eq!(super::hello_timeout(Accelerator::Kvm, None).unwrap(), 20);
    assert_eq!(
        super::hello_timeout(Accelerator::Tcg, Some("")).unwrap(),
        60
    );
    assert_eq!(
        super::hello_timeout(Accelerator::Kvm, Some("120")).unwrap(),
        120
    );
    for bad in ["0", "x", "-1", "99999"] {
        let e = super::hello_timeout(Accelerator::Kvm, Some(bad)).unwrap_err();
        assert!(e.to_string().contains("$ISOBOX_HELLO_TIMEOUT"), "{e}");
    }
}

#[test]
fn delete_partial_ends_the_recorded_processes_and_removes_the_files() {
    let dir = tempfile::tempdir().unwrap();
    // Stand-ins for a VM host and a hypervisor that outlived their `create`.
    let (mut procs, mut children) = (Vec::new(), Vec::new());
    for file in [VM_HOST_PID, HYPERVISOR_PID] {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let p = ProcessRef::of(child.id() as i32).unwrap();
        p.save(&dir.path().join(file)).unwrap();
        procs.push(p);
        children.push(child);
    }
    std::fs::write(dir.path().join(CONSOLE_LOG), "boot").unwrap();
    let state = State {
        oci_version: isobox_common::OCI_VERSION.into(),
        id: "half".into(),

        status: isobox_common::Status::Stopped,
        pid: 0,
        bundle: "/b".into(),
        annotations: Default::default(),
        backend: BackendKind::Microvm,
        pid_start_time: 0,
        created: String::new(),
        started: false,
        state_dir: dir.path().to_path_buf(),
        data: serde_json::Value::Null,
        creator: Some(ProcessRef {
            pid: 0,
            start_time: 0,
        }),
    };
    let backend = MicrovmBackend::with_host_command("/nonexistent", ["vm-host"]);
    backend.delete_partial(&state).unwrap();
    for p in &procs {
        assert!(!p.is_alive(), "recorded process {} still runs", p.pid);
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Idempotent.
    backend.delete_partial(&state).unwrap();
    for mut c in children {
        let _ = c.wait(); // already reaped: ECHILD
    }
}

#[test]
fn explicit_agent_must_exist() {
    let err = find_agent(Some(Path::new("/no/such/agent"))).unwrap_err();
    assert!(err.to_string().contains("/no/such/agent"));
}
