//! The host↔guest agent wire protocol.
//!
//! Both sides speak it over a byte stream (the guest's second serial port, ttyS1, in raw mode;
//! a unix socket on the host). Every frame is
//!
//! ```text
//! [magic: 2 bytes 0xB0 0x58][length: u32 BE][type: u8][payload: length bytes]
//! ```
//!
//! `length` counts the payload only and is capped at [`MAX_PAYLOAD`]. The per-frame magic makes
//! stray bytes on the line (kernel noise, a tty echo) a clear error instead of a silent
//! desynchronisation. Payloads by type:
//!
//! Messages about one process carry a session id first (u32 BE, written `sid` below): the
//! workload is session [`WORKLOAD`]; the host opens more (`exec`) with further ids, never
//! reusing one. Payloads by type:
//!
//! | type | message    | payload                                                   |
//! |------|------------|-----------------------------------------------------------|
//! | 1    | Hello      | 8 bytes `ISOBOXAG` + u32 BE protocol version              |
//! | 2    | Exec       | sid + JSON [`ExecRequest`]                                |
//! | 3    | Stdin      | sid + raw bytes                                           |
//! | 4    | StdinEof   | sid                                                       |
//! | 5    | Stdout     | sid + raw bytes                                           |
//! | 6    | Stderr     | sid + raw bytes                                           |
//! | 7    | Signal     | sid + i32 BE signal number                                |
//! | 8    | Started    | sid + u32 BE guest pid of the session's process           |
//! | 9    | Exit       | sid + JSON `{"code": i32?, "signal": i32?}`               |
//! | 10   | Error      | sid + UTF-8 text                                          |
//! | 11   | Shutdown   | empty                                                     |
//! | 12   | SignalAll  | i32 BE signal number, for every process in the guest      |
//! | 13   | Resize     | sid + u16 BE rows + u16 BE cols                           |
//! | 14   | Consumed   | sid + u32 BE count of data bytes written to their target  |
//! | 15   | Mount      | JSON [`MountRequest`]                                     |
//! | 16   | Mounted    | empty                                                     |
//!
//! Conversation: both sides send Hello first and check the other's (a different magic or
//! version is an error naming both versions). When the guest's files are shared from the host
//! (virtio-fs), the host then sends Mount and the agent answers Mounted once the workload's
//! root and volumes are in place, or Error for session 0 naming what failed. The host opens a session with Exec; the agent
//! answers Started (or Error, then Exit with code 127), streams Stdout/Stderr, and ends the
//! session with Exit, its last frame for that id. The host may send Stdin, StdinEof, Signal and
//! Resize for an open session, SignalAll at any time, and Shutdown to make the agent kill the
//! workload. The workload's Exit ends the guest: every other process is killed, their sessions
//! end first, and the agent powers the VM off.
//!
//! Flow control: at most [`WINDOW`] data bytes (Stdin one way, Stdout and Stderr together the
//! other) may be in flight per session and direction; the receiver reports with Consumed what it
//! has written out. So one slow reader stalls only its own session, and neither side buffers
//! more than a window per session. [`session::GuestSessions`] checks a guest's frames against
//! this on the host.

use std::borrow::Cow;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Bytes that open every frame.
pub const FRAME_MAGIC: [u8; 2] = [0xB0, 0x58];
/// Bytes that open a Hello payload.
pub const HELLO_MAGIC: [u8; 8] = *b"ISOBOXAG";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 4;
/// Largest payload accepted (and produced: senders split bigger data).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Header size: magic, length, type.
pub const HEADER_LEN: usize = 2 + 4 + 1;
/// A session's id; the workload's is [`WORKLOAD`].
pub type SessionId = u32;
/// The session of the bundle's own process.
pub const WORKLOAD: SessionId = 0;
/// Data bytes in flight per session and direction before the sender waits for Consumed.
pub const WINDOW: usize = 256 * 1024;
/// Largest data chunk either side puts in one frame.
pub const CHUNK: usize = 32 * 1024;
/// Most sessions open at once (the workload's included).
pub const MAX_SESSIONS: usize = 64;

