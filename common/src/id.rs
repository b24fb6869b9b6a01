use crate::{Error, Result};

/// Longest accepted container id: it becomes a directory name in the state root and a cgroup
/// directory name, and a file name may have at most NAME_MAX (255) bytes.
pub const MAX_ID_LEN: usize = 255;

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
        return Err(Error::InvalidId {
            id: crate::text::cut(id, 40),
            reason: format!(
                "{} bytes long, more than {MAX_ID_LEN} (it names a directory and a cgroup)",
                id.len()
            ),
        });
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
        validate(&"a".repeat(255)).unwrap();
        let err = validate(&"a".repeat(300)).unwrap_err().to_string();
        assert!(err.contains("300 bytes long, more than 255"), "{err}");
        assert!(err.len() < 200, "{err}");
    }
}
