//! The typed envelopes carried in frames.
//!
//! A frame holds a CBOR map with exactly one key, the message kind, whose value
//! is a map of that message's fields: `{"call": {"id": 1, "function": ...}}`.
//! Unknown kinds, unknown fields and duplicate fields are rejected.

use std::collections::BTreeMap;

use ciborium::Value;
use serde::{Deserialize, Serialize};

use super::error::{CallError, ErrorCode, Processed};

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// First message in each direction.
    Hello(Hello),
    /// Run a function.
    Call(Call),
    /// A call's successful result.
    Reply(Reply),
    /// A call's failure, or (without `id`) a connection-level error.
    Error(ErrorReply),
    /// Stop a call in flight.
    Cancel(Cancel),
    /// Ask for the catalog of callable functions.
    List(ListFunctions),
    /// The answer to `list`.
    Catalog(Catalog),
    /// Liveness and round-trip probe.
    Ping(Ping),
    /// The answer to `ping`.
    Pong(Pong),
    /// The host is shutting down: it finishes calls it has, refuses new ones.
    Drain(Drain),
    /// Host to peer: the functions the host runs itself, sent after `hello`
    /// and again whenever they change.
    CatalogUpdate(CatalogUpdate),
}

impl Message {
    /// The message kind as spelled on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Call(_) => "call",
            Message::Reply(_) => "reply",
            Message::Error(_) => "error",
            Message::Cancel(_) => "cancel",
            Message::List(_) => "list",
            Message::Catalog(_) => "catalog",
            Message::Ping(_) => "ping",
            Message::Pong(_) => "pong",
            Message::Drain(_) => "drain",
            Message::CatalogUpdate(_) => "catalog_update",
        }
    }
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An application calling functions.
    Client,
    /// Another host forwarding calls.
    Peer,
    /// The accepting host (only in the host's own `hello`).
    Host,
}

/// `hello`: the first message each way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Protocol version; a host refuses versions it does not speak.
    pub version: u32,
    pub role: Role,
    /// The sender's region, if it belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A name for the sending process, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// Host only: calls a caller may have in flight on this connection. A
    /// caller queues further calls until one completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Client only (version 2): the caller's bearer token, checked against
    /// the host's access file. Never logged: its `Debug` is redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

/// A credential: serialised as the plain string it holds, but never shown by
/// `Debug`, so that a message logged whole does not leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `call`: run `function` with `args`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// Chosen by the caller, unique among its calls in flight on this connection.
    pub id: u64,
    /// `plugin.function` or `plugin.interface.function`.
    pub function: String,
    /// The arguments in parameter order.
    pub args: Vec<Value>,
    /// Milliseconds the caller will wait, counted from when the host reads the
    /// frame. Absent: the host default (5 s). Larger than the host maximum: clamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// How many hosts have forwarded this call already.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hops: u32,
    /// Regions the call has passed through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visited: Vec<String>,
    /// Free-form string metadata, passed along on forwards.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Peer only (version 2): the name of the caller the forwarding host
    /// authenticated, for this host's logs. A host accepts it only on a peer
    /// connection whose certificate names a region of the topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `reply`: the value a call returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub id: u64,
    pub value: Value,
}

/// `error`: a call failed (`id` set) or the connection is in error (`id` absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub processed: Processed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl ErrorReply {
    /// The error frame for call `id`.
    pub fn for_call(id: u64, error: CallError) -> Self {
        ErrorReply {
            id: Some(id),
            code: error.code,
            message: error.message,
            region: error.region,
            processed: error.processed,
            detail: error.detail,
        }
    }

    /// A connection-level error frame (no call id).
    pub fn connection(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            id: None,
            code,
            message: message.into(),
            region: None,
            processed: Processed::No,
            detail: None,
        }
    }

    /// The error as a [`CallError`] (dropping the id).
    pub fn into_call_error(self) -> CallError {
        CallError {
            code: self.code,
            message: self.message,
            region: self.region,
            processed: self.processed,
            detail: self.detail,
        }
    }
}

/// `cancel`: stop call `id`. The host answers the call with `cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    pub id: u64,
}

/// `list`: request the catalog. Answered by `catalog` with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFunctions {
    pub id: u64,
}

/// `catalog`: every function callable through this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub id: u64,
    pub functions: Vec<FunctionInfo>,
}

/// One callable function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionInfo {
    /// The name to call it by, e.g. `math.add`.
    pub name: String,
    /// Its WIT signature, e.g. `func(a: s64, b: s64) -> s64`.
    pub signature: String,
    /// The regions whose hosts serve it.
    pub regions: Vec<String>,
    /// Declared safe to run more than once (the plugin's sidecar
    /// `idempotent` list): callers may retry it when it may have run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// `catalog_update`: a host's own functions, pushed on peer connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogUpdate {
    pub functions: Vec<FunctionInfo>,
}

/// `ping`: answered by `pong` with the same nonce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    pub nonce: u64,
}

/// `pong`: the answer to `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pong {
    pub nonce: u64,
    /// Version 3, host only: the answering host's own load when it
    /// answered. Sent only to callers whose `hello` said version 3 or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
}

/// A host's load as it reports it in `pong`: what it is doing for all of
/// its callers, which a caller cannot see from its own calls alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Calls the host is running or forwarding now, from every caller
    /// (nested calls of its guests included).
    pub in_flight: u64,
    /// Wasm instances running a call now.
    pub instances: u64,
    /// How many instances the host can hold at once (its pool's capacity).
    pub instances_max: u64,
    /// The host process's CPU use over about the last second, as a
    /// fraction of the cores it may use: 0.0 to 1.0. Absent where the host
    /// cannot measure it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
}

/// `drain`: sent by a host that is shutting down. Calls it already accepted
/// complete; calls sent after it are refused with `unavailable`,
/// `processed: no`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    pub message: String,
}