/// One resource limit for the workload (`RLIMIT_NOFILE`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Name as in the OCI spec, e.g. `RLIMIT_NOFILE`.
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// What the guest agent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub umask: Option<u32>,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// The compiled `linux.seccomp` filter, installed in the workload just before execve.
    #[serde(default)]
    pub seccomp: Option<Box<SeccompProgram>>,
    /// Run on a new pseudo-terminal of this initial size (`process.terminal`): its slave is
    /// the process's stdio and controlling terminal, and all output comes as Stdout.
    #[serde(default)]
    pub terminal: Option<WindowSize>,
    /// `process.capabilities`; None keeps every capability the agent holds (the process
    /// names none).
    #[serde(default)]
    pub capabilities: Option<Box<crate::caps::CapMasks>>,
    /// `process.noNewPrivileges`.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// The workload's `linux.resources`, applied by a cgroup in the guest that every
    /// session's process joins (the workload's request only).
    #[serde(default)]
    pub limits: Option<Box<GuestLimits>>,
    /// `process.ioPriority` as an ioprio value (see `crate::ioprio`).
    #[serde(default)]
    pub ioprio: Option<u32>,
    /// `process.oomScoreAdj`.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
}

/// What of `linux.resources` a guest cgroup applies; None leaves a limit off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GuestLimits {
    pub pids_max: Option<i64>,
    pub memory_max: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// `memory.reservation` as cgroup2's `memory.low`.
    #[serde(default)]
    pub memory_low: Option<i64>,
    /// `cpu.shares` as cgroup2's `cpu.weight` (runc's conversion).
    #[serde(default)]
    pub cpu_weight: Option<u64>,
}

/// The workload's file systems: its root and its bind mounts shared from the host by
/// virtio-fs, each a share the guest mounts by tag (no root tag: the root is the
/// initramfs), and the paths to mask or make read-only in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MountRequest {
    /// The share holding the bundle's rootfs; empty when the rootfs is in the initramfs.
    pub root_tag: String,
    /// `root.readonly`: the root is remounted read-only once everything is mounted on it.
    pub root_readonly: bool,
    /// In `mounts` order.
    pub volumes: Vec<VolumeMount>,
    /// `linux.maskedPaths` and `linux.readonlyPaths`, applied once the root is in place.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// The kernel file systems of `mounts` (tmpfs, mqueue, proc, sysfs, devpts, cgroup), in
    /// order, once /dev is made; those at /dev, /dev/pts, /proc and /sys replace the
    /// agent's own.
    #[serde(default)]
    pub filesystems: Vec<FsMount>,
    /// The workload's /dev: a fresh tmpfs with the default nodes and these (`linux.devices`),
    /// devpts and the usual links, over the guest kernel's devtmpfs.
    #[serde(default)]
    pub devices: Vec<crate::devnodes::Node>,
    /// `linux.sysctl`, written under the guest's /proc/sys before the paths are protected.
    #[serde(default)]
    pub sysctl: std::collections::HashMap<String, String>,
}

/// The guest's network: the interfaces of the container's network namespace, each joined to
/// one of the VM's virtio-net devices, taken in order (host to guest at start, before the
/// workload's Exec). The VM's devices left over are taken from their driver, so the guest
/// shows only what the namespace has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkRequest {
    pub interfaces: Vec<NetInterface>,
}

/// One interface as the namespace has it: the guest's gets the same name, MAC, MTU,
/// addresses and routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub addresses: Vec<IpPrefix>,
    /// Routes through this interface, in the namespace's order (the kernel's own prefix
    /// routes left out: the guest's kernel makes them for the addresses).
    pub routes: Vec<NetRoute>,
}

/// An address with its prefix length (`10.88.0.2/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpPrefix {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

/// A route: to `dst` (None: the default route), through `gateway` or on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRoute {
    pub dst: Option<IpPrefix>,
    pub gateway: Option<std::net::IpAddr>,
    /// IPv6 routes have no `None` destination: `dst` None with an IPv6 gateway is `::/0`.
    pub v6: bool,
}

