//! Side-by-side benchmarks of wasmrpc against a raw TCP floor and gRPC.
//!
//! [`suite::run`] measures every system with the same load generator
//! ([`load`]) and gathers a [`report::Report`]; the binary (`src/main.rs`)
//! builds what is needed, runs it and writes `BENCHMARKS.md`. The criterion
//! benchmarks in `benches/` reuse [`micro`].

/// The allocator of the wasmrpc host (`host/src/main.rs`), in every process
/// the bench runs: the load generator and the clients, the floor, relay and
/// gRPC servers, and the in-process measurements of the host's runtime. No
/// system gains or loses by its allocator alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cpu;
pub mod floor;
pub mod frame_relay;
pub mod grpc;
pub mod hosts;
pub mod load;
pub mod micro;
pub mod prepare;
pub mod report;
pub mod suite;
