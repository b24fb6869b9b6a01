//! The bzImage unpacker on synthetic images: a small ELF compressed with every supported
//! format, wrapped in a setup header the way the kernel build lays it out.

use std::io::Write;
use std::path::Path;

use isobox_microvm::image::{
    extract_vmlinux, inspect_kernel, Compression, KernelFormat, KernelSource,
};
use isobox_microvm::MicrovmError;

/// An x86-64 ELF header followed by varied, partly compressible content.
fn tiny_elf() -> Vec<u8> {
    let mut v = vec![0u8; 64];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2;
    v[5] = 1;
    v[6] = 1;
    v[16] = 2;
    v[18..20].copy_from_slice(&62u16.to_le_bytes());
    let mut x: u32 = 12345;
    for i in 0..300_000u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        v.push(if i % 3 == 0 {
            (x >> 24) as u8
        } else {
            (i / 64) as u8
        });
    }
    v
}

/// Compresses as the kernel build does: gzip carries its own size trailer, every other
/// format gets the uncompressed size appended as a little-endian u32.
fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = match c {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).unwrap();
            return e.finish().unwrap();
        }
        Compression::Xz => {
            // scripts/xz_wrap.sh: --check=crc32 --x86 --lzma2
            let mut f = xz2::stream::Filters::new();
            f.x86();
            f.lzma2(&xz2::stream::LzmaOptions::new_preset(6).unwrap());
            let s = xz2::stream::Stream::new_stream_encoder(&f, xz2::stream::Check::Crc32).unwrap();
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), s);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Lzma => {
            let o = xz2::stream::LzmaOptions::new_preset(9).unwrap();
            let s = xz2::stream::Stream::new_lzma_encoder(&o).unwrap();
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), s);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 19).unwrap(),
        Compression::Lz4Legacy => {
            let mut out = 0x184C_2102u32.to_le_bytes().to_vec();
            for chunk in data.chunks(8 << 20) {
                let b = lz4_flex::block::compress(chunk);
                out.extend((b.len() as u32).to_le_bytes());
                out.extend(b);
            }
            out
        }
        other => panic!("no encoder for {other}"),
    };
    out.extend((data.len() as u32).to_le_bytes());
    out
}

const SETUP_SECTS: u8 = 3;
const PAYLOAD_OFFSET: usize = 0x100;

/// A bzImage around `payload`: setup sectors with the header, then protected-mode code with
/// the payload at PAYLOAD_OFFSET.
fn bzimage(payload: &[u8]) -> Vec<u8> {
    let setup_len = (SETUP_SECTS as usize + 1) * 512;
    let mut img = vec![0u8; setup_len];
    img[0x1f1] = SETUP_SECTS;
    img[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    let version = b"9.9.9-synthetic (builder@test) #1 SMP\0";
    img[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
    img[0x500..0x500 + version.len()].copy_from_slice(version);
    img[0x248..0x24c].copy_from_slice(&(PAYLOAD_OFFSET as u32).to_le_bytes());
    img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    img.extend(std::iter::repeat_n(0x90u8, PAYLOAD_OFFSET)); // "decompressor code"
    img.extend_from_slice(payload);
    img.extend(std::iter::repeat_n(0xccu8, 64));
    img
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".vmlinux-"))
        .collect()
}

#[test]
fn every_supported_payload_format_unpacks_to_the_original_elf() {
    let elf = tiny_elf();
    let d = tempfile::tempdir().unwrap();
    for c in [
        Compression::Gzip,
        Compression::Xz,
        Compression::Lzma,
        Compression::Zstd,
        Compression::Lz4Legacy,
    ] {
        let img = bzimage(&compress(c, &elf));
        let bz = d.path().join(format!("bzImage-{c:?}"));
        std::fs::write(&bz, &img).unwrap();

        let k = inspect_kernel(&bz, KernelSource::Flag).unwrap();
        assert_eq!(k.format, KernelFormat::BzImage);
        assert_eq!(k.release.as_deref(), Some("9.9.9-synthetic"));

        let out = d.path().join(format!("vmlinux-{c:?}"));
        let x = extract_vmlinux(&bz, &out).unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(x.compression, c);
        assert_eq!(x.vmlinux_bytes, elf.len() as u64);
        assert_eq!(x.release.as_deref(), Some("9.9.9-synthetic"));
        assert!(
            std::fs::read(&out).unwrap() == elf,
            "{c}: output differs from the ELF"
        );
        let k = inspect_kernel(&out, KernelSource::Flag).unwrap();
        assert_eq!(k.format, KernelFormat::Vmlinux);
    }
    assert!(leftovers(d.path()).is_empty());
}