/// One bind mount of the bundle, from a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VolumeMount {
    pub tag: String,
    /// What inside the share is mounted: empty for the whole share (a directory source), else
    /// one name in it (a file source, whose directory is the share).
    #[serde(default)]
    pub name: String,
    /// Absolute, inside the workload's root.
    pub destination: String,
    /// mount(2) flags of the bind's remount: `MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, ….
    #[serde(default)]
    pub flags: u64,
}

/// One kernel file system of the bundle's `mounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FsMount {
    /// The file system type as the guest mounts it (`cgroup` is mounted as `cgroup2`).
    pub fstype: String,
    pub destination: String,
    /// mount(2) flags.
    pub flags: u64,
    /// Filesystem options (`mode=1777,size=65536k`).
    #[serde(default)]
    pub data: Option<String>,
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// A classic BPF seccomp filter ready for seccomp(SECCOMP_SET_MODE_FILTER): each word is
/// one struct sock_filter (code, jt, jf, k packed little-endian), see [`crate::seccomp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SeccompProgram {
    pub filter: Vec<u64>,
    /// SECCOMP_FILTER_FLAG_* bits.
    pub flags: u32,
}

/// How the workload ended: an exit code or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// The shell convention: the code, or 128+N when killed by signal N.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello {
        version: u32,
    },
    Exec {
        session: SessionId,
        request: ExecRequest,
    },
    Stdin {
        session: SessionId,
        data: Vec<u8>,
    },
    StdinEof {
        session: SessionId,
    },
    Stdout {
        session: SessionId,
        data: Vec<u8>,
    },
    Stderr {
        session: SessionId,
        data: Vec<u8>,
    },
    Signal {
        session: SessionId,
        signal: i32,
    },
    Started {
        session: SessionId,
        pid: u32,
    },
    Exit {
        session: SessionId,
        status: ExitStatus,
    },
    Error {
        session: SessionId,
        text: String,
    },
    Shutdown,
    /// A signal for every process in the guest but the agent (`isobox kill --all`).
    SignalAll(i32),
    /// The session's terminal changed size.
    Resize {
        session: SessionId,
        size: WindowSize,
    },
    /// The receiver wrote `bytes` more of the session's data out (flow control, see
    /// [`WINDOW`]).
    Consumed {
        session: SessionId,
        bytes: u32,
    },
    /// Mount the shared root and volumes (host to guest, right after Hello).
    Mount(MountRequest),
    /// The Mount request is done.
    Mounted,
    /// Configure the guest's network (host to guest, at start, before the workload's Exec).
    Network(NetworkRequest),
    /// The Network request is done.
    Networked,
}

mod ty {
    pub const HELLO: u8 = 1;
    pub const EXEC: u8 = 2;
    pub const STDIN: u8 = 3;
    pub const STDIN_EOF: u8 = 4;
    pub const STDOUT: u8 = 5;
    pub const STDERR: u8 = 6;
    pub const SIGNAL: u8 = 7;
    pub const STARTED: u8 = 8;
    pub const EXIT: u8 = 9;
    pub const ERROR: u8 = 10;
    pub const SHUTDOWN: u8 = 11;
    pub const SIGNAL_ALL: u8 = 12;
    pub const RESIZE: u8 = 13;
    pub const CONSUMED: u8 = 14;
    pub const MOUNT: u8 = 15;
    pub const MOUNTED: u8 = 16;
    pub const NETWORK: u8 = 17;
    pub const NETWORKED: u8 = 18;
}

fn perr(msg: impl Into<String>) -> Error {
    Error::Protocol(msg.into())
}

impl Message {
    /// The current version's Hello.
    pub fn hello() -> Message {
        Message::Hello {
            version: PROTOCOL_VERSION,
        }
    }

