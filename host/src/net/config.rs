//! The limits and identity of a serving host, shared by the accept loop and
//! its connections.

use std::time::Duration;

use crate::observe::Metrics;
use crate::protocol::{DEFAULT_MAX_FRAME, DEFAULT_MAX_IN_FLIGHT};

/// Limits and identity of a serving host.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This host's region, sent in `hello`.
    pub region: String,
    /// This host's id, sent in `hello` (defaults to its listen address).
    pub host_id: String,
    /// Largest frame accepted or sent.
    pub max_frame: usize,
    /// Calls in flight per connection before `resource_exhausted`.
    pub max_in_flight: usize,
    /// Deadline of calls that carry none.
    pub default_deadline: Duration,
    /// Deadlines above this are clamped to it.
    pub max_deadline: Duration,
    /// Open connections before new ones are refused.
    pub max_connections: usize,
    /// How long a new connection may take to start sending its `hello`;
    /// once its first byte is here, the frame timeout applies.
    pub hello_timeout: Duration,
    /// How long a frame may take to arrive once its first byte has.
    pub frame_timeout: Duration,
    /// A connection with nothing in flight for this long, counted from its
    /// last frame or its last call's answer, is closed.
    pub idle_timeout: Duration,
    /// `cancel`s allowed per connection in 10 s before it is closed.
    pub max_cancels: u32,
    /// Bytes of replies queued for a caller that does not read them before
    /// its connection is closed.
    pub max_outbound: usize,
    /// How long shutdown waits for calls in flight.
    pub drain_timeout: Duration,
    /// Where connections count themselves, their refused calls and the
    /// frames they reject.
    pub metrics: Metrics,
}

impl ServerConfig {
    /// The documented defaults for a host of `region`.
    pub fn new(region: impl Into<String>, host_id: impl Into<String>) -> Self {
        ServerConfig {
            region: region.into(),
            host_id: host_id.into(),
            max_frame: DEFAULT_MAX_FRAME,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            default_deadline: Duration::from_secs(5),
            max_deadline: Duration::from_secs(30),
            max_connections: 10_000,
            hello_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_cancels: 100,
            max_outbound: 64 << 20,
            drain_timeout: Duration::from_secs(5),
            metrics: Metrics::off(),
        }
    }
}
