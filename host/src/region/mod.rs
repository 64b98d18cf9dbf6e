//! Where calls run: the routing decision between this host and its peers.

mod route;

pub use route::Router;
