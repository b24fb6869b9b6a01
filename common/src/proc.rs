//! Facts about host processes read from /proc: whether a pid is still the process we started.

use std::fs;

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or None
/// when there is no such process.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); starttime is field 22 → index 19.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The one-letter state of `pid` (R, S, Z, …), if it exists.
pub fn state_letter(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// True when `pid` exists, is not a zombie, and started at `start` — so a recycled pid is not
/// mistaken for the container's.
pub fn is_alive(pid: i32, start: u64) -> bool {
    pid > 0 && start_time(pid) == Some(start) && !matches!(state_letter(pid), Some('Z' | 'X'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_with_odd_comm() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_start_time(stat), Some(123456));
    }

    #[test]
    fn own_process_is_alive_and_recycled_pid_is_not() {
        let me = std::process::id() as i32;
        let st = start_time(me).expect("own stat");
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
        assert!(!is_alive(0, st));
    }
}
