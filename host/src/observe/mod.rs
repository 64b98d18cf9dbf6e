//! What a host tells operators: Prometheus metrics, health and readiness,
//! its status as JSON, and a dashboard, on a separate admin listener
//! (`--admin ADDR`); and its part in the traces of calls.
//!
//! - [`metrics`]: the counters and histograms each layer keeps
//!   ([`Metrics`]).
//! - [`load`]: the host's own load, reported to its peers in `pong`
//!   ([`HostLoad`]).
//! - [`admin`]: the HTTP listener and the state it reads ([`HostState`]).
//! - [`status`]: the `/status` document, read back by `wasmrpc status`.
//! - [`http`]: a minimal client for the admin listener.
//! - [`trace`]: W3C trace context on calls, one span per host a call
//!   passes ([`Tracing`]).
//! - [`otlp`]: span export over OTLP/HTTP ([`SpanSink`]).

pub mod admin;
pub mod http;
pub mod load;
pub mod metrics;
pub mod otlp;
pub mod status;
pub mod trace;

pub use admin::{HostState, bind_admin, serve_admin};
pub use load::HostLoad;
pub use metrics::{
    Attempt, CallMeter, ConnectionGuard, FunctionMeter, LoadedMeters, Metrics, Placement,
    PluginMeter, UNKNOWN_FUNCTION,
};
pub use otlp::{OtlpConfig, SpanSink};
pub use status::Status;
pub use trace::{CallTrace, TraceContext, Tracing};