#[test]
fn a_bzimage_kernel_converts_to_a_cached_vmlinux_once() {
    let elf = tiny_elf();
    let d = tempfile::tempdir().unwrap();
    let bz = d.path().join("bzImage");
    std::fs::write(&bz, bzimage(&compress(Compression::Lz4Legacy, &elf))).unwrap();
    let data = d.path().join("data");
    let k = inspect_kernel(&bz, KernelSource::Env).unwrap();
    let v = k.to_vmlinux(&data).unwrap();
    assert_eq!(v.format, KernelFormat::Vmlinux);
    assert_eq!(v.source, KernelSource::Env);
    assert_eq!(v.release.as_deref(), Some("9.9.9-synthetic"));
    assert!(
        v.path.starts_with(data.join("kernels/extracted")),
        "{}",
        v.path.display()
    );
    assert!(std::fs::read(&v.path).unwrap() == elf);
    // The second call reuses the file.
    let mtime = std::fs::metadata(&v.path).unwrap().modified().unwrap();
    let again = k.to_vmlinux(&data).unwrap();
    assert_eq!(again.path, v.path);
    assert_eq!(
        std::fs::metadata(&v.path).unwrap().modified().unwrap(),
        mtime
    );
    // A vmlinux is returned as it is.
    assert_eq!(v.to_vmlinux(&data).unwrap(), v);
}

fn extract_err(img: &[u8]) -> (String, Vec<String>) {
    let d = tempfile::tempdir().unwrap();
    let bz = d.path().join("bzImage");
    std::fs::write(&bz, img).unwrap();
    let out = d.path().join("vmlinux");
    let e = extract_vmlinux(&bz, &out).unwrap_err();
    assert!(matches!(e, MicrovmError::Unpack { .. }), "{e}");
    assert!(!out.exists(), "a failed extraction left {}", out.display());
    (e.to_string(), leftovers(d.path()))
}

#[test]
fn bad_images_fail_cleanly_with_the_reason() {
    let elf = tiny_elf();

    let mut lz4 = compress(Compression::Lz4Legacy, &elf);
    let n = lz4.len();
    lz4[n - 4..].copy_from_slice(&1234u32.to_le_bytes());
    let (e, left) = extract_err(&bzimage(&lz4));
    assert!(e.contains("image says 1234"), "{e}");
    assert!(left.is_empty(), "{left:?}");

    let mut xz = compress(Compression::Xz, &elf);
    let mid = xz.len() / 2;
    xz[mid] ^= 0xff;
    let (e, _) = extract_err(&bzimage(&xz));
    assert!(e.contains("decompressing the xz payload"), "{e}");

    let not_elf = compress(
        Compression::Zstd,
        b"just some text, not an ELF image at all",
    );
    let (e, _) = extract_err(&bzimage(&not_elf));
    assert!(e.contains("did not decompress to an ELF"), "{e}");

    let (e, _) = extract_err(&bzimage(b"BZh91AY&SYxxxxxxxxxxxx"));
    assert!(e.contains("bzip2 is not supported"), "{e}");

    let (e, _) = extract_err(&bzimage(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09"));
    assert!(e.contains("unknown payload compression"), "{e}");

    let mut short = bzimage(&compress(Compression::Gzip, &elf));
    short.truncate(short.len() - 1000);
    let (e, _) = extract_err(&short);
    assert!(e.contains("outside"), "{e}");

    let (e, _) = extract_err(&tiny_elf());
    assert!(e.contains("not a bzImage"), "{e}");
}
