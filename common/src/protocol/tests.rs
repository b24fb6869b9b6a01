use super::*;

fn samples() -> Vec<Message> {
    vec![
        Message::hello(),
        Message::Hello { version: 7 },
        Message::Exec {
            session: WORKLOAD,
            request: ExecRequest {
                args: vec!["sh".into(), "-c".into(), "echo ü".into()],
                env: vec!["PATH=/bin".into(), "A=b=c".into()],
                cwd: "/tmp".into(),
                uid: 1000,
                gid: 100,
                additional_gids: vec![5, 6],
                umask: Some(0o022),
                rlimits: vec![Rlimit {
                    kind: "RLIMIT_NOFILE".into(),
                    soft: 1024,
                    hard: u64::MAX,
                }],
                hostname: Some("box".into()),
                seccomp: Some(Box::new(SeccompProgram {
                    filter: vec![0x0000_0004_0000_0020, 0x7fff_0000_0000_0006, u64::MAX],
                    flags: 2 | 4,
                })),
                terminal: Some(WindowSize { rows: 24, cols: 80 }),
                capabilities: Some(Box::new(crate::caps::CapMasks {
                    bounding: 0x421,
                    permitted: 0x421,
                    effective: 0x421,
                    inheritable: 0x400,
                    ambient: 0x400,
                    last_cap: 40,
                })),
                no_new_privileges: true,
                limits: Some(Box::new(GuestLimits {
                    pids_max: Some(10),
                    memory_max: Some(32 << 20),
                    cpu_quota: Some(50_000),
                    cpu_period: None,
                    memory_low: Some(16 << 20),
                    cpu_weight: Some(100),
                })),
                ioprio: Some((2 << 13) | 4),
                oom_score_adj: Some(-500),
            },
        },
        Message::Exec {
            session: u32::MAX,
            request: ExecRequest::default(),
        },
        Message::Stdin {
            session: 1,
            data: vec![0, 1, 0xB0, 0x58, 255],
        },
        Message::Stdin {
            session: 0,
            data: Vec::new(),
        },
        Message::StdinEof { session: 3 },
        Message::Stdout {
            session: 0,
            data: b"out\n".to_vec(),
        },
        Message::Stderr {
            session: 2,
            data: vec![0xff; 4096],
        },
        Message::Signal {
            session: 0,
            signal: 15,
        },
        Message::Signal {
            session: 9,
            signal: -1,
        },
        Message::Started {
            session: 4,
            pid: 42,
        },
        Message::Exit {
            session: 0,
            status: ExitStatus {
                code: Some(3),
                signal: None,
            },
        },
        Message::Exit {
            session: 5,
            status: ExitStatus {
                code: None,
                signal: Some(9),
            },
        },
        Message::Error {
            session: 1,
            text: "exec \"x\": No such file".into(),
        },
        Message::Shutdown,
        Message::SignalAll(15),
        Message::Resize {
            session: 1,
            size: WindowSize {
                rows: 50,
                cols: u16::MAX,
            },
        },
        Message::Consumed {
            session: 2,
            bytes: WINDOW as u32,
        },
        Message::Mount(MountRequest {
            root_tag: "isobox0".into(),
            root_readonly: true,
            volumes: vec![VolumeMount {
                tag: "isobox1".into(),
                name: "hosts".into(),
                destination: "/etc/hosts".into(),
                flags: 1,
            }],
            masked_paths: vec!["/proc/kcore".into()],
            readonly_paths: vec!["/proc/sys".into()],
            sysctl: [(
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            )]
            .into(),
            devices: crate::devnodes::defaults(),
            filesystems: vec![FsMount {
                fstype: "tmpfs".into(),
                destination: "/dev/shm".into(),
                flags: 2,
                data: Some("mode=1777".into()),
            }],
        }),
        Message::Mounted,
        Message::Network(NetworkRequest {
            interfaces: vec![NetInterface {
                name: "eth0".into(),
                mac: [0x02, 0x42, 0xac, 0x11, 0, 2],
                mtu: 1500,
                addresses: vec![IpPrefix {
                    addr: "10.88.0.2".parse().unwrap(),
                    prefix: 16,
                }],
                routes: vec![NetRoute {
                    dst: None,
                    gateway: Some("10.88.0.1".parse().unwrap()),
                    v6: false,
                }],
            }],
        }),
        Message::Networked,
    ]
}

#[test]
fn every_message_round_trips_through_decode_and_reader() {
    let mut stream = Vec::new();
    for m in samples() {
        let frame = m.encode().unwrap();
        let (back, used) = decode(&frame).unwrap().unwrap();
        assert_eq!(back, m);
        assert_eq!(used, frame.len());
        // Every strict prefix asks for more bytes.
        for cut in 0..frame.len() {
            assert!(
                decode(&frame[..cut]).unwrap().is_none(),
                "{m:?} cut at {cut}"
            );
        }
        stream.extend_from_slice(&frame);
    }
    let mut r = &stream[..];
    for m in samples() {
        assert_eq!(read_message(&mut r).unwrap(), Some(m));
    }
    assert_eq!(read_message(&mut r).unwrap(), None);
}

#[test]
fn reader_errors_on_eof_inside_a_frame() {
    let frame = Message::Stdout {
        session: 0,
        data: b"hello".to_vec(),
    }
    .encode()
    .unwrap();
    for cut in 1..frame.len() {
        let mut r = &frame[..cut];
        let err = read_message(&mut r).unwrap_err().to_string();
        assert!(err.contains("stream ended inside"), "{err}");
    }
}

