//! The call abstraction shared by the server, the router and the guest `call` import.
//!
//! [`net`](crate::net) hands every decoded call to a [`Service`]; the router
//! implements it; the runtime's `call` import uses the same trait for nested
//! calls. None of them needs to know the others' types.

use std::sync::Arc;
use std::time::Duration;

use ciborium::Value;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::protocol::{CallError, FunctionInfo};
pub use wasmrpc_client::CallContext;

/// A call ready to be routed: its function, its arguments and the context it
/// carries (absolute deadline, cancellation, hops, visited regions,
/// metadata), from the connection that received it to the guest that runs
/// it, and on to the hosts it is forwarded to.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub function: String,
    pub args: Vec<Value>,
    pub context: CallContext,
    /// The call came from a peer host that chose this host for it: a host
    /// serving the function runs it, whatever its key says (the two hosts
    /// may briefly disagree about the topology; the call must not bounce).
    pub from_peer: bool,
}

impl CallRequest {
    /// A fresh request (no hops) with `timeout` from now.
    pub fn new(function: impl Into<String>, args: Vec<Value>, timeout: Duration) -> Self {
        CallRequest {
            function: function.into(),
            args,
            context: CallContext::new(timeout),
            from_peer: false,
        }
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.context.remaining()
    }
}

/// Something that can run calls and list what it can run.
pub trait Service: Send + Sync + 'static {
    /// Runs `request` to completion, failure, deadline or cancellation.
    fn call(self: Arc<Self>, request: CallRequest) -> BoxFuture<'static, Result<Value, CallError>>;

    /// Every function callable through this service, with all the regions
    /// serving each: the answer to a client's `list`.
    fn catalog(&self) -> Vec<FunctionInfo>;

    /// The functions this host runs itself: what it pushes to its peers.
    fn local_catalog(&self) -> Vec<FunctionInfo>;

    /// Changes whenever [`Service::local_catalog`] does.
    fn local_changes(&self) -> watch::Receiver<u64>;

    /// Whether `function` is in the catalog (a cheap check: metrics use
    /// only catalogued names as labels).
    fn knows(&self, _function: &str) -> bool {
        false
    }
}

/// A service that runs nothing: every call gets `unavailable` (`processed:
/// no`) with `reason`. The router of an instance made ahead of its call
/// (start functions cannot make calls), and of tools that run one plugin.
pub struct NoCalls {
    reason: String,
    changes: watch::Sender<u64>,
}

impl NoCalls {
    pub fn new(reason: impl Into<String>) -> Arc<NoCalls> {
        Arc::new(NoCalls {
            reason: reason.into(),
            changes: watch::Sender::new(0),
        })
    }
}

impl Service for NoCalls {
    fn call(self: Arc<Self>, request: CallRequest) -> BoxFuture<'static, Result<Value, CallError>> {
        let error = CallError::new(
            crate::protocol::ErrorCode::Unavailable,
            crate::protocol::Processed::No,
            format!("cannot call `{}`: {}", request.function, self.reason),
        );
        Box::pin(async move { Err(error) })
    }

    fn catalog(&self) -> Vec<FunctionInfo> {
        Vec::new()
    }

    fn local_catalog(&self) -> Vec<FunctionInfo> {
        Vec::new()
    }

    fn local_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
