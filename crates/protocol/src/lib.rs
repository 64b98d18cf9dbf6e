//! The wire protocol: frames, messages, error codes and limits (no wasmtime, no sockets).
//!
//! Every frame is a 4-byte big-endian length followed by that many bytes of one
//! CBOR map; [`FrameCodec`] does the framing and [`Message`] is the typed
//! envelope inside. PROTOCOL.md at the repository root is the normative
//! description; this module is its implementation.

pub mod bignum;
mod codec;
mod error;
pub mod json;
mod message;
pub mod retry;

pub use codec::{FrameCodec, decode_message, encode_message, encode_message_into};
pub use error::{CallError, ErrorCode, Processed, ProtocolError};
pub use message::{
    Call, Cancel, Catalog, CatalogUpdate, Drain, ErrorReply, FunctionInfo, Hello, ListFunctions,
    Load, Message, Ping, Pong, Reply, Role, Secret,
};
pub use retry::RetryPolicy;

/// The protocol version this build speaks, sent in every `hello`.
///
/// Version 2 added the `token` of `hello`, the `principal` of `call` and the
/// code `permission_denied`; version 3 added the `load` of `pong`. A host
/// still accepts older callers (see [`OLDEST_PROTOCOL_VERSION`]) and never
/// sends them what their version lacks.
pub const PROTOCOL_VERSION: u32 = 3;

/// The oldest version a host accepts from a caller.
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;

/// Largest frame body accepted or sent by default (4 MiB), as in gRPC.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// How deeply the envelope itself may nest (maps, arrays, tags).
pub const ENVELOPE_NESTING: usize = 16;

/// How deeply call arguments and results may nest inside the envelope.
pub const ARGS_NESTING: usize = 64;

/// Calls one connection may have in flight before new ones are refused.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 100;

/// The hop limit: a call is never forwarded more often than this.
pub const DEFAULT_HOP_LIMIT: u32 = 8;
