//! Where calls run: the links to peer hosts and the routing decision between
//! this host and them.

mod peers;
mod route;

pub use peers::{Health, Peer, PeerConfig, Peers};
pub use route::{RetryPolicy, Router};
