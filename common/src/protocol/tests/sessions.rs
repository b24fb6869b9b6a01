//! Several sessions over one line: routing, the host's checks of a guest, flow control.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::super::session::{GuestSessions, Window};
use super::super::*;
use super::Prng;

fn out(session: SessionId, data: &[u8]) -> Message {
    Message::Stdout {
        session,
        data: data.to_vec(),
    }
}

fn started(session: SessionId) -> Message {
    Message::Started { session, pid: 10 }
}

fn exit(session: SessionId, code: i32) -> Message {
    Message::Exit {
        session,
        status: ExitStatus {
            code: Some(code),
            signal: None,
        },
    }
}

#[test]
fn interleaved_sessions_reassemble_in_order_from_any_chunking() {
    // Three sessions' output, interleaved frame by frame on one line, read back in arbitrary
    // chunks: each session's bytes arrive complete and in order, each Exit once.
    let mut rng = Prng(0xfeed_beef_1234_5678);
    let mut want: BTreeMap<SessionId, Vec<u8>> = BTreeMap::new();
    let mut line = Vec::new();
    for id in [0, 1, 2] {
        line.extend(started(id).encode().unwrap());
    }
    for i in 0..300u32 {
        let id = (rng.next() % 3) as SessionId;
        let data: Vec<u8> = (0..(rng.next() % 200) as usize)
            .map(|j| (i as usize + j) as u8)
            .collect();
        want.entry(id).or_default().extend(&data);
        let msg = if i % 2 == 0 {
            out(id, &data)
        } else {
            Message::Stderr { session: id, data }
        };
        line.extend(msg.encode().unwrap());
    }
    for id in [2, 0, 1] {
        line.extend(exit(id, id as i32).encode().unwrap());
    }
    let mut host = GuestSessions::new();
    let windows: BTreeMap<SessionId, _> = [0, 1, 2]
        .map(|n| {
            let o = if n == 0 {
                host.open_workload()
            } else {
                host.open()
            }
            .unwrap();
            assert_eq!(o.id, n);
            (o.id, o)
        })
        .into_iter()
        .collect();
    let mut got: BTreeMap<SessionId, Vec<u8>> = BTreeMap::new();
    let mut exits = Vec::new();
    let (mut buf, mut rest) = (Vec::new(), &line[..]);
    while !rest.is_empty() || !buf.is_empty() {
        let n = ((rng.next() % 97) as usize + 1).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some((msg, used)) = decode(&buf).unwrap() {
            buf.drain(..used);
            host.accept(&msg).unwrap();
            match msg {
                Message::Stdout { session, data } | Message::Stderr { session, data } => {
                    // The host writes the data out at once: its window opens again.
                    windows[&session].output.release(data.len()).unwrap();
                    got.entry(session).or_default().extend(data);
                }
                Message::Exit { session, status } => exits.push((session, status.code)),
                _ => {}
            }
        }
        if rest.is_empty() && !buf.is_empty() {
            panic!("{} bytes of a partial frame left", buf.len());
        }
    }
    assert_eq!(got, want);
    assert_eq!(exits, [(2, Some(2)), (0, Some(0)), (1, Some(1))]);
    assert!(host.is_empty());
}

#[test]
fn a_guest_is_held_to_the_sessions_the_host_opened() {
    let mut host = GuestSessions::new();
    host.open_workload().unwrap();
    let one = host.open().unwrap();
    assert_eq!(one.id, 1);
    let refused = |host: &mut GuestSessions, msg: Message, want: &str| {
        let err = host.accept(&msg).unwrap_err();
        assert!(err.contains(want), "{msg:?}: {err}");
    };
    // Not opened by the host.
    refused(&mut host, started(2), "session 2, which is not open");
    refused(&mut host, out(7, b"x"), "session 7, which is not open");
    // Output before the process started.
    refused(&mut host, out(1, b"x"), "output before Started");
    host.accept(&started(1)).unwrap();
    refused(&mut host, started(1), "started already");
    host.accept(&out(1, b"x")).unwrap();
    // Frames only the host sends.
    for msg in [
        Message::Exec {
            session: 1,
            request: ExecRequest::default(),
        },
        Message::Stdin {
            session: 1,
            data: vec![1],
        },
        Message::StdinEof { session: 1 },
        Message::Signal {
            session: 1,
            signal: 9,
        },
        Message::Resize {
            session: 1,
            size: WindowSize::default(),
        },
        Message::Shutdown,
        Message::SignalAll(9),
    ] {
        refused(&mut host, msg, "only the host sends");
    }
    refused(&mut host, Message::hello(), "second Hello");
    // An Error is fine while the session is open; Exit once, then nothing more.
    host.accept(&Message::Error {
        session: 1,
        text: "warning".into(),
    })
    .unwrap();
    host.accept(&exit(1, 0)).unwrap();
    refused(&mut host, exit(1, 0), "session 1, which is not open");
    refused(&mut host, out(1, b"late"), "session 1, which is not open");
    assert!(!host.is_open(1) && host.is_open(WORKLOAD));
    // Ids are not reused.
    assert_eq!(host.open().unwrap().id, 2);
    assert!(host.open_workload().unwrap_err().contains("open already"));
}

#[test]
fn output_past_the_window_and_unsent_consumption_are_refused() {
    let mut host = GuestSessions::new();
    let s = host.open().unwrap();
    host.accept(&started(s.id)).unwrap();
    let chunk = vec![0u8; CHUNK];
    for _ in 0..WINDOW / CHUNK {
        host.accept(&out(s.id, &chunk)).unwrap();
    }
    let err = host.accept(&out(s.id, b"!")).unwrap_err();
    assert!(err.contains("exceed the 262144-byte window"), "{err}");
    // Written out by the host: room again.
    s.output.release(CHUNK).unwrap();
    host.accept(&out(s.id, &chunk)).unwrap();
    // Consumed for more stdin than the host sent.
    assert_eq!(s.input.reserve(10), 10);
    let consumed = |bytes| Message::Consumed {
        session: s.id,
        bytes,
    };
    let err = host.accept(&consumed(11)).unwrap_err();
    assert!(err.contains("only 10 in flight"), "{err}");
    host.accept(&consumed(10)).unwrap();
    assert_eq!(s.input.in_flight(), 0);
}

#[test]
fn at_most_max_sessions_are_open_at_once() {
    let mut host = GuestSessions::new();
    let ids: Vec<_> = (0..MAX_SESSIONS).map(|_| host.open().unwrap().id).collect();
    assert!(host.open().unwrap_err().contains("open already"));
    host.forget(ids[0]);
    assert!(host.open().is_ok());
}

#[test]
fn a_sender_waits_for_room_and_a_closed_window_releases_it() {
    let w = Window::new();
    assert_eq!(w.reserve(WINDOW + 5), WINDOW);
    let waiter = {
        let w = Arc::clone(&w);
        thread::spawn(move || w.reserve(100))
    };
    thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished(), "reserved past a full window");
    w.release(30).unwrap();
    assert_eq!(waiter.join().unwrap(), 30);
    w.unreserve(WINDOW);
    assert_eq!(w.in_flight(), 0);
    // Closing wakes a waiting sender with nothing.
    w.charge(WINDOW).unwrap();
    let waiter = {
        let w = Arc::clone(&w);
        thread::spawn(move || w.reserve(1))
    };
    thread::sleep(Duration::from_millis(20));
    w.close();
    assert_eq!(waiter.join().unwrap(), 0);
    assert!(w.charge(1).is_err());
}
