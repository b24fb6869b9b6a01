//! microVM startup: `isobox run --backend microvm` of /bin/true, from spawn to exit — kernel
//! boot, agent handshake, workload and shutdown — on qemu, and on the built-in VMM where the
//! host has hardware virtualization. On a host without hardware virtualization the
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
    let host = isobox_microvm::host::detect();
    let mut group = c.benchmark_group("microvm_startup");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.warm_up_time(Duration::from_secs(1));
    for hypervisor in ["qemu", "builtin"] {
        let name = format!("microvm_startup/{hypervisor}");
        // The built-in VMM boots Linux only on hardware virtualization.
        if hypervisor == "builtin" && host != isobox_microvm::host::HostKind::HardwareKvm {
            support::skip(&name, &host.describe());
            continue;
        }
        let args = ["--backend", "microvm", "--hypervisor", hypervisor];
        let runner = match support::Runner::new(&support::isobox_bin(), &args) {
            Ok(r) => r,
            Err(e) => {
                support::skip(&name, &e);
                continue;
            }
        };
        if let Err(e) = runner.check(&bundle) {
            support::skip(
                &name,
                &format!("a trial run failed (kernel, agent or hypervisor missing?): {e}"),
            );
            continue;
        }
        group.bench_function(format!("isobox-microvm-{hypervisor}"), |b| {
            b.iter(|| {
                runner
                    .run(&bundle)
                    .expect("a run that worked before failed")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, microvm_startup);
criterion_main!(benches);
