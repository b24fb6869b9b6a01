//! Tests that cannot run on a host say so in the test output, and under CI as root they may
//! not skip at all: a skipped test would count as passed.

use std::io::Write;

/// Whether this is a CI run as root, where a test must run rather than skip.
pub fn must_run() -> bool {
    must_run_given(
        std::env::var("CI").ok().as_deref(),
        nix::unistd::geteuid().is_root(),
    )
}

/// The rule of [`must_run`], free of the process environment.
pub fn must_run_given(ci: Option<&str>, is_root: bool) -> bool {
    ci == Some("true") && is_root
}

/// The running test's name: libtest names each test's thread after it.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("test")
        .to_string()
}

/// Report that `test` is skipped for `reason` on stderr (libtest does not capture a raw
/// write), or panic when [`must_run`].
pub fn skip_named(test: &str, reason: &str) {
    skip_or_panic(must_run(), test, reason);
}

fn skip_or_panic(must_run: bool, test: &str, reason: &str) {
    if must_run {
        panic!("{test} would be skipped under CI as root: {reason}");
    }
    say(test, reason);
}

/// [`skip_named`] for the current test.
pub fn skip(reason: &str) {
    skip_named(&current_test(), reason);
}

/// A skip that is legitimate even in CI: the host lacks hardware the test needs (hardware
/// KVM). Still reported.
pub fn skip_for_hardware(reason: &str) {
    say(&current_test(), reason);
}

/// A test that does not apply to the configuration it runs in (e.g. one about qemu's own
/// process while the suite drives the built-in VMM). Reported, never a failure.
pub fn not_applicable(reason: &str) {
    say(&current_test(), reason);
}

fn say(test: &str, reason: &str) {
    let _ = std::io::stderr().write_all(format!("skipped: {test}: {reason}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ci_as_root_must_run() {
        assert!(must_run_given(Some("true"), true));
        assert!(!must_run_given(Some("true"), false));
        assert!(!must_run_given(None, true));
        assert!(!must_run_given(Some("1"), true));
    }

    #[test]
    #[should_panic(expected = "would be skipped under CI as root: no busybox")]
    fn a_skip_that_must_run_panics() {
        skip_or_panic(true, "t", "no busybox");
    }

    #[test]
    fn a_skip_elsewhere_returns() {
        skip_or_panic(false, "t", "no busybox");
    }
}
