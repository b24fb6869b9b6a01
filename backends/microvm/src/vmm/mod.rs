//! The built-in VMM on rust-vmm crates.
