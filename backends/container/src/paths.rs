//! Paths inside the rootfs: joining a container path onto the host rootfs without letting
//! symlinks in the rootfs point outside it.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// Map `path` (as the container sees it) to a host path under `root`, following symlinks that
/// exist as the container would (absolute targets restart at `root`, `..` stops at `root`).
/// Components that do not exist yet are appended as they are, so the result can be created.
pub fn join_in_root(root: &Path, path: &Path) -> PathBuf {
    let mut todo: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut cur = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.components().next() {
            None | Some(Component::RootDir) | Some(Component::CurDir) => continue,
            Some(Component::ParentDir) => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let next = cur.join(&part);
        let host = root.join(&next);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() && links < 40 => {
                links += 1;
                let Ok(target) = fs::read_link(&host) else {
                    cur = next;
                    continue;
                };
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                todo.extend(
                    target
                        .components()
                        .rev()
                        .map(|c| PathBuf::from(c.as_os_str())),
                );
            }
            _ => cur = next,
        }
    }
    root.join(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("../../../../etc", root.join("escape")).unwrap();
        assert_eq!(
            join_in_root(root, Path::new("/lib/x")),
            root.join("usr/lib/x")
        );
        assert_eq!(
            join_in_root(root, Path::new("/escape/passwd")),
            root.join("etc/passwd")
        );
        assert_eq!(join_in_root(root, Path::new("/a/../../b")), root.join("b"));
        assert_eq!(
            join_in_root(root, Path::new("/new/dir")),
            root.join("new/dir")
        );
    }

    #[test]
    fn symlink_loops_end() {
        let tmp = tempfile::tempdir().unwrap();
        symlink("/loop", tmp.path().join("loop")).unwrap();
        let p = join_in_root(tmp.path(), Path::new("/loop/x"));
        assert!(p.starts_with(tmp.path()));
    }
}
