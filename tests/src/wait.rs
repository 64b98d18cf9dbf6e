//! Bounded waits: a test polls for the condition it needs, for at most a
//! stated time, instead of sleeping a fixed time and hoping.

use std::future::Future;
use std::time::{Duration, Instant};

use ciborium::Value;
use tokio::task::JoinHandle;
use wasmrpc::{CallError, Client};

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `check` holds, polling every 10 ms, for at most `timeout`.
/// Returns whether it held.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until `check` yields a value, polling every 10 ms without blocking
/// the runtime, for at most `timeout`. Returns the value, or `None` when
/// time ran out.
pub async fn eventually_some<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for a check that awaits (a call, a catalog): polls every
/// 10 ms without blocking the runtime. Returns whether it held.
pub async fn eventually_async<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(timeout, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
    .is_some()
}

/// Calls `function(args)` on `client` and returns once the host has read
/// the call: the answer is left to await.
///
/// The proof is a ping sent behind the call on the same connection: a host
/// reads a connection's frames in order and starts each call before it
/// reads the next frame, so its pong means the call is in flight there.
/// A call that is refused or answered at once is in flight too, briefly;
/// the caller sees that in the answer.
///
/// # Panics
///
/// When the host does not answer the ping.
pub async fn call_in_flight(
    client: &Client,
    function: &str,
    args: Vec<Value>,
) -> JoinHandle<Result<Value, CallError>> {
    let mut call = Box::pin({
        let (client, function) = (client.clone(), function.to_owned());
        // Unconstrained: the one poll below must not be cut short by the
        // runtime's task budget before the call reaches the connection.
        tokio::task::unconstrained(async move { client.call_value(&function, args).await })
    });
    // A call queues its frame in its first poll (its one await before
    // that, for a call slot, is ready while the connection has one free),
    // so the ping below goes out after it.
    if let std::task::Poll::Ready(result) = futures::poll!(call.as_mut()) {
        panic!("`{function}` ended before the host could read it: {result:?}");
    }
    let answer = tokio::spawn(call);
    client.ping().await.expect("ping the host behind the call");
    answer
}
