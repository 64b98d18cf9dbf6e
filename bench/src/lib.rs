//! Side-by-side benchmarks of wasmrpc against a raw TCP floor and gRPC.
//!
//! [`suite::run`] measures every system with the same load generator
//! ([`load`]) and gathers a [`report::Report`]; the binary (`src/main.rs`)
//! builds what is needed, runs it and writes `BENCHMARKS.md`. The criterion
//! benchmarks in `benches/` reuse [`micro`].

pub mod cpu;
pub mod floor;
pub mod grpc;
pub mod hosts;
pub mod load;
pub mod micro;
pub mod prepare;
pub mod report;
pub mod suite;
