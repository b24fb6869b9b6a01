//! The host's view of the guest's sessions. A guest is untrusted: every frame it sends passes
//! [`GuestSessions::accept`] before the host acts on it, which holds it to the protocol: frames
//! only for sessions the host opened and that have not ended, Started and Exit once each, no
//! output before Started, no frame type only the host may send, and no more data in flight
//! than the session's [`Window`] allows.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{Message, SessionId, MAX_SESSIONS, WINDOW, WORKLOAD};

/// Bytes of one session's data in one direction that were sent and not yet reported Consumed.
/// The sender reserves room before sending ([`Window::reserve`]); the receiving side's check of
/// a peer's data is [`Window::charge`], and Consumed is [`Window::release`].
#[derive(Debug, Default)]
pub struct Window {
    state: Mutex<WindowState>,
    room: Condvar,
}

#[derive(Debug, Default)]
struct WindowState {
    in_flight: usize,
    closed: bool,
}

impl Window {
    pub fn new() -> Arc<Window> {
        Arc::new(Window::default())
    }

    fn lock(&self) -> MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count `n` bytes the peer sent; an error when they go past [`WINDOW`].
    pub fn charge(&self, n: usize) -> Result<(), String> {
        let mut s = self.lock();
        match s.in_flight.checked_add(n) {
            Some(total) if total <= WINDOW => {
                s.in_flight = total;
                Ok(())
            }
            _ => Err(format!(
                "{n} bytes with {} already in flight exceed the {WINDOW}-byte window",
                s.in_flight
            )),
        }
    }

    /// Wait until there is room, then reserve up to `max` bytes to send; 0 once closed.
    /// Bytes reserved and not sent go back with [`Window::unreserve`].
    pub fn reserve(&self, max: usize) -> usize {
        let mut s = self.lock();
        while !s.closed && s.in_flight >= WINDOW {
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.closed {
            return 0;
        }
        let n = max.min(WINDOW - s.in_flight);
        s.in_flight += n;
        n
    }

    /// Give back reserved bytes that were not sent.
    pub fn unreserve(&self, n: usize) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(n);
        self.room.notify_all();
    }

    /// The receiver wrote `n` bytes out; an error when more than are in flight.
    pub fn release(&self, n: usize) -> Result<(), String> {
        let mut s = self.lock();
        if n > s.in_flight {
            return Err(format!(
                "{n} bytes reported consumed with only {} in flight",
                s.in_flight
            ));
        }
        s.in_flight -= n;
        self.room.notify_all();
        Ok(())
    }

    /// No more data goes this way: a sender waiting for room gets 0.
    pub fn close(&self) {
        self.lock().closed = true;
        self.room.notify_all();
    }

    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }
}

/// One open session's windows: `input` for Stdin (host to guest), `output` for Stdout and
/// Stderr (guest to host).
#[derive(Debug, Clone)]
pub struct Opened {
    pub id: SessionId,
    pub input: Arc<Window>,
    pub output: Arc<Window>,
}

#[derive(Debug)]
struct Tracked {
    started: bool,
    windows: Opened,
}

/// The sessions the host has open in one guest.
#[derive(Debug)]
pub struct GuestSessions {
    open: BTreeMap<SessionId, Tracked>,
    next: SessionId,
}

impl Default for GuestSessions {
    fn default() -> Self {
        GuestSessions {
            open: BTreeMap::new(),
            next: WORKLOAD + 1,
        }
    }
}

impl GuestSessions {
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, id: SessionId) -> Result<Opened, String> {
        if self.open.len() >= MAX_SESSIONS {
            return Err(format!("{MAX_SESSIONS} sessions are open already"));
        }
        if self.open.contains_key(&id) {
            return Err(format!("session {id} is open already"));
        }
        let windows = Opened {
            id,
            input: Window::new(),
            output: Window::new(),
        };
        self.open.insert(
            id,
            Tracked {
                started: false,
                windows: windows.clone(),
            },
        );
        Ok(windows)
    }

    /// Open the workload's session (once).
    pub fn open_workload(&mut self) -> Result<Opened, String> {
        self.insert(WORKLOAD)
    }

    /// Open a session under a fresh id (ids are never reused).
    pub fn open(&mut self) -> Result<Opened, String> {
        let id = self.next;
        let next = id
            .checked_add(1)
            .ok_or_else(|| "session ids are exhausted".to_string())?;
        let opened = self.insert(id)?;
        self.next = next;
        Ok(opened)
    }

    pub fn is_open(&self, id: SessionId) -> bool {
        self.open.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Forget a session the host gave up on; its windows close.
    pub fn forget(&mut self, id: SessionId) {
        if let Some(t) = self.open.remove(&id) {
            t.windows.input.close();
            t.windows.output.close();
        }
    }

    /// Check one frame from the guest (after the Hellos). An error describes the violation;
    /// the host then treats the guest as broken. An accepted Exit ends the session.
    pub fn accept(&mut self, msg: &Message) -> Result<(), String> {
        let name = msg.name();
        let Some(id) = msg.session() else {
            return match msg {
                Message::Hello { .. } => Err("guest agent sent a second Hello".into()),
                _ => Err(format!(
                    "guest agent sent {name}, which only the host sends"
                )),
            };
        };
        if matches!(
            msg,
            Message::Exec { .. }
                | Message::Stdin { .. }
                | Message::StdinEof { .. }
                | Message::Signal { .. }
                | Message::Resize { .. }
        ) {
            return Err(format!(
                "guest agent sent {name}, which only the host sends"
            ));
        }
        let Some(t) = self.open.get_mut(&id) else {
            return Err(format!(
                "guest agent sent {name} for session {id}, which is not open"
            ));
        };
        let why = |e: String| format!("guest agent: session {id}: {name}: {e}");
        match msg {
            Message::Started { .. } if t.started => {
                return Err(why("the session has started already".into()))
            }
            Message::Started { .. } => t.started = true,
            Message::Stdout { data, .. } | Message::Stderr { data, .. } => {
                if !t.started {
                    return Err(why("output before Started".into()));
                }
                t.windows.output.charge(data.len()).map_err(why)?;
            }
            Message::Consumed { bytes, .. } => {
                t.windows.input.release(*bytes as usize).map_err(why)?
            }
            Message::Exit { .. } => {
                if let Some(t) = self.open.remove(&id) {
                    t.windows.input.close();
                }
            }
            _ => {}
        }
        Ok(())
    }
}
