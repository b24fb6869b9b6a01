//! A writer for cpio "newc" archives, the format the Linux kernel unpacks as an initramfs.
//!
//! Each entry is a 110-byte ASCII header ("070701" and thirteen 8-digit hex fields), the
//! NUL-terminated name padded to a multiple of four, then the data padded the same way. The
//! archive ends with an entry named "TRAILER!!!".

use std::io::{self, Read, Write};

/// The file type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFIFO: u32 = 0o010000;

/// The kernel refuses names of PATH_MAX or more.
const NAME_MAX_BYTES: usize = 4095;

/// The metadata of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Type and permission bits, as in `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    /// Device number of a character or block device node.
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

impl Meta {
    pub fn new(mode: u32) -> Meta {
        Meta {
            mode,
            ..Meta::default()
        }
    }
}

/// Streams entries into a newc archive. Every entry gets its own inode number and a link
/// count of one, so hard links are stored as separate copies (what the kernel then creates).
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
    entries: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
            entries: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Entries written so far (the trailer not counted).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    fn header(&mut self, name: &[u8], meta: &Meta, nlink: u32, size: u64) -> io::Result<()> {
        if name.is_empty() || name.contains(&0) || name.len() > NAME_MAX_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio: bad entry name {:?}", String::from_utf8_lossy(name)),
            ));
        }
        let size32 = u32::try_from(size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cpio: {} is {size} bytes; newc stores at most 4 GiB per file",
                    String::from_utf8_lossy(name)
                ),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let fields = [
            ino,
            meta.mode,
            meta.uid,
            meta.gid,
            nlink,
            meta.mtime,
            size32,
            0, // devmajor: of the file system holding the file, irrelevant here
            0, // devminor
            meta.rdev_major,
            meta.rdev_minor,
            name.len() as u32 + 1,
            0, // check: only for the "crc" variant
        ];
        let mut h = String::with_capacity(110);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08X}"));
        }
        self.put(h.as_bytes())?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    /// A directory (`meta.mode` permission bits; the type is set here).
    pub fn dir(&mut self, name: &[u8], meta: Meta) -> io::Result<()> {
        let meta = Meta {
            mode: S_IFDIR | (meta.mode & !S_IFMT),
            ..meta
        };
        self.header(name, &meta, 2, 0)?;
        self.entries += 1;
        Ok(())
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &[u8], target: &[u8], meta: Meta) -> io::Result<()> {
        let meta = Meta {
            mode: S_IFLNK | 0o777,
            ..meta
        };
        self.header(name, &meta, 1, target.len() as u64)?;
        self.put(target)?;
        self.pad()?;
        self.entries += 1;
        Ok(())
    }

    /// A device node or FIFO: `meta.mode` must carry S_IFCHR, S_IFBLK or S_IFIFO.
    pub fn node(&mut self, name: &[u8], meta: Meta) -> io::Result<()> {
        match meta.mode & S_IFMT {
            S_IFCHR | S_IFBLK | S_IFIFO => {}
            t => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cpio: type {t:o} is not a device node or FIFO"),
                ))
            }
        }
        self.header(name, &meta, 1, 0)?;
        self.entries += 1;
        Ok(())
    }

    /// A regular file of exactly `size` bytes read from `data`. A source that yields a
    /// different length (a file changed while it was read) is an error.
    pub fn file(
        &mut self,
        name: &[u8],
        meta: Meta,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let meta = Meta {
            mode: S_IFREG | (meta.mode & !S_IFMT),
            ..meta
        };
        self.header(name, &meta, 1, size)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        self.written += copied;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "cpio: {} shrank while it was read ({copied} of {size} bytes)",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        self.pad()?;
        self.entries += 1;
        Ok(())
    }

    /// Writes the trailer and returns the underlying writer (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.header(b"TRAILER!!!", &Meta::default(), 1, 0)?;
        Ok(self.out)
    }
}