#[test]
fn strict_decoding_rejects_bad_frames() {
    let frame = |kind: u8, payload: &[u8]| {
        let mut f = FRAME_MAGIC.to_vec();
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.push(kind);
        f.extend_from_slice(payload);
        f
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (frame(0, b""), "unknown frame type 0"),
        (frame(200, b"\0\0\0\0"), "unknown frame type 200"),
        (frame(ty::ERROR, &[0, 0, 0, 1, 0xff, 0xfe]), "not UTF-8"),
        (frame(ty::EXEC, b"\0\0\0\0{not json"), "bad JSON"),
        (frame(ty::EXIT, b"\0\0\0\0[]"), "bad JSON"),
        (frame(ty::SIGNAL, &[0, 0, 0, 0, 1, 2, 3]), "must be 4 bytes"),
        (
            frame(ty::STARTED, &[0, 0, 0, 0, 1, 2, 3, 4, 5]),
            "must be 4 bytes",
        ),
        (frame(ty::RESIZE, &[0, 0, 0, 0, 1, 2]), "must be 4 bytes"),
        (frame(ty::CONSUMED, &[0, 0, 0, 0]), "must be 4 bytes"),
        (frame(ty::STDOUT, &[0, 0, 1]), "4-byte session id"),
        (frame(ty::STDIN_EOF, &[0, 0, 0, 1, 0]), "must be empty"),
        (frame(ty::HELLO, b"ISOBOXAX\0\0\0\x01"), "Hello payload"),
        (frame(ty::SHUTDOWN, b"x"), "must be empty"),
        (frame(ty::SIGNAL_ALL, &[0, 0, 0, 0, 9]), "must be 4 bytes"),
        (b"Linux version 6.1\n".to_vec(), "bad frame magic"),
        (
            {
                let mut f = FRAME_MAGIC.to_vec();
                f.extend_from_slice(&u32::MAX.to_be_bytes());
                f.push(ty::STDOUT);
                f
            },
            "exceeds",
        ),
    ];
    for (bytes, want) in cases {
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(err.contains(want), "{bytes:?}: {err}");
        let err = read_message(&mut &bytes[..]).unwrap_err().to_string();
        assert!(err.contains(want), "{bytes:?}: {err}");
    }
    // A wrong first byte is rejected before a whole header arrived.
    assert!(decode(b"L").is_err());
}

#[test]
fn oversized_payload_is_refused_by_the_encoder() {
    // The session id counts: a payload is id and data together.
    let out = |n| Message::Stdout {
        session: 0,
        data: vec![0; n],
    };
    let err = out(MAX_PAYLOAD - 3).encode().unwrap_err();
    assert!(err.to_string().contains("exceeds"));
    assert!(out(MAX_PAYLOAD - 4).encode().is_ok());
}

#[test]
fn hello_version_mismatch_is_a_clear_error() {
    assert!(check_hello(&Message::hello(), "guest").is_ok());
    let err = check_hello(&Message::Hello { version: 9 }, "guest")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("version 9") && err.contains(&format!("speaks {PROTOCOL_VERSION}")),
        "{err}"
    );
    let err = check_hello(&Message::Shutdown, "host")
        .unwrap_err()
        .to_string();
    assert!(err.contains("Shutdown before Hello"), "{err}");
}

/// xorshift64*: deterministic garbage without a dependency.
struct Prng(u64);
impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_garbage_never_panics_or_hangs() {
    let mut rng = Prng(0x1234_5678_9abc_def1);
    let valid: Vec<Vec<u8>> = samples().iter().map(|m| m.encode().unwrap()).collect();
    for i in 0..20_000 {
        let mut buf: Vec<u8> = if i % 2 == 0 {
            // Pure noise, sometimes starting with the magic so the header checks are reached.
            let n = (rng.next() % 64) as usize;
            let mut b: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            if i % 4 == 0 && b.len() >= 2 {
                b[..2].copy_from_slice(&FRAME_MAGIC);
            }
            b
        } else {
            // A valid frame with a few bytes flipped, then maybe truncated.
            let mut b = valid[(rng.next() as usize) % valid.len()].clone();
            for _ in 0..(rng.next() % 4) {
                let at = (rng.next() as usize) % b.len();
                b[at] = rng.next() as u8;
            }
            b
        };
        if rng.next() % 3 == 0 {
            let keep = (rng.next() as usize) % (buf.len() + 1);
            buf.truncate(keep);
        }
        // Neither may panic; the reader must come back on a finite buffer.
        let _ = decode(&buf);
        let mut r = &buf[..];
        for _ in 0..buf.len() + 1 {
            match read_message(&mut r) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[test]
fn session_scoped_frames_carry_their_id_first() {
    let frame = Message::Stdout {
        session: 0x0102_0304,
        data: b"hi".to_vec(),
    }
    .encode()
    .unwrap();
    assert_eq!(frame[2..7], [0, 0, 0, 6, ty::STDOUT]);
    assert_eq!(frame[7..], [1, 2, 3, 4, b'h', b'i']);
    assert_eq!(Message::Shutdown.session(), None);
    assert_eq!(Message::StdinEof { session: 7 }.session(), Some(7));
}

mod sessions;
