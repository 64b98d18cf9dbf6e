//! Micro-benchmarks of the host's per-call building blocks:
//!
//! - `frame`: encoding and decoding a `call` message (framing + CBOR envelope);
//! - `cbor_val`: CBOR ↔ component value conversion for real export types;
//! - `fresh_call`: instantiation + call of `math.add` through `Runtime::call`
//!   (instance made on the call's path); `fresh_call_whole`: the host's
//!   default, each call with the teardown and instantiation it leaves behind.
//!
//! Run with `cargo bench --manifest-path bench/Cargo.toml` (builds the example
//! plugins first if they are missing). Criterion prints each estimate; the
//! middle figure of `time: [.. .. ..]` is the one to read.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use ciborium::Value;
use criterion::{Criterion, criterion_group, criterion_main};
use wasmrpc::protocol::{
    Call, DEFAULT_MAX_FRAME, FrameCodec, Message, decode_message, encode_message,
};
use wasmrpc::runtime::value::{from_val, to_val};
use wasmrpc_bench::micro::{Instances, RuntimeCall, export_types};
use wasmrpc_bench::prepare::{self, Paths};

/// The example plugins, built on first use.
fn guest(name: &str) -> Vec<u8> {
    let paths = Paths::of_repository();
    if paths.guest(name).is_err() {
        prepare::build(&paths).expect("build the example plugins");
    }
    paths.guest(name).expect("example plugin")
}

fn call_message() -> Message {
    Message::Call(Call {
        id: 42,
        function: "math.add".into(),
        args: vec![Value::from(1_000_000), Value::from(2)],
        deadline_ms: Some(5_000),
        hops: 0,
        visited: Vec::new(),
        metadata: Default::default(),
        principal: None,
    })
}

fn frame(c: &mut Criterion) {
    let message = call_message();
    let encoded = encode_message(&message, DEFAULT_MAX_FRAME).unwrap();
    let mut group = c.benchmark_group("frame");
    group.bench_function("encode call", |b| {
        b.iter(|| encode_message(black_box(&message), DEFAULT_MAX_FRAME).unwrap())
    });
    group.bench_function("decode call", |b| {
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&encoded[..]));
            let body = codec.decode(&mut buf).unwrap().unwrap();
            decode_message(&body).unwrap()
        })
    });
    group.finish();
}

fn cbor_val(c: &mut Criterion) {
    let engine = wasmtime::Engine::default();
    let math = wasmtime::component::Component::new(&engine, guest("math")).unwrap();
    let greeter = wasmtime::component::Component::new(&engine, guest("greeter")).unwrap();
    let (add_params, add_result) = export_types(&engine, &math, "add").unwrap();
    let (bytes_params, _) = export_types(&engine, &greeter, "echo/echo-bytes").unwrap();
    let (record_params, _) = export_types(&engine, &greeter, "echo/echo-record").unwrap();
    let add_result = add_result.unwrap();

    let mut group = c.benchmark_group("cbor_val");
    let args = [Value::from(1_000_000), Value::from(2)];
    group.bench_function("to_val add(s64, s64)", |b| {
        b.iter(|| {
            args.iter()
                .zip(&add_params)
                .map(|(v, ty)| to_val(black_box(v), ty).unwrap())
                .collect::<Vec<_>>()
        })
    });
    group.bench_function("from_val s64", |b| {
        b.iter(|| {
            from_val(
                black_box(wasmtime::component::Val::S64(1_000_002)),
                &add_result,
            )
            .unwrap()
        })
    });
    let kib = Value::Bytes(vec![7; 1024]);
    let kib_val = to_val(&kib, &bytes_params[0]).unwrap();
    group.bench_function("to_val list<u8> 1 KiB", |b| {
        b.iter(|| to_val(black_box(&kib), &bytes_params[0]).unwrap())
    });
    group.bench_function("from_val list<u8> 1 KiB", |b| {
        b.iter(|| from_val(black_box(kib_val.clone()), &bytes_params[0]).unwrap())
    });
    let person = Value::Map(vec![
        (Value::from("name"), Value::from("Ada")),
        (Value::from("age"), Value::from(36)),
        (Value::from("nick-name"), Value::Null),
    ]);
    let person_val = to_val(&person, &record_params[0]).unwrap();
    group.bench_function("to_val record person", |b| {
        b.iter(|| to_val(black_box(&person), &record_params[0]).unwrap())
    });
    group.bench_function("from_val record person", |b| {
        b.iter(|| from_val(black_box(person_val.clone()), &record_params[0]).unwrap())
    });
    group.finish();
}

/// A fresh instance + call of `math.add`: `fresh_call` with the instance
/// made on the call's path (instantiation + call), and `fresh_call_whole`
/// with the host's default (instance made ahead) including the teardown and
/// instantiation each call leaves behind (a single-threaded runtime runs
/// them when the loop yields).
fn fresh_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let on_path = RuntimeCall::new(&guest("math"), Instances::OnThePath).unwrap();
    c.bench_function("fresh_call math.add", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut took = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let began = Instant::now();
                    on_path.add(1_000_000, 2).await.unwrap();
                    took += began.elapsed();
                    tokio::task::yield_now().await;
                }
                took
            })
        })
    });
    let spare = RuntimeCall::new(&guest("math"), Instances::Spare).unwrap();
    c.bench_function("fresh_call_whole math.add", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let began = Instant::now();
                for _ in 0..iters {
                    spare.add(1_000_000, 2).await.unwrap();
                    tokio::task::yield_now().await;
                }
                began.elapsed()
            })
        })
    });
}

criterion_group!(benches, frame, cbor_val, fresh_call);
criterion_main!(benches);
