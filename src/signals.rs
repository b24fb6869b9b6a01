//! Signal names and numbers as `kill` accepts them: `TERM`, `SIGTERM`, `15`.

use anyhow::{bail, Result};
use nix::sys::signal::Signal;

pub fn parse(text: &str) -> Result<i32> {
    if let Ok(n) = text.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("signal {text:?}: number out of range 1-64");
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().unwrap_or(-1)
        };
        let n = libc::SIGRTMIN() + off;
        if off >= 0 && n <= libc::SIGRTMAX() {
            return Ok(n);
        }
    }
    match name.parse::<Signal>() {
        Ok(sig) => Ok(sig as i32),
        Err(_) => bail!("signal {text:?}: unknown signal name"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("sigusr1").unwrap(), 10);
        assert_eq!(parse("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse("0").is_err());
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("99").is_err());
    }
}
