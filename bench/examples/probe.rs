//! Profiling probe: in-process `math.add` calls, fresh or warm instances.
//!
//! `cargo run --release --example probe -- <math.wasm> <spare|on-path|reuse> [calls]`
//! runs [`wasmrpc_bench::micro::sequential`] and prints the median whole
//! cost of a call (with the teardown and instantiation it leaves behind)
//! and the median of the call alone. Run it under `perf record` to see where
//! the time goes.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let wasm = std::fs::read(args.next().expect("math.wasm path"))?;
    let instances = match args.next().as_deref() {
        Some("reuse") => wasmrpc_bench::micro::Instances::Reuse,
        Some("on-path") => wasmrpc_bench::micro::Instances::OnThePath,
        _ => wasmrpc_bench::micro::Instances::Spare,
    };
    let calls: u64 = args.next().map_or(20_000, |n| n.parse().expect("calls"));
    let m = wasmrpc_bench::micro::sequential(&wasm, instances, calls, 2_000)?;
    println!(
        "{instances:?}: {:.2} µs whole p50; call p50 {:.2} µs p99 {:.2} µs; {:.0} calls/s",
        m.whole.quantile_us(0.5),
        m.call.quantile_us(0.5),
        m.call.quantile_us(0.99),
        m.whole.calls_per_sec(),
    );
    Ok(())
}
