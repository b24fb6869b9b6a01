//! The guest agent and the isolation probe.
pub mod agent;
pub mod probe;
