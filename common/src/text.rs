//! Config values inside error messages: an error is one line of bounded length, so a value
//! with a newline is escaped and a huge one is cut.

/// Longest part of one value that an error message shows.
pub const MAX_VALUE_CHARS: usize = 200;

/// Longest whole error message the CLI prints.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// `s` cut to its first `max` characters, with "…" when something was cut.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// A config value as an error shows it: quoted and escaped like `{:?}`, cut at
/// [`MAX_VALUE_CHARS`].
pub fn quote(s: &str) -> String {
    format!("{:?}", cut(s, MAX_VALUE_CHARS))
}

/// Like [`quote`], but a short value without control characters is shown as it is (paths,
/// PATH lists), so the common case reads naturally.
pub fn plain(s: &str) -> String {
    if s.chars().any(char::is_control) || s.chars().nth(MAX_VALUE_CHARS).is_some() {
        quote(s)
    } else {
        s.to_string()
    }
}

/// A path shown the way [`plain`] shows a string.
pub fn path(p: &std::path::Path) -> String {
    plain(&p.to_string_lossy())
}

/// The last safety net for a whole message: control characters escaped (so it stays one
/// line) and cut at [`MAX_MESSAGE_CHARS`].
pub fn one_line(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_MESSAGE_CHARS + 8));
    for c in msg.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    cut(&out, MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_values_and_marks_long_ones() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
        assert_eq!(cut("ééé", 2), "éé…");
    }

    #[test]
    fn quote_escapes_and_bounds() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let q = quote(&"x".repeat(500_000));
        assert!(q.chars().count() < MAX_VALUE_CHARS + 4, "{}", q.len());
        assert!(q.ends_with("…\""));
    }

    #[test]
    fn plain_leaves_ordinary_values_alone() {
        assert_eq!(plain("/usr/bin:/bin"), "/usr/bin:/bin");
        assert_eq!(plain("/a\n/b"), "\"/a\\n/b\"");
    }

    #[test]
    fn one_line_has_no_newline_and_a_bound() {
        let m = one_line(&format!("a\nb\r{}", "y".repeat(10_000)));
        assert!(!m.contains('\n') && !m.contains('\r'));
        assert!(m.starts_with("a\\nb\\r"));
        assert!(m.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
