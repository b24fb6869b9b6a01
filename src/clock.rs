//! RFC 3339 UTC timestamps (state's `created`, the log file's `time`), without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as `YYYY-MM-DDTHH:MM:SS[.nnnnnnnnn]Z`; nanoseconds only when `nanos`.
pub fn rfc3339(t: SystemTime, nanos: bool) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, rem) = ((since.as_secs() / 86400) as i64, since.as_secs() % 86400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let fraction = if nanos {
        format!(".{:09}", since.subsec_nanos())
    } else {
        String::new()
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn known_instants() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc3339(at(0), false), "1970-01-01T00:00:00Z");
        // 2026-12-01T18:27:36Z, the example in runc's log format.
        assert_eq!(rfc3339(at(1_796_149_656), false), "2026-12-01T18:27:36Z");
        // A leap day and the last second of a year.
        assert_eq!(rfc3339(at(951_782_400), false), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_704_067_199), false), "2023-12-31T23:59:59Z");
        let t = at(1_796_149_656) + Duration::from_nanos(5);
        assert_eq!(rfc3339(t, true), "2026-12-01T18:27:36.000000005Z");
    }
}