    /// Short name for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Exec { .. } => "Exec",
            Message::Stdin { .. } => "Stdin",
            Message::StdinEof { .. } => "StdinEof",
            Message::Stdout { .. } => "Stdout",
            Message::Stderr { .. } => "Stderr",
            Message::Signal { .. } => "Signal",
            Message::Started { .. } => "Started",
            Message::Exit { .. } => "Exit",
            Message::Error { .. } => "Error",
            Message::Shutdown => "Shutdown",
            Message::SignalAll(_) => "SignalAll",
            Message::Resize { .. } => "Resize",
            Message::Consumed { .. } => "Consumed",
            Message::Mount(_) => "Mount",
            Message::Mounted => "Mounted",
            Message::Network(_) => "Network",
            Message::Networked => "Networked",
        }
    }

    /// The session a message is about; None for Hello, Shutdown and SignalAll.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Message::Hello { .. }
            | Message::Shutdown
            | Message::SignalAll(_)
            | Message::Mount(_)
            | Message::Mounted
            | Message::Network(_)
            | Message::Networked => None,
            Message::Exec { session, .. }
            | Message::Stdin { session, .. }
            | Message::StdinEof { session }
            | Message::Stdout { session, .. }
            | Message::Stderr { session, .. }
            | Message::Signal { session, .. }
            | Message::Started { session, .. }
            | Message::Exit { session, .. }
            | Message::Error { session, .. }
            | Message::Resize { session, .. }
            | Message::Consumed { session, .. } => Some(*session),
        }
    }

    /// Encode into one frame. Fails only when the payload exceeds [`MAX_PAYLOAD`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        // Data frames borrow their bytes: the payload is copied once, into the frame.
        let (kind, body): (u8, Cow<[u8]>) = match self {
            Message::Hello { version } => {
                let mut p = HELLO_MAGIC.to_vec();
                p.extend_from_slice(&version.to_be_bytes());
                (ty::HELLO, p.into())
            }
            Message::Exec { request, .. } => (ty::EXEC, to_json(request)?.into()),
            Message::Stdin { data, .. } => (ty::STDIN, data.as_slice().into()),
            Message::StdinEof { .. } => (ty::STDIN_EOF, Cow::Borrowed(&[])),
            Message::Stdout { data, .. } => (ty::STDOUT, data.as_slice().into()),
            Message::Stderr { data, .. } => (ty::STDERR, data.as_slice().into()),
            Message::Signal { signal, .. } => (ty::SIGNAL, signal.to_be_bytes().to_vec().into()),
            Message::Started { pid, .. } => (ty::STARTED, pid.to_be_bytes().to_vec().into()),
            Message::Exit { status, .. } => (ty::EXIT, to_json(status)?.into()),
            Message::Error { text, .. } => (ty::ERROR, text.as_bytes().into()),
            Message::Shutdown => (ty::SHUTDOWN, Cow::Borrowed(&[])),
            Message::SignalAll(s) => (ty::SIGNAL_ALL, s.to_be_bytes().to_vec().into()),
            Message::Resize { size, .. } => {
                let mut p = size.rows.to_be_bytes().to_vec();
                p.extend_from_slice(&size.cols.to_be_bytes());
                (ty::RESIZE, p.into())
            }
            Message::Consumed { bytes, .. } => (ty::CONSUMED, bytes.to_be_bytes().to_vec().into()),
            Message::Mount(request) => (ty::MOUNT, to_json(request)?.into()),
            Message::Mounted => (ty::MOUNTED, Cow::Borrowed(&[])),
            Message::Network(request) => (ty::NETWORK, to_json(request)?.into()),
            Message::Networked => (ty::NETWORKED, Cow::Borrowed(&[])),
        };
        let sid = self.session().map(u32::to_be_bytes);
        let sid: &[u8] = sid.as_ref().map_or(&[], |b| b.as_slice());
        let payload_len = sid.len() + body.len();
        if payload_len > MAX_PAYLOAD {
            return Err(perr(format!(
                "{} payload of {payload_len} bytes exceeds the {MAX_PAYLOAD}-byte limit",
                self.name(),
            )));
        }
        let mut frame = Vec::with_capacity(HEADER_LEN + payload_len);
        frame.extend_from_slice(&FRAME_MAGIC);
        frame.extend_from_slice(&(payload_len as u32).to_be_bytes());
        frame.push(kind);
        frame.extend_from_slice(sid);
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    /// Decode one message from a frame's type byte and payload.
    pub fn from_parts(kind: u8, payload: &[u8]) -> Result<Message> {
        let empty = |m: Message, rest: &[u8]| {
            if rest.is_empty() {
                Ok(m)
            } else {
                Err(perr(format!(
                    "{} frame must be empty, has {} bytes",
                    m.name(),
                    rest.len()
                )))
            }
        };
        match kind {
            ty::HELLO => {
                if payload.len() != 12 || payload[..8] != HELLO_MAGIC {
                    return Err(perr(format!(
                        "Hello payload is not {:?} + version ({} bytes: {})",
                        String::from_utf8_lossy(&HELLO_MAGIC),
                        payload.len(),
                        hex_prefix(payload)
                    )));
                }
                return Ok(Message::Hello {
                    version: u32::from_be_bytes(fixed(&payload[8..], "Hello")?),
                });
            }
            ty::SHUTDOWN => return empty(Message::Shutdown, payload),
            ty::MOUNTED => return empty(Message::Mounted, payload),
            ty::MOUNT => return Ok(Message::Mount(from_json(payload, "Mount")?)),
            ty::NETWORKED => return empty(Message::Networked, payload),
            ty::NETWORK => return Ok(Message::Network(from_json(payload, "Network")?)),
            ty::SIGNAL_ALL => {
                return Ok(Message::SignalAll(i32::from_be_bytes(fixed(
                    payload,
                    "SignalAll",
                )?)))
            }
            _ => {}
        }
        // Every other type is about one session, whose id comes first.
        let name = type_name(kind).ok_or_else(|| perr(format!("unknown frame type {kind}")))?;
        if payload.len() < 4 {
            return Err(perr(format!(
                "{name} payload must start with a 4-byte session id, has {} bytes",
                payload.len()
            )));
        }
        let (sid, rest) = payload.split_at(4);
        let session = u32::from_be_bytes([sid[0], sid[1], sid[2], sid[3]]);
        Ok(match kind {
            ty::EXEC => Message::Exec {
                session,
                request: from_json(rest, name)?,
            },
            ty::STDIN => Message::Stdin {
                session,
                data: rest.to_vec(),
            },
            ty::STDIN_EOF => empty(Message::StdinEof { session }, rest)?,
            ty::STDOUT => Message::Stdout {
                session,
                data: rest.to_vec(),
            },
            ty::STDERR => Message::Stderr {
                session,
                data: rest.to_vec(),
            },
            ty::SIGNAL => Message::Signal {
                session,
                signal: i32::from_be_bytes(fixed(rest, name)?),
            },
            ty::STARTED => Message::Started {
                session,
                pid: u32::from_be_bytes(fixed(rest, name)?),
            },
            ty::EXIT => Message::Exit {
                session,
                status: from_json(rest, name)?,
            },
            ty::ERROR => Message::Error {
                session,
                text: String::from_utf8(rest.to_vec())
                    .map_err(|e| perr(format!("Error frame text is not UTF-8: {e}")))?,
            },
            ty::RESIZE => {
                let b: [u8; 4] = fixed(rest, name)?;
                Message::Resize {
                    session,
                    size: WindowSize {
                        rows: u16::from_be_bytes([b[0], b[1]]),
                        cols: u16::from_be_bytes([b[2], b[3]]),
                    },
                }
            }
            ty::CONSUMED => Message::Consumed {
                session,
                bytes: u32::from_be_bytes(fixed(rest, name)?),
            },
            _ => return Err(perr(format!("unknown frame type {kind}"))),
        })
    }
}

