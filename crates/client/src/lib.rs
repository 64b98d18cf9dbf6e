//! The async client of wasmrpc: calls to one host or several, multiplexed
//! over one connection per host, with deadlines, cancellation, failover
//! between hosts and the `processed` rules of the protocol.
//!
//! This crate compiles no WebAssembly engine: a program that only calls
//! wasmrpc functions depends on it (and on [`wasmrpc_protocol`], re-exported
//! as [`protocol`]), not on the host.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wasmrpc_client::Client;
//!
//! let client = Client::connect("127.0.0.1:7101").await?;
//! let sum: i64 = client.call("math.add", (2, 3)).await?;
//! assert_eq!(sum, 5);
//! # Ok(())
//! # }
//! ```

mod client;
mod connection;
mod context;
pub mod outbound;
mod regions;
pub mod stream;
pub mod tls;
pub mod typed;

pub use client::{CallOptions, Client, HostView};
pub use connection::{ClientOptions, Connection};
pub use context::CallContext;
pub use tls::ClientTls;
pub use wasmrpc_protocol as protocol;
pub use wasmrpc_protocol::{CallError, ErrorCode, Processed};
