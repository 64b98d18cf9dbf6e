//! wasmrpc: a multi-region RPC system whose handlers are WebAssembly components.
//!
//! A host ([`host::Host`]) loads every component of its plugin folder, serves
//! their exported functions over a CBOR-framed TCP protocol ([`protocol`],
//! [`net`]) and runs each call in a fresh, sandboxed instance ([`runtime`]).
//! [`net::Client`] calls any function by name.

pub mod auth;
pub mod certs;
pub mod cli;
pub mod config;
pub mod host;
pub mod net;
pub mod observe;
pub mod pattern;
pub mod plugins;
pub mod region;
pub mod runtime;
pub mod service;
pub mod tls;
pub mod watch;

pub use protocol::{CallError, ErrorCode, Processed};
pub use wasmrpc_client::{CallOptions, Client, ClientOptions, Connection};
/// The wire protocol (the `wasmrpc-protocol` crate).
pub use wasmrpc_protocol as protocol;
