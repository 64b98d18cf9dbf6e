//! What a host tells operators: Prometheus metrics, health and readiness,
//! its status as JSON, and a dashboard, on a separate admin listener
//! (`--admin ADDR`).
//!
//! - [`metrics`]: the counters and histograms each layer keeps
//!   ([`Metrics`]).
//! - [`admin`]: the HTTP listener and the state it reads ([`HostState`]).
//! - [`status`]: the `/status` document, read back by `wasmrpc status`.
//! - [`http`]: a minimal client for the admin listener.

pub mod admin;
pub mod http;
pub mod metrics;
pub mod status;

pub use admin::{HostState, bind_admin, serve_admin};
pub use metrics::{
    Attempt, CallMeter, ConnectionGuard, Metrics, Placement, PluginMeter, UNKNOWN_FUNCTION,
};
pub use status::Status;
