//! Where isobox keeps what it downloads or builds once: provisioned kernels, caches.

use std::path::PathBuf;

/// The data directory: `$ISOBOX_DATA_DIR`, else `/var/lib/isobox` for root, else
/// `$XDG_DATA_HOME/isobox`, else `~/.local/share/isobox`.
pub fn data_dir() -> PathBuf {
    data_dir_from(
        std::env::var_os("ISOBOX_DATA_DIR").map(PathBuf::from),
        nix::unistd::geteuid().is_root(),
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// The rule behind [`data_dir`], free of the process environment so it can be tested.
pub fn data_dir_from(
    explicit: Option<PathBuf>,
    is_root: bool,
    xdg_data_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> PathBuf {
    if let Some(dir) = explicit.filter(|d| !d.as_os_str().is_empty()) {
        return dir;
    }
    if is_root {
        return PathBuf::from("/var/lib/isobox");
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = xdg_data_home.filter(|d| d.is_absolute()) {
        return xdg.join("isobox");
    }
    if let Some(home) = home.filter(|d| d.is_absolute()) {
        return home.join(".local/share/isobox");
    }
    std::env::temp_dir().join(format!("isobox-{}", nix::unistd::geteuid()))
}

/// The directory of cached guest kernels under a data directory.
pub fn kernels_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("kernels")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_precedence() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            data_dir_from(p("/d"), true, p("/x"), p("/h")),
            PathBuf::from("/d")
        );
        assert_eq!(
            data_dir_from(None, true, p("/x"), p("/h")),
            PathBuf::from("/var/lib/isobox")
        );
        assert_eq!(
            data_dir_from(None, false, p("/x"), p("/h")),
            PathBuf::from("/x/isobox")
        );
        assert_eq!(
            data_dir_from(None, false, p("rel"), p("/h")),
            PathBuf::from("/h/.local/share/isobox")
        );
        assert_eq!(
            data_dir_from(p(""), false, None, p("/h")),
            PathBuf::from("/h/.local/share/isobox")
        );
    }
}
