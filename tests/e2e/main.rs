//! End-to-end tests: real `wasmrpc host` processes on loopback, driven through
//! the real client, the real CLI and raw frames.

mod cli;
mod concurrency;
mod config;
mod corpus;
mod dashboard;
mod failover;
mod gray;
mod guests;
mod hardening;
mod inline;
mod keys;
mod languages;
mod load;
mod nested;
mod observe;
mod protocol;
mod protocol_doc;
mod python;
mod readme;
mod regions;
mod reload;
mod security;
mod shutdown;
mod stubs;
mod traces;
mod typed;
mod values;
