//! Error codes, the `processed` flag, and the two error types built on them.

use std::fmt;

use ciborium::Value;
use serde::{Deserialize, Serialize};

/// A stable error code. The wire spelling is the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No host serves the function.
    NotFound,
    /// The arguments do not match the function's parameters.
    InvalidArgs,
    /// The handler ran and returned the `err` case of its `result`.
    HandlerError,
    /// The guest trapped (panic, `unreachable`, stack overflow, out of bounds).
    Trap,
    /// The call's deadline passed before it completed.
    DeadlineExceeded,
    /// The caller cancelled the call.
    Cancelled,
    /// No host could be reached, or the host is draining.
    Unavailable,
    /// A limit was hit: calls in flight, instance pool, guest memory.
    ResourceExhausted,
    /// Forwarding would revisit a region or exceed the hop limit.
    LoopDetected,
    /// The caller's credentials were refused.
    Unauthenticated,
    /// The caller is authenticated but may not call this function (its
    /// token's patterns, or a plugin's `calls` list, leave it out).
    PermissionDenied,
    /// The peer broke the protocol (bad frame, bad envelope, wrong order).
    ProtocolError,
    /// A bug or unexpected condition in the host.
    Internal,
}

impl ErrorCode {
    /// The wire spelling, e.g. `handler_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidArgs => "invalid_args",
            ErrorCode::HandlerError => "handler_error",
            ErrorCode::Trap => "trap",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::LoopDetected => "loop_detected",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::ProtocolError => "protocol_error",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the function may have run before the error: tells a caller when a
/// retry is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Processed {
    /// The function certainly did not run; any call may be retried.
    No,
    /// It may have run; retry only idempotent functions.
    Maybe,
    /// It ran to completion (e.g. it returned a handler error).
    Yes,
}

impl fmt::Display for Processed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Processed::No => "no",
            Processed::Maybe => "maybe",
            Processed::Yes => "yes",
        })
    }
}

/// A failed call, as the caller sees it: what crosses the wire in an `error`
/// frame, and what a client's failed calls return.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
    /// The region whose host produced the error, when known.
    pub region: Option<String>,
    pub processed: Processed,
    /// For `handler_error`: the handler's error value.
    pub detail: Option<Value>,
}

impl CallError {
    /// An error with no region and no detail.
    pub fn new(code: ErrorCode, processed: Processed, message: impl Into<String>) -> Self {
        CallError {
            code,
            message: message.into(),
            region: None,
            processed,
            detail: None,
        }
    }

    /// `not_found` for `function`; nothing ran.
    pub fn not_found(function: &str) -> Self {
        Self::new(
            ErrorCode::NotFound,
            Processed::No,
            format!("no host serves function `{function}`"),
        )
    }

    /// `invalid_args`; nothing ran.
    pub fn invalid_args(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgs, Processed::No, message)
    }

    /// `deadline_exceeded` with the given `processed` state.
    pub fn deadline_exceeded(processed: Processed) -> Self {
        Self::new(ErrorCode::DeadlineExceeded, processed, "deadline exceeded")
    }

    /// `cancelled` with the given `processed` state.
    pub fn cancelled(processed: Processed) -> Self {
        Self::new(
            ErrorCode::Cancelled,
            processed,
            "call cancelled by the caller",
        )
    }

    /// `internal`, for conditions that are bugs.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, Processed::Maybe, message)
    }

    /// Sets the producing region unless one is already recorded.
    pub fn in_region(mut self, region: &str) -> Self {
        if self.region.is_none() {
            self.region = Some(region.to_owned());
        }
        self
    }

    /// Attaches a detail value.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// Why bytes from a peer could not be turned into a [`crate::Message`].
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The length prefix is larger than the configured maximum frame.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// The frame body is not a valid envelope.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer sent a message that is not allowed at this point.
    #[error("unexpected `{got}` message: {why}")]
    Unexpected { got: &'static str, why: String },
    /// The peer speaks another protocol version.
    #[error(
        "unsupported protocol version {got}; this host speaks versions {} to {ours}",
        crate::OLDEST_PROTOCOL_VERSION
    )]
    Version { got: u32, ours: u32 },
    /// A frame started arriving and did not complete in time (slow sender).
    #[error("no complete frame within {0:?} of its first byte")]
    FrameTimeout(std::time::Duration),
    /// Nothing was in flight, and no frame arrived, for this long.
    #[error("connection idle for {0:?}")]
    Idle(std::time::Duration),
    /// Too many `cancel`s: a call-and-cancel flood.
    #[error("more than {limit} cancels within {window:?}")]
    TooManyCancels {
        limit: u32,
        window: std::time::Duration,
    },
    /// The caller does not read its replies.
    #[error("more than {0} bytes of replies queued: the caller is not reading them")]
    SlowReader(usize),
    /// The caller's identity was refused: a token the access file does not
    /// hold, or a `peer` hello its certificate does not vouch for.
    #[error("{0}")]
    Unauthenticated(String),
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    /// The wire code of the connection-level `error` that reports this
    /// error to the other side: limits are `resource_exhausted`, an idle or
    /// broken connection `unavailable`, anything else `protocol_error`.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::FrameTooLarge { .. }
            | ProtocolError::TooManyCancels { .. }
            | ProtocolError::SlowReader(_) => ErrorCode::ResourceExhausted,
            ProtocolError::Idle(_) | ProtocolError::Io(_) => ErrorCode::Unavailable,
            ProtocolError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ProtocolError::Malformed(_)
            | ProtocolError::Unexpected { .. }
            | ProtocolError::Version { .. }
            | ProtocolError::FrameTimeout(_) => ErrorCode::ProtocolError,
        }
    }
}
