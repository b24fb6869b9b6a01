//! The x86 bzImage format: the setup header, and the compressed vmlinux payload inside it.
//!
//! A bzImage is real-mode setup code followed by a protected-mode decompressor that carries
//! the kernel (an ELF "vmlinux", plus relocations) as a compressed payload. Boot protocol
//! 2.08+ records where that payload lies; its first bytes tell the compressor.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::decompress::{self, Compression};
use crate::error::{MicrovmError, Result};

/// Offset of the "HdrS" magic in a bzImage.
pub const HDRS_OFFSET: usize = 0x202;

/// The fields of the setup header this crate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version, e.g. 0x020f.
    pub version: u16,
    pub setup_sects: u8,
    /// Start of the protected-mode code in the file.
    pub protected_mode_offset: usize,
    /// Payload position relative to the protected-mode code (protocol 2.08+).
    pub payload_offset: u32,
    pub payload_length: u32,
    /// The version string the image carries ("6.1.0-26-cloud-amd64 (debian-kernel@…) #1 …").
    pub kernel_version: Option<String>,
}

impl SetupHeader {
    /// The kernel release: the first word of the version string.
    pub fn release(&self) -> Option<String> {
        self.kernel_version
            .as_deref()
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_string)
    }
}

/// True when `head` (at least 0x206 bytes of a file) carries the bzImage "HdrS" magic.
pub fn is_bzimage(head: &[u8]) -> bool {
    head.get(HDRS_OFFSET..HDRS_OFFSET + 4) == Some(b"HdrS")
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Parses the setup header from the start of a bzImage (the first 32 KiB are plenty).
pub fn parse_setup_header(head: &[u8]) -> std::result::Result<SetupHeader, String> {
    if !is_bzimage(head) {
        return Err("no \"HdrS\" magic at 0x202".into());
    }
    let version = u16_at(head, 0x206).ok_or("setup header truncated")?;
    let setup_sects = match head.get(0x1f1).copied().ok_or("setup header truncated")? {
        // Boot protocol: 0 means the historical 4 sectors.
        0 => 4,
        n => n,
    };
    let (payload_offset, payload_length) = if version >= 0x0208 {
        (
            u32_at(head, 0x248).ok_or("setup header truncated")?,
            u32_at(head, 0x24c).ok_or("setup header truncated")?,
        )
    } else {
        (0, 0)
    };
    // kernel_version (0x20e) points at a NUL-terminated string, 0x200 bytes before its value.
    let kernel_version = u16_at(head, 0x20e)
        .filter(|&p| p != 0)
        .and_then(|p| head.get(p as usize + 0x200..))
        .map(|s| &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len().min(256))])
        .filter(|s| !s.is_empty() && s.iter().all(|b| b.is_ascii_graphic() || *b == b' '))
        .map(|s| String::from_utf8_lossy(s).into_owned());
    Ok(SetupHeader {
        version,
        setup_sects,
        protected_mode_offset: (setup_sects as usize + 1) * 512,
        payload_offset,
        payload_length,
        kernel_version,
    })
}

/// What [`extract_vmlinux`] found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub compression: Compression,
    pub payload_bytes: u64,
    pub vmlinux_bytes: u64,
    pub release: Option<String>,
}

fn unpack_err(path: &Path, reason: impl Into<String>) -> MicrovmError {
    MicrovmError::Unpack {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

/// Decompresses the payload of the bzImage in `image` (the whole file) into `out`.
/// `path` only names the image in errors.
pub fn decompress_payload<W: Write>(image: &[u8], path: &Path, out: &mut W) -> Result<Extracted> {
    let hdr =
        parse_setup_header(image).map_err(|r| unpack_err(path, format!("not a bzImage: {r}")))?;
    if hdr.version < 0x0208 {
        return Err(unpack_err(
            path,
            format!(
                "boot protocol {:#06x} predates 2.08 and does not locate its payload",
                hdr.version
            ),
        ));
    }
    let start = hdr.protected_mode_offset + hdr.payload_offset as usize;
    let end = start + hdr.payload_length as usize;
    let payload = image.get(start..end).ok_or_else(|| {
        unpack_err(
            path,
            format!(
                "payload {start:#x}..{end:#x} lies outside the {}-byte image",
                image.len()
            ),
        )
    })?;
    if payload.len() < 8 {
        return Err(unpack_err(path, "payload is empty"));
    }
    let compression = Compression::detect(payload).ok_or_else(|| {
        unpack_err(
            path,
            format!(
                "unknown payload compression (first bytes {:02x?})",
                &payload[..6]
            ),
        )
    })?;
    // The kernel build appends the decompressed size as a little-endian u32. For gzip that is
    // the stream's own ISIZE trailer; for every other compressor it follows the stream.
    let (tail, size_bytes) = payload.split_at(payload.len() - 4);
    let expected = u32::from_le_bytes(size_bytes.try_into().expect("4 bytes"));
    let stream = if compression == Compression::Gzip {
        payload
    } else {
        tail
    };

    let mut head = [0u8; 4];
    let mut checked = ElfCheck {
        out,
        head: &mut head,
        seen: 0,
    };
    let written = decompress::decompress_to(compression, stream, &mut checked).map_err(|e| {
        unpack_err(
            path,
            format!("decompressing the {compression} payload: {e}"),
        )
    })?;
    if &head != b"\x7fELF" {
        return Err(unpack_err(
            path,
            format!("the {compression} payload did not decompress to an ELF vmlinux"),
        ));
    }
    if written as u32 != expected {
        return Err(unpack_err(
            path,
            format!("the payload decompressed to {written} bytes, the image says {expected}"),
        ));
    }
    Ok(Extracted {
        compression,
        payload_bytes: payload.len() as u64,
        vmlinux_bytes: written,
        release: hdr.release(),
    })
}

/// A writer that remembers the first four bytes that pass through it.
struct ElfCheck<'a, W> {
    out: &'a mut W,
    head: &'a mut [u8; 4],
    seen: usize,
}

impl<W: Write> Write for ElfCheck<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        let take = (4 - self.seen).min(n);
        self.head[self.seen..self.seen + take].copy_from_slice(&buf[..take]);
        self.seen += take;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Decompresses the bzImage at `bzimage` into an ELF vmlinux at `out`, atomically: the file
/// appears complete or not at all, and nothing is left behind on error.
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<Extracted> {
    let image = std::fs::read(bzimage)
        .map_err(|e| MicrovmError::io(format!("read {}", bzimage.display()), e))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".vmlinux-")
        .tempfile_in(dir)
        .map_err(|e| {
            MicrovmError::io(format!("create a temporary file in {}", dir.display()), e)
        })?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let info = decompress_payload(&image, bzimage, &mut w)?;
    w.flush()
        .map_err(|e| MicrovmError::io(format!("write {}", tmp.path().display()), e))?;
    drop(w);
    tmp.as_file()
        .sync_all()
        .map_err(|e| MicrovmError::io(format!("sync {}", tmp.path().display()), e))?;
    set_mode(tmp.as_file(), 0o644)?;
    tmp.persist(out)
        .map_err(|e| MicrovmError::io(format!("rename into {}", out.display()), e.error))?;
    Ok(info)
}

fn set_mode(f: &File, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| MicrovmError::io("chmod a temporary file", e))
}

/// Reads the first `n` bytes of a file (fewer if it is shorter).
pub(crate) fn read_head(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut buf = Vec::with_capacity(n);
    Read::take(&mut f, n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}
