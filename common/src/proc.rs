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

/// CPU time `pid` has used so far, all its threads together, in nanoseconds: (user,
/// kernel). A KVM or TCG vCPU thread's guest time counts as user time.
pub fn cpu_time_ns(pid: i32) -> Option<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // rest starts at field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((ticks_to_ns(utime), ticks_to_ns(stime)))
}

/// Clock ticks (USER_HZ, the unit of /proc/PID/stat and cpuacct.stat) in nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    // SAFETY: sysconf has no memory effects.
    let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as u64,
        _ => 100,
    };
    ticks.saturating_mul(1_000_000_000) / hz
}

/// The resident memory of `pid` in bytes (the second field of /proc/PID/statm, in pages).
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(u64::try_from(page).unwrap_or(4096)))
}

/// Size and resident bytes of each memory mapping of `pid` (from /proc/PID/smaps).
pub fn mappings(pid: i32) -> Option<Vec<(u64, u64)>> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(parse_smaps(&smaps))
}

fn parse_smaps(smaps: &str) -> Vec<(u64, u64)> {
    let kib = |l: &str, key: &str| -> Option<u64> {
        l.strip_prefix(key)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse::<u64>()
            .ok()
            .map(|v| v * 1024)
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    for line in smaps.lines() {
        if let Some(size) = kib(line, "Size:") {
            out.push((size, 0));
        } else if let (Some(rss), Some(last)) = (kib(line, "Rss:"), out.last_mut()) {
            last.1 = rss;
        }
    }
    out
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
    fn smaps_gives_each_mapping_its_size_and_rss() {
        let smaps = "7f00-7f10 rw-p 00000000 00:00 0\nSize:               64 kB\nKernelPageSize:        4 kB\nRss:                  8 kB\nPss:      8 kB\n\
                     7f20-7f30 r--p 00000000 00:00 0 /x\nSize:        1048576 kB\nRss:   524288 kB\n";
        assert_eq!(
            parse_smaps(smaps),
            vec![(64 << 10, 8 << 10), (1 << 30, 512 << 20)]
        );
        let own = mappings(std::process::id() as i32).expect("own smaps");
        assert!(own.iter().any(|(_, rss)| *rss > 0));
    }

    #[test]
    fn parses_start_time_with_odd_comm() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_start_time(stat), Some(123456));
    }

    #[test]
    fn own_cpu_time_and_rss_are_read() {
        let me = std::process::id() as i32;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let (user, kernel) = cpu_time_ns(me).expect("own stat");
        assert!(user + kernel > 0);
        assert!(rss_bytes(me).expect("own statm") > 4096);
        assert_eq!(cpu_time_ns(-1), None);
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
