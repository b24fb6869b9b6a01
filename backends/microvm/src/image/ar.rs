//! A reader for Unix `ar` archives, the outer layer of a Debian package.
//!
//! Only the common format is needed: a `!<arch>\n` magic, then 60-byte member headers each
//! followed by the member's data padded to an even offset. GNU long names (`//` table) and BSD
//! `#1/` names are resolved so that foreign archives still list correctly.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{MicrovmError, Result};

const MAGIC: &[u8; 8] = b"!<arch>\n";
const HEADER_LEN: u64 = 60;

/// One member of an ar archive: its name and where its data lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArMember {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// Lists the members of the ar archive at `path`.
pub fn list(path: &Path) -> Result<Vec<ArMember>> {
    let file =
        File::open(path).map_err(|e| MicrovmError::io(format!("open {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| MicrovmError::io(format!("stat {}", path.display()), e))?
        .len();
    list_from(BufReader::new(file), len, path)
}

/// Opens the data of one member for streaming reads.
pub fn open_member(path: &Path, member: &ArMember) -> Result<std::io::Take<BufReader<File>>> {
    let mut file =
        File::open(path).map_err(|e| MicrovmError::io(format!("open {}", path.display()), e))?;
    file.seek(SeekFrom::Start(member.offset))
        .map_err(|e| MicrovmError::io(format!("seek in {}", path.display()), e))?;
    Ok(BufReader::with_capacity(256 * 1024, file).take(member.size))
}

fn bad(path: &Path, reason: impl Into<String>) -> MicrovmError {
    MicrovmError::Unpack {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

fn list_from<R: Read + Seek>(mut r: R, len: u64, path: &Path) -> Result<Vec<ArMember>> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| bad(path, "not an ar archive: shorter than its magic"))?;
    if &magic != MAGIC {
        return Err(bad(path, "not an ar archive: no !<arch> magic"));
    }
    let mut members = Vec::new();
    let mut long_names: Vec<u8> = Vec::new();
    let mut pos = 8u64;
    while pos < len {
        if len - pos < HEADER_LEN {
            // A lone newline pad byte at the end is tolerated.
            if len - pos == 1 {
                break;
            }
            return Err(bad(
                path,
                format!("truncated member header at offset {pos}"),
            ));
        }
        let mut h = [0u8; HEADER_LEN as usize];
        r.read_exact(&mut h)
            .map_err(|e| bad(path, format!("reading member header at offset {pos}: {e}")))?;
        if &h[58..60] != b"`\n" {
            return Err(bad(
                path,
                format!("bad member header terminator at offset {pos}"),
            ));
        }
        let size = parse_decimal(&h[48..58])
            .ok_or_else(|| bad(path, format!("bad member size at offset {pos}")))?;
        let data = pos + HEADER_LEN;
        if size > len - data {
            return Err(bad(
                path,
                format!("member at offset {pos} claims {size} bytes past the end of the archive"),
            ));
        }
        let raw_name = String::from_utf8_lossy(&h[0..16]).trim_end().to_string();
        let (name, offset, size) = if raw_name == "//" {
            long_names = vec![0; size as usize];
            r.read_exact(&mut long_names)
                .map_err(|e| bad(path, format!("reading long-name table: {e}")))?;
            (raw_name, data, size)
        } else if let Some(n) = raw_name.strip_prefix("#1/") {
            // BSD: the name is stored at the start of the data.
            let n: u64 = n
                .parse()
                .map_err(|_| bad(path, format!("bad BSD name length in {raw_name:?}")))?;
            if n > size {
                return Err(bad(
                    path,
                    format!("BSD name of {n} bytes longer than its member"),
                ));
            }
            let mut name = vec![0; n as usize];
            r.read_exact(&mut name)
                .map_err(|e| bad(path, format!("reading BSD member name: {e}")))?;
            let name = String::from_utf8_lossy(&name)
                .trim_end_matches('\0')
                .to_string();
            (name, data + n, size - n)
        } else if let Some(idx) = raw_name
            .strip_prefix('/')
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        {
            let idx: usize = idx.parse().map_err(|_| bad(path, "bad long-name index"))?;
            let rest = long_names
                .get(idx..)
                .ok_or_else(|| bad(path, format!("long-name index {idx} outside the table")))?;
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let name = String::from_utf8_lossy(&rest[..end])
                .trim_end_matches('/')
                .to_string();
            (name, data, size)
        } else {
            // GNU ends short names with '/', Debian's dpkg does not.
            let name = if raw_name == "/" {
                raw_name
            } else {
                raw_name.trim_end_matches('/').to_string()
            };
            (name, data, size)
        };
        if name != "//" && name != "/" {
            members.push(ArMember { name, offset, size });
        }
        pos = data + size + (size & 1);
        r.seek(SeekFrom::Start(pos))
            .map_err(|e| bad(path, format!("seeking to offset {pos}: {e}")))?;
    }
    Ok(members)
}

fn parse_decimal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?.trim();
    if s.is_empty() {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(name: &str, size: usize) -> Vec<u8> {
        let h = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n",
            0, 0, 0, "100644"
        );
        assert_eq!(h.len(), 60);
        h.into_bytes()
    }

    #[test]
    fn lists_members_with_odd_padding() {
        let mut a = MAGIC.to_vec();
        a.extend(header("debian-binary", 4));
        a.extend(b"2.0\n");
        a.extend(header("odd/", 3));
        a.extend(b"abc\n");
        a.extend(header("last", 2));
        a.extend(b"xy");
        let m = list_from(Cursor::new(&a), a.len() as u64, Path::new("t.ar")).unwrap();
        let names: Vec<_> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["debian-binary", "odd", "last"]);
        assert_eq!(&a[m[1].offset as usize..][..3], b"abc");
        assert_eq!(&a[m[2].offset as usize..][..2], b"xy");
    }

    #[test]
    fn rejects_garbage_and_overlong_members() {
        let e = list_from(Cursor::new(b"hello world"), 11, Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("no !<arch> magic"), "{e}");
        let mut a = MAGIC.to_vec();
        a.extend(header("big", 1000));
        a.extend(b"short");
        let e = list_from(Cursor::new(&a), a.len() as u64, Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
    }
}
