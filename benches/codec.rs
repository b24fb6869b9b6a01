//! The host-guest agent frame codec: encoding and decoding stdout frames of several sizes, and
//! the JSON-bodied Exec request.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use isobox_common::protocol::{decode, ExecRequest, Message};

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for size in [64usize, 4096, 64 * 1024, 1024 * 1024] {
        let msg = Message::Stdout {
            session: 0,
            data: vec![0x5a; size - 4],
        };
        let frame = msg.encode().expect("within MAX_PAYLOAD");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encode_stdout", size), &msg, |b, m| {
            b.iter(|| m.encode().unwrap())
        });
        group.bench_with_input(BenchmarkId::new("decode_stdout", size), &frame, |b, f| {
            b.iter(|| decode(f).unwrap().unwrap())
        });
    }
    let exec = Message::Exec {
        session: 0,
        request: ExecRequest {
            args: vec!["/bin/sh".into(), "-c".into(), "echo ready".into()],
            env: (0..16).map(|i| format!("VAR{i}=value-{i}")).collect(),
            cwd: "/".into(),
            hostname: Some("isobox".into()),
            ..Default::default()
        },
    };
    let frame = exec.encode().unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_exec", |b| b.iter(|| exec.encode().unwrap()));
    group.bench_function("decode_exec", |b| {
        b.iter(|| decode(&frame).unwrap().unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
