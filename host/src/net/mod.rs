//! Sockets: the host's accept loop and connections, and the multiplexed client.
//!
//! This layer speaks the protocol and hands calls to a [`Service`](crate::service::Service);
//! it knows nothing of plugins or wasmtime.

mod config;
mod connection;
mod pending;
mod security;
mod server;

pub use config::ServerConfig;
pub use security::{Security, Transport};
pub use server::serve;
pub use wasmrpc_client::{CallOptions, Client, ClientOptions, ClientTls, Connection, Probe};
