//! Sockets: the host's accept loop and connections, and the multiplexed client.
//!
//! This layer speaks the protocol and hands calls to a [`Service`](crate::service::Service);
//! it knows nothing of plugins or wasmtime.

mod connection;
mod pending;
mod server;

pub use server::{ServerConfig, serve};
pub use wasmrpc_client::{CallOptions, Client, ClientOptions};
