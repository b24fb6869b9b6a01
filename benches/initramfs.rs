//! Packing a rootfs and the agent into the guest's initramfs (newc cpio), per MiB of rootfs.

use std::fs;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use isobox_microvm::image::initramfs::build_initramfs;

/// A rootfs of `mib` MiB: 256 KiB files of varied bytes in a few directories.
fn make_rootfs(root: &Path, mib: usize) -> std::io::Result<u64> {
    let mut total = 0u64;
    for i in 0..mib * 4 {
        let dir = root.join(format!("d{}", i % 8));
        fs::create_dir_all(&dir)?;
        let data: Vec<u8> = (0..256 * 1024)
            .map(|j| ((i * 31 + j * 7) % 251) as u8)
            .collect();
        fs::write(dir.join(format!("f{i}")), &data)?;
        total += data.len() as u64;
    }
    Ok(total)
}

fn initramfs(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    // A stand-in for the agent: packing treats it as an opaque regular file.
    let agent = tmp.path().join("agent");
    fs::write(&agent, vec![0x7f; 1 << 20]).expect("write agent");
    let mut group = c.benchmark_group("initramfs");
    group.sample_size(20);
    for mib in [1usize, 8, 32] {
        let rootfs = tmp.path().join(format!("rootfs-{mib}"));
        let bytes = make_rootfs(&rootfs, mib).expect("build rootfs");
        let out = tmp.path().join(format!("initramfs-{mib}.cpio"));
        group.throughput(Throughput::Bytes(bytes));
        group.bench_with_input(
            BenchmarkId::new("build", format!("{mib}MiB")),
            &rootfs,
            |b, r| b.iter(|| build_initramfs(r, &agent, &out).expect("initramfs builds")),
        );
    }
    group.finish();
}

criterion_group!(benches, initramfs);
criterion_main!(benches);
