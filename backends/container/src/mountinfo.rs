//! /proc/self/mountinfo: which mount holds a path, its propagation, and the host's cgroup
//! hierarchies.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The directory of the file system mounted here (a cgroup mount's hierarchy root).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Optional fields (`shared:1`, `master:2`, …).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

/// Undo mountinfo's octal escapes (`\040` for a space; also tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (head, tail) = line.split_once(" - ")?;
    let fields: Vec<&str> = head.split(' ').collect();
    if fields.len() < 6 {
        return None;
    }
    let mut tail = tail.split(' ');
    Some(MountEntry {
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        optional: fields[6..].iter().map(|s| s.to_string()).collect(),
        fstype: tail.next()?.to_string(),
        source: unescape(tail.next()?),
        super_options: tail
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::to_string)
            .collect(),
    })
}

/// The current process's mounts.
pub fn read() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The mount that holds `path` (the last mounted one with the longest matching mount point).
pub fn containing<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .rev()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
}

/// A v1 cgroup hierarchy of the host: its directory name under /sys/fs/cgroup and the mount
/// options naming its controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub host_path: PathBuf,
    /// The cgroup of the hierarchy mounted at `host_path`.
    pub root: PathBuf,
    pub name: String,
    pub options: String,
}

/// The host's cgroup v1 hierarchies.
pub fn v1_hierarchies(mounts: &[MountEntry]) -> Vec<V1Hierarchy> {
    let mut out: Vec<V1Hierarchy> = Vec::new();
    for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
        let Some(name) = m.mount_point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let options: Vec<&str> = m
            .super_options
            .iter()
            .map(String::as_str)
            .filter(|o| !matches!(*o, "rw" | "ro" | "") && !o.starts_with("release_agent"))
            .collect();
        if out.iter().any(|h| h.name == name) {
            continue;
        }
        out.push(V1Hierarchy {
            host_path: m.mount_point.clone(),
            root: m.root.clone(),
            name: name.to_string(),
            options: options.join(","),
        });
    }
    out
}

/// The host directory of the calling process's own cgroup in one hierarchy, from the text
/// of /proc/self/cgroup: the hierarchy's `mount_point` (whose cgroup is `root`) joined with
/// the process's cgroup below `root`. `v1_options` are a v1 hierarchy's mount options (its
/// controllers, or name=…); None means the v2 hierarchy. None when the process's cgroup is
/// not below `root` (as seen from inside a cgroup namespace).
pub fn own_cgroup_dir(
    proc_cgroup: &str,
    mount_point: &Path,
    root: &Path,
    v1_options: Option<&str>,
) -> Option<PathBuf> {
    let path = proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let here = match v1_options {
            None => controllers.is_empty(),
            Some(opts) => {
                !controllers.is_empty()
                    && controllers
                        .split(',')
                        .all(|c| opts.split(',').any(|o| o == c))
            }
        };
        here.then(|| PathBuf::from(path))
    })?;
    Some(mount_point.join(path.strip_prefix(root).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_undone_also_at_the_end_of_a_field() {
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape("/tmp/dir\\040"), "/tmp/dir ");
        assert_eq!(unescape("/tmp/x\\09"), "/tmp/x\\09");
    }

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
40 22 0:40 / /mnt/with\\040space rw master:3 - tmpfs none rw
";

    #[test]
    fn parses_lines_and_escapes() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].mount_point, Path::new("/"));
        assert!(m[0].optional.iter().any(|o| o.starts_with("shared:")));
        assert_eq!(m[5].mount_point, Path::new("/mnt/with space"));
        assert_eq!(m[5].optional, ["master:3"]);
        assert_eq!(m[3].fstype, "cgroup");
    }

    #[test]
    fn finds_the_containing_mount() {
        let m = parse(SAMPLE);
        let c = containing(&m, Path::new("/sys/fs/cgroup/cpu,cpuacct/x")).unwrap();
        assert_eq!(c.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        let c = containing(&m, Path::new("/home/b/rootfs")).unwrap();
        assert_eq!(c.mount_point, Path::new("/"));
    }

    #[test]
    fn own_cgroup_dirs_per_hierarchy() {
        let proc = "12:pids:/isobox/c1\n4:cpu,cpuacct:/isobox/c1\n1:name=systemd:/user.slice\n0::/isobox/c1\n";
        let own =
            |mp: &str, root: &str, opts| own_cgroup_dir(proc, Path::new(mp), Path::new(root), opts);
        let cpu = own("/sys/fs/cgroup/cpu,cpuacct", "/", Some("cpu,cpuacct"));
        assert_eq!(
            cpu.unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/isobox/c1")
        );
        let systemd = own("/sys/fs/cgroup/systemd", "/", Some("xattr,name=systemd"));
        assert_eq!(
            systemd.unwrap(),
            Path::new("/sys/fs/cgroup/systemd/user.slice")
        );
        let v2 = own("/sys/fs/cgroup/unified", "/", None);
        assert_eq!(v2.unwrap(), Path::new("/sys/fs/cgroup/unified/isobox/c1"));
        // A hierarchy mounted from a cgroup below the root (as in a nested container).
        let nested = own("/sys/fs/cgroup/pids", "/isobox", Some("pids"));
        assert_eq!(nested.unwrap(), Path::new("/sys/fs/cgroup/pids/c1"));
        // Not below the mount's root, or no line for the hierarchy.
        assert_eq!(own("/sys/fs/cgroup/pids", "/other", Some("pids")), None);
        assert_eq!(own("/sys/fs/cgroup/memory", "/", Some("memory")), None);
        assert_eq!(
            own_cgroup_dir("0::/\n", Path::new("/x"), Path::new("/.."), None),
            None
        );
    }

    #[test]
    fn lists_v1_hierarchies_with_controllers() {
        let h = v1_hierarchies(&parse(SAMPLE));
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name, "systemd");
        assert_eq!(h[0].options, "xattr,name=systemd");
        assert_eq!(h[1].name, "cpu,cpuacct");
        assert_eq!(h[1].options, "cpu,cpuacct");
        assert_eq!(h[1].root, Path::new("/"));
    }
}
