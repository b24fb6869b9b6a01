use crate::{Error, Result};

/// Longest accepted container id; it becomes a directory and a cgroup name.
pub const MAX_ID_LEN: usize = 1024;

/// Check a container id the way runc does: non-empty, no path separators, no `.`/`..`,
/// only `[A-Za-z0-9_+\-.]`.
pub fn validate(id: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidId {
            id: id.to_string(),
            reason: reason.to_string(),
        })
    };
    if id.is_empty() {
        return bad("must not be empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("longer than 1024 bytes");
    }
    if id == "." || id == ".." {
        return bad("must not be \".\" or \"..\"");
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return Err(Error::InvalidId {
            id: id.to_string(),
            reason: format!("character {c:?} not allowed (use letters, digits, _ + - .)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_runc_style_ids() {
        for id in ["a", "web-1", "x_y.z+1", "0123456789abcdef"] {
            validate(id).unwrap();
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for id in ["", ".", "..", "a/b", "../x", "sp ace", "ü", "a\nb"] {
            let err = validate(id).unwrap_err().to_string();
            assert!(err.starts_with("container id"), "{id:?}: {err}");
        }
        assert!(validate(&"a".repeat(1025)).is_err());
    }
}
