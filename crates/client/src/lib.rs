//! The async client of wasmrpc: one multiplexed connection to a host, many
//! concurrent calls, with deadlines, cancellation and the `processed` rules
//! of the protocol.
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
//! let sum = client.call("math.add", vec![2.into(), 3.into()]).await?;
//! assert_eq!(sum, 5.into());
//! # Ok(())
//! # }
//! ```

mod client;
mod context;
pub mod outbound;
pub mod stream;
pub mod tls;
pub mod typed;

pub use client::{CallOptions, Client, ClientOptions};
pub use context::CallContext;
pub use tls::ClientTls;
pub use wasmrpc_protocol as protocol;
pub use wasmrpc_protocol::{CallError, ErrorCode, Processed};
