//! The host↔guest agent wire protocol (see the guest crate for the agent side).
