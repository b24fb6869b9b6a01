//! The guest agent and the isolation probe.
