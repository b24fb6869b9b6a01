//! Paths inside the rootfs: joining a container path onto the host rootfs without letting
//! symlinks in the rootfs point outside it.

pub use isobox_common::bundle::join_in_root;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

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
