//! Where calls run: the links to peer hosts and the routing decision between
//! this host and them.

pub mod keys;
mod peers;
mod reconfigure;
mod route;

pub use peers::{Health, Peer, PeerConfig, PeerSnapshot, Peers};
pub use reconfigure::{Identity, peers_and_routes, watch_topology};
pub use route::{Local, Placement, Router, Routes, RoutingConfig};
