//! The agent protocol decoder on arbitrary bytes, three ways that must agree: `decode` over
//! the whole buffer, `read_message` over a reader that hands the bytes out in arbitrary
//! chunks (and is interrupted now and then), and `decode` over a buffer that grows chunk by
//! chunk, as a reader of a serial line sees it. Every decoded message must survive
//! encode → decode unchanged.
//!
//! Input: byte 0 = n (mod 16), bytes 1..=n = chunk sizes (0 = one EINTR), the rest = the
//! stream.

#![no_main]

use std::io::{self, Read};

use isobox_common::protocol::session::GuestSessions;
use isobox_common::protocol::{decode, read_message, Message};
use libfuzzer_sys::fuzz_target;

/// How a decoding pass ended after its messages.
#[derive(Debug, PartialEq)]
enum End {
    /// At a frame boundary, nothing left.
    Clean,
    /// Bytes of an incomplete frame left over (decode only: a reader reports an error).
    Partial,
    Error,
}

struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
    interrupted: bool,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = match self.sizes {
            [] => usize::MAX,
            s => s[self.next % s.len()] as usize,
        };
        self.next = self.next.wrapping_add(1);
        // One EINTR per 0, then at least a byte: a reader that only interrupts never ends.
        if size == 0 && !self.interrupted {
            self.interrupted = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.interrupted = false;
        let n = size.max(1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn whole(stream: &[u8]) -> (Vec<Message>, End) {
    let mut out = Vec::new();
    let mut rest = stream;
    loop {
        match decode(rest) {
            Ok(Some((m, used))) => {
                assert!(
                    used > 0 && used <= rest.len(),
                    "decode used {used} of {}",
                    rest.len()
                );
                out.push(m);
                rest = &rest[used..];
            }
            Ok(None) if rest.is_empty() => return (out, End::Clean),
            Ok(None) => return (out, End::Partial),
            Err(e) => {
                let _ = e.to_string();
                return (out, End::Error);
            }
        }
    }
}

fn streamed(stream: &[u8], sizes: &[u8]) -> (Vec<Message>, End) {
    let mut r = Chunked {
        data: stream,
        sizes,
        next: 0,
        interrupted: false,
    };
    let mut out = Vec::new();
    loop {
        match read_message(&mut r) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return (out, End::Clean),
            Err(e) => {
                let _ = e.to_string();
                return (out, End::Error);
            }
        }
    }
}

fn incremental(stream: &[u8], sizes: &[u8]) -> (Vec<Message>, End) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    loop {
        loop {
            match decode(&buf) {
                Ok(Some((m, used))) => {
                    out.push(m);
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(_) => return (out, End::Error),
            }
        }
        if rest.is_empty() {
            let end = if buf.is_empty() {
                End::Clean
            } else {
                End::Partial
            };
            return (out, end);
        }
        let size = match sizes {
            [] => rest.len(),
            s => (s[i % s.len()] as usize).max(1),
        };
        i += 1;
        let n = size.min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, tail)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 16).min(tail.len());
    let (sizes, stream) = tail.split_at(n);

    let (msgs, end) = whole(stream);
    let (read, read_end) = streamed(stream, sizes);
    assert_eq!(read, msgs, "read_message and decode disagree");
    match end {
        End::Clean => assert_eq!(read_end, End::Clean),
        End::Partial | End::Error => assert_eq!(read_end, End::Error),
    }
    let (inc, inc_end) = incremental(stream, sizes);
    assert_eq!(inc, msgs, "chunked decode and whole decode disagree");
    assert_eq!(inc_end, end, "chunked decode ended differently");

    let mut host = GuestSessions::new();
    let _ = host.open_workload();
    for _ in 0..3 {
        let _ = host.open();
    }
    for m in &msgs {
        let ends = match m {
            Message::Exit { session, .. } => Some(*session),
            _ => None,
        };
        if host.accept(m).is_ok() {
            if let Some(id) = ends {
                assert!(!host.is_open(id), "session {id} open after its Exit");
            }
        }
    }

    for m in msgs {
        // Re-encoding can only fail on size (a JSON payload re-encoded may grow).
        if let Ok(frame) = m.encode() {
            let (back, used) = decode(&frame)
                .expect("own frame decodes")
                .expect("own frame is complete");
            assert_eq!(used, frame.len());
            assert_eq!(back, m, "encode → decode changed the message");
        }
    }
});