/// The name of a session-scoped frame type.
fn type_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        ty::EXEC => "Exec",
        ty::STDIN => "Stdin",
        ty::STDIN_EOF => "StdinEof",
        ty::STDOUT => "Stdout",
        ty::STDERR => "Stderr",
        ty::SIGNAL => "Signal",
        ty::STARTED => "Started",
        ty::EXIT => "Exit",
        ty::ERROR => "Error",
        ty::RESIZE => "Resize",
        ty::CONSUMED => "Consumed",
        _ => return None,
    })
}

fn fixed<const N: usize>(payload: &[u8], what: &str) -> Result<[u8; N]> {
    payload.try_into().map_err(|_| {
        perr(format!(
            "{what} payload must be {N} bytes, has {}",
            payload.len()
        ))
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| perr(format!("encoding JSON: {e}")))
}

fn from_json<T: for<'de> Deserialize<'de>>(payload: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(payload).map_err(|e| perr(format!("{what} payload: bad JSON: {e}")))
}

fn hex_prefix(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 16 {
        s.push('…');
    }
    s
}

/// Check a frame header; returns (payload length, type).
fn check_header(h: &[u8; HEADER_LEN]) -> Result<(usize, u8)> {
    if h[..2] != FRAME_MAGIC {
        return Err(perr(format!(
            "bad frame magic {} (expected b058): stray bytes on the line",
            hex_prefix(&h[..])
        )));
    }
    let len = u32::from_be_bytes([h[2], h[3], h[4], h[5]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(perr(format!(
            "frame length {len} exceeds the {MAX_PAYLOAD}-byte limit"
        )));
    }
    Ok((len, h[6]))
}

/// Decode the first frame of `buf`. `Ok(None)` means more bytes are needed; on success returns
/// the message and how many bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>> {
    if buf.len() < HEADER_LEN {
        // Reject a wrong magic as early as possible.
        let bad0 = !buf.is_empty() && buf[0] != FRAME_MAGIC[0];
        let bad1 = buf.len() >= 2 && buf[1] != FRAME_MAGIC[1];
        if bad0 || bad1 {
            return Err(perr(format!(
                "bad frame magic {} (expected b058): stray bytes on the line",
                hex_prefix(buf)
            )));
        }
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buf[..HEADER_LEN]);
    let (len, kind) = check_header(&header)?;
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let msg = Message::from_parts(kind, &buf[HEADER_LEN..HEADER_LEN + len])?;
    Ok(Some((msg, HEADER_LEN + len)))
}

/// Read one message. `Ok(None)` is a clean end of stream at a frame boundary; an end of stream
/// inside a frame is an error.
pub fn read_message<R: Read>(r: &mut R) -> Result<Option<Message>> {
    let mut header = [0u8; HEADER_LEN];
    match read_full(r, &mut header)? {
        0 => return Ok(None),
        n if n < HEADER_LEN => {
            return Err(perr(format!(
                "stream ended inside a frame header ({n} of {HEADER_LEN} bytes)"
            )))
        }
        _ => {}
    }
    let (len, kind) = check_header(&header)?;
    let mut payload = vec![0u8; len];
    let got = read_full(r, &mut payload)?;
    if got < len {
        return Err(perr(format!(
            "stream ended inside a frame of type {kind} ({got} of {len} payload bytes)"
        )));
    }
    Message::from_parts(kind, &payload).map(Some)
}

/// Fill `buf` as far as the stream allows; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading an agent protocol frame", e)),
        }
    }
    Ok(done)
}

/// Write one message as a single frame and flush.
pub fn write_message<W: Write>(w: &mut W, msg: &Message) -> Result<()> {
    let frame = msg.encode()?;
    w.write_all(&frame)
        .and_then(|_| w.flush())
        .map_err(|e| Error::io(format!("writing a {} frame", msg.name()), e))
}

/// Check the peer's Hello against ours; `peer` names the other side for the message.
pub fn check_hello(msg: &Message, peer: &str) -> Result<()> {
    match msg {
        Message::Hello { version } if *version == PROTOCOL_VERSION => Ok(()),
        Message::Hello { version } => Err(perr(format!(
            "{peer} speaks protocol version {version}, this side speaks {PROTOCOL_VERSION}"
        ))),
        other => Err(perr(format!("{peer} sent {} before Hello", other.name()))),
    }
}

pub mod session;

#[cfg(test)]
mod tests;
