//! microVM startup: `isobox run --backend microvm` of /bin/true, from spawn to exit — kernel
//! boot, agent handshake, workload and shutdown. On a host without hardware virtualization the
//! VM runs under software emulation (qemu TCG) and takes seconds, hence the small sample.

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

fn microvm_startup(c: &mut Criterion) {
    if !support::is_root() {
        support::skip("microvm_startup", "needs root");
        return;
    }
    let bundle = match support::busybox_bundle(&["/bin/true"]) {
        Ok(b) => b,
        Err(e) => return support::skip("microvm_startup", &e),
    };
    let runner = match support::Runner::new(&support::isobox_bin(), &["--backend", "microvm"]) {
        Ok(r) => r,
        Err(e) => return support::skip("microvm_startup", &e),
    };
    if let Err(e) = runner.check(&bundle) {
        return support::skip(
            "microvm_startup",
            &format!("a trial run failed (kernel, agent or hypervisor missing?): {e}"),
        );
    }
    let mut group = c.benchmark_group("microvm_startup");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("isobox-microvm", |b| {
        b.iter(|| {
            runner
                .run(&bundle)
                .expect("a run that worked before failed")
        })
    });
    group.finish();
}

criterion_group!(benches, microvm_startup);
criterion_main!(benches);
