//! Sockets: the host's accept loop and connections, and the multiplexed client.
//!
//! This layer speaks the protocol and hands calls to a [`Service`](crate::service::Service);
//! it knows nothing of plugins or wasmtime.

mod client;
mod connection;
mod outbound;
mod pending;
mod server;

pub use client::{CallOptions, Client, ClientOptions};
pub use server::{ServerConfig, serve};
