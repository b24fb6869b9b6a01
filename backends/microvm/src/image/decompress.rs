//! The compressors found in Debian packages and in bzImage payloads, told apart by magic.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// A compression format, as recognised by its leading magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    /// The legacy `.lzma` ("lzma_alone") format used by `CONFIG_KERNEL_LZMA`.
    Lzma,
    Zstd,
    /// The LZ4 legacy frame (`lz4 -l`) used by `CONFIG_KERNEL_LZ4`.
    Lz4Legacy,
    Bzip2,
    Lzo,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lzma => "lzma",
            Compression::Zstd => "zstd",
            Compression::Lz4Legacy => "LZ4 (legacy frame)",
            Compression::Bzip2 => "bzip2",
            Compression::Lzo => "lzo",
        })
    }
}

pub const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// Each legacy LZ4 block decompresses to at most 8 MiB.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

impl Compression {
    /// Recognises a compressor from the first bytes of its output.
    pub fn detect(head: &[u8]) -> Option<Compression> {
        let starts = |m: &[u8]| head.starts_with(m);
        if starts(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Compression::Xz)
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if starts(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
            Some(Compression::Lz4Legacy)
        } else if starts(b"BZh") {
            Some(Compression::Bzip2)
        } else if starts(&[0x89, b'L', b'Z', b'O']) {
            Some(Compression::Lzo)
        } else if starts(&[0x5d, 0x00, 0x00]) {
            // lzma_alone: properties byte 0x5d (lc=3 lp=0 pb=2), then a little-endian
            // dictionary size whose low bytes are zero for the usual power-of-two sizes.
            Some(Compression::Lzma)
        } else {
            None
        }
    }

    /// The compression of a Debian package member, from its file name (`data.tar.xz`).
    pub fn from_member_name(name: &str) -> Result<Option<Compression>, String> {
        match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("tar") => Ok(None),
            Some("gz") => Ok(Some(Compression::Gzip)),
            Some("xz") => Ok(Some(Compression::Xz)),
            Some("zst") => Ok(Some(Compression::Zstd)),
            Some("lzma") => Ok(Some(Compression::Lzma)),
            _ => Err(format!("unsupported package member compression: {name}")),
        }
    }
}

/// A streaming decoder for `c` over `input`. LZ4 legacy frames are decoded block by block.
pub fn decoder<'a, R: BufRead + 'a>(c: Compression, input: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new(input)),
        Compression::Lzma => {
            let stream =
                xz2::stream::Stream::new_lzma_decoder(u64::MAX).map_err(io::Error::other)?;
            Box::new(xz2::bufread::XzDecoder::new_stream(input, stream))
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input)?;
            // The kernel compresses with `zstd -22 --ultra`, which may use windows past the
            // decoder's default limit.
            d.window_log_max(31)?;
            Box::new(d)
        }
        Compression::Lz4Legacy => Box::new(Lz4LegacyReader::new(input)),
        Compression::Bzip2 | Compression::Lzo => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{c} is not supported; supported: gzip, xz, lzma, zstd, lz4"),
            ))
        }
    })
}

/// Decompresses all of `input` into `out`, returning the number of bytes written.
pub fn decompress_to<R: BufRead, W: Write>(
    c: Compression,
    input: R,
    out: &mut W,
) -> io::Result<u64> {
    let mut d = decoder(c, input)?;
    io::copy(&mut d, out)
}

/// Reads an LZ4 legacy frame: a magic, then blocks of `[u32 LE compressed size][raw block]`.
/// A repeated magic (concatenated frames) is skipped; end of input ends the stream.
struct Lz4LegacyReader<R> {
    input: R,
    started: bool,
    block: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
}

impl<R: BufRead> Lz4LegacyReader<R> {
    fn new(input: R) -> Self {
        Lz4LegacyReader {
            input,
            started: false,
            block: Vec::new(),
            out: Vec::new(),
            pos: 0,
        }
    }

