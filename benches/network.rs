//! TCP throughput from the workload to the host over a veth pair, in a container and in a
//! microVM (qemu: the namespace's veth redirected to the VM's tap, virtio-net in the guest).
//! The workload sends 32 MiB with busybox `dd | nc`; the host times from the first byte to
//! the last, so neither the boot nor the exit is counted. Under qemu TCG the absolute figure
//! means little; the ratio of the two, taken in one run, is the cost of the VM's network path.

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

const MIB: u64 = 32;

/// One run of the bundle; the time the host took to receive everything it sent.
fn one_transfer(
    runner: &support::Runner,
    bundle: &support::Bundle,
    listener: &TcpListener,
) -> Result<Duration, String> {
    let l = listener.try_clone().map_err(|e| e.to_string())?;
    let receiver = std::thread::spawn(move || -> Result<Duration, String> {
        let (mut conn, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
        // A VM that dies mid-transfer never closes its end.
        conn.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        let mut first = None;
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    got += n as u64;
                }
                Err(e) => return Err(format!("reading from the workload: {e}")),
            }
        }
        match first {
            Some(t) if got == MIB << 20 => Ok(t.elapsed()),
            _ => Err(format!("the workload sent {got} of {} bytes", MIB << 20)),
        }
    });
    let ran = runner.run(bundle);
    if ran.is_err() {
        // The workload never connected: connect once so the receiver's accept returns.
        let _ = TcpStream::connect(listener.local_addr().map_err(|e| e.to_string())?);
    }
    let received = receiver.join().map_err(|_| "the receiver panicked")?;
    ran.map_err(|e| format!("the run: {e}"))?;
    received
}

fn network(c: &mut Criterion) {
    if !support::is_root() {
        return support::skip("network", "needs root");
    }
    if support::which("ip").is_none() && !std::path::Path::new("/usr/sbin/ip").is_file() {
        return support::skip("network", "no ip (iproute2)");
    }
    let ns = support::netns::VethNamespace::new();
    let listener = TcpListener::bind((ns.host_ip.as_str(), 0)).expect("listening on the veth");
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        // The pause lets the guest's socket drain before its workload's exit ends the VM.
        "dd if=/dev/zero bs=64k count={} 2>/dev/null | nc {} {port}; sleep 2",
        MIB * 16,
        ns.host_ip
    );
    let bundle = match support::busybox_bundle(&["sh", "-c", &script]) {
        Ok(b) => b,
        Err(e) => return support::skip("network", &e),
    };
    bundle
        .join_network(&ns.path())
        .expect("joining the namespace");
    let mut group = c.benchmark_group("network");
    // Each run boots a VM: ten runs, not criterion's growing batches.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(MIB << 20));
    for (name, args) in [
        ("container", vec!["--backend", "container"]),
        (
            "microvm-qemu",
            vec!["--backend", "microvm", "--hypervisor", "qemu"],
        ),
    ] {
        let runner = match support::Runner::new(&support::isobox_bin(), &args) {
            Ok(r) => r,
            Err(e) => {
                support::skip(&format!("network/{name}"), &e);
                continue;
            }
        };
        if let Err(e) = one_transfer(&runner, &bundle, &listener) {
            support::skip(
                &format!("network/{name}"),
                &format!("a trial run failed: {e}"),
            );
            continue;
        }
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        one_transfer(&runner, &bundle, &listener)
                            .expect("a run that worked before failed")
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, network);
criterion_main!(benches);
