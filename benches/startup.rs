//! Container startup: `isobox run --backend container` of /bin/true against `runc run` of the
//! same bundle, each driven the same way (spawn the runtime, wait for it to exit).

mod support;

use criterion::{criterion_group, criterion_main, Criterion};

fn startup(c: &mut Criterion) {
    if !support::is_root() {
        support::skip("startup", "needs root (namespaces, mounts, cgroups)");
        return;
    }
    let bundle = match support::busybox_bundle(&["/bin/true"]) {
        Ok(b) => b,
        Err(e) => return support::skip("startup", &e),
    };
    let mut runners = Vec::new();
    match support::Runner::new(&support::isobox_bin(), &["--backend", "container"]) {
        Ok(r) => runners.push(("isobox-container", r)),
        Err(e) => support::skip("startup/isobox-container", &e),
    }
    for oci in ["runc", "crun"] {
        match support::which(oci) {
            Some(bin) => match support::Runner::new(&bin, &[]) {
                Ok(r) => runners.push((oci, r)),
                Err(e) => support::skip(&format!("startup/{oci}"), &e),
            },
            None => support::skip(&format!("startup/{oci}"), "not installed"),
        }
    }

    let mut group = c.benchmark_group("startup");
    group.sample_size(30);
    for (name, runner) in &runners {
        if let Err(e) = runner.check(&bundle) {
            support::skip(&format!("startup/{name}"), &e);
            continue;
        }
        group.bench_function(*name, |b| {
            b.iter(|| {
                runner
                    .run(&bundle)
                    .expect("a run that worked before failed")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, startup);
criterion_main!(benches);