    /// Reads a little-endian u32, or None at a clean end of input.
    fn read_u32(&mut self) -> io::Result<Option<u32>> {
        let mut b = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.input.read(&mut b[got..])? {
                0 if got == 0 => return Ok(None),
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "LZ4: truncated block size",
                    ))
                }
                n => got += n,
            }
        }
        Ok(Some(u32::from_le_bytes(b)))
    }

    /// Decodes the next block into `self.out`; false at the end of the stream.
    fn next_block(&mut self) -> io::Result<bool> {
        if !self.started {
            match self.read_u32()? {
                Some(LZ4_LEGACY_MAGIC) => self.started = true,
                _ => return Err(invalid("LZ4: no legacy frame magic")),
            }
        }
        let size = loop {
            match self.read_u32()? {
                None => return Ok(false),
                Some(LZ4_LEGACY_MAGIC) => continue,
                Some(size) => break size as usize,
            }
        };
        if size > lz4_flex::block::get_maximum_output_size(LZ4_LEGACY_BLOCK) {
            return Err(invalid(format!(
                "LZ4: block of {size} bytes is larger than any 8 MiB block compresses to"
            )));
        }
        self.block.resize(size, 0);
        self.input.read_exact(&mut self.block).map_err(|e| {
            io::Error::new(e.kind(), format!("LZ4: truncated block of {size} bytes"))
        })?;
        self.out.resize(LZ4_LEGACY_BLOCK, 0);
        let n = lz4_flex::block::decompress_into(&self.block, &mut self.out)
            .map_err(|e| invalid(format!("LZ4: corrupt block: {e}")))?;
        self.out.truncate(n);
        self.pos = 0;
        Ok(true)
    }
}

impl<R: BufRead> Read for Lz4LegacyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an LZ4 legacy frame the way `lz4 -l` does.
    pub(crate) fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(LZ4_LEGACY_BLOCK) {
            let c = lz4_flex::block::compress(chunk);
            out.extend((c.len() as u32).to_le_bytes());
            out.extend(c);
        }
        out
    }

    #[test]
    fn lz4_legacy_round_trip_over_several_blocks() {
        let data: Vec<u8> = (0..(LZ4_LEGACY_BLOCK * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let frame = lz4_legacy(&data);
        assert_eq!(Compression::detect(&frame), Some(Compression::Lz4Legacy));
        let mut out = Vec::new();
        decompress_to(Compression::Lz4Legacy, &frame[..], &mut out).unwrap();
        assert!(out == data, "LZ4 output differs from the input");
    }

    #[test]
    fn lz4_legacy_rejects_truncation() {
        let frame = lz4_legacy(b"hello hello hello hello hello hello");
        let mut out = Vec::new();
        let e =
            decompress_to(Compression::Lz4Legacy, &frame[..frame.len() - 3], &mut out).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn lz4_cli_legacy_output_decodes() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i / 3).to_le_bytes())
            .collect();
        let Ok(mut child) = std::process::Command::new("lz4")
            .args(["-l", "-c", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            isobox_common::skip::skip("lz4 command not installed");
            return;
        };
        let mut stdin = child.stdin.take().unwrap();
        let d2 = data.clone();
        let w = std::thread::spawn(move || stdin.write_all(&d2));
        let out = child.wait_with_output().unwrap();
        w.join().unwrap().unwrap();
        assert!(out.status.success());
        let mut dec = Vec::new();
        decompress_to(Compression::Lz4Legacy, &out.stdout[..], &mut dec).unwrap();
        assert!(dec == data);
    }

    #[test]
    fn detects_and_refuses_unsupported() {
        assert_eq!(Compression::detect(b"BZh91AY"), Some(Compression::Bzip2));
        assert_eq!(Compression::detect(b"\x7fELF"), None);
        let e = decoder(Compression::Bzip2, &b"BZh9"[..]).err().unwrap();
        assert!(e.to_string().contains("not supported"));
        assert_eq!(
            Compression::from_member_name("data.tar.xz"),
            Ok(Some(Compression::Xz))
        );
        assert!(Compression::from_member_name("data.tar.bz2").is_err());
    }
}
