//! Caller authentication: bearer tokens, and the access file that says which
//! functions each token may call.

pub mod access;

pub use access::{Access, AccessError, Grant, digest, new_token};
