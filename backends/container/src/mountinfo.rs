//! /proc/self/mountinfo: which mount holds a path, its propagation, and the host's cgroup
//! hierarchies.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
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
            name: name.to_string(),
            options: options.join(","),
        });
    }
    out
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
    fn lists_v1_hierarchies_with_controllers() {
        let h = v1_hierarchies(&parse(SAMPLE));
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name, "systemd");
        assert_eq!(h[0].options, "xattr,name=systemd");
        assert_eq!(h[1].name, "cpu,cpuacct");
        assert_eq!(h[1].options, "cpu,cpuacct");
    }
}
