//! The guest agent and the isolation probe.
pub mod probe;
