//! The routing decision (DESIGN §5): run a call here, or forward it to the
//! best peer that serves it, failing over when that is safe.
//!
//! 1. The function is hosted here: run it.
//! 2. Otherwise the candidates are the peers whose catalog has it (or, when
//!    none has it, the hosts of the regions a matching `[routes]` entry
//!    names). Order: healthy before ejected before unreachable; same region
//!    before other regions; then `[routes]` order; then smoothed RTT × load.
//! 3. Forward with one more hop, this region added to the visited list and
//!    the remaining deadline. Visited regions and the hop limit are never
//!    crossed: `loop_detected`.
//! 4. Fail over to the next candidate when the call certainly did not run
//!    there, or when it may have run and the function is idempotent. Attempts,
//!    backoff and a retry budget bound this, and the deadline always wins.
//! 5. No candidate at all: `not_found`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ciborium::Value;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::peers::{Peer, Peers, merge_served};
use crate::net::CallOptions;
use crate::plugins::Registry;
use crate::protocol::{CallError, ErrorCode, FunctionInfo, Processed};
use crate::runtime::Runtime;
use crate::service::{CallRequest, Service};

/// Bounds on failover.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before retrying a call that may have run: `base` × 2ⁿ ± 20%,
    /// at most `max`. Calls that certainly did not run fail over at once.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retries allowed per window: `budget_min` plus `budget_ratio` of calls.
    pub budget_ratio: f64,
    pub budget_min: u32,
    pub budget_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget_ratio: 0.2,
            budget_min: 10,
            budget_window: Duration::from_secs(10),
        }
    }
}

/// Counts forwarded calls and retries in a window (Envoy/Linkerd-style budget).
struct RetryBudget {
    window: Mutex<(Instant, u32, u32)>,
}

impl RetryBudget {
    fn new() -> Self {
        RetryBudget {
            window: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    fn with_window<T>(&self, policy: &RetryPolicy, f: impl FnOnce(&mut u32, &mut u32) -> T) -> T {
        let mut window = self.window.lock().expect("budget lock");
        if window.0.elapsed() >= policy.budget_window {
            *window = (Instant::now(), 0, 0);
        }
        let (_, calls, retries) = &mut *window;
        f(calls, retries)
    }

    fn record_call(&self, policy: &RetryPolicy) {
        self.with_window(policy, |calls, _| *calls += 1);
    }

    fn try_retry(&self, policy: &RetryPolicy) -> bool {
        self.with_window(policy, |calls, retries| {
            let allowed = policy.budget_min + (f64::from(*calls) * policy.budget_ratio) as u32;
            let ok = *retries < allowed;
            if ok {
                *retries += 1;
            }
            ok
        })
    }
}

/// `[routes]`: (pattern, preferred regions), in file order.
pub type Routes = Vec<(String, Vec<String>)>;

/// Routes calls for one host. Implements [`Service`] for the server and for
/// the guests' nested calls.
pub struct Router {
    region: Arc<str>,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    peers: Arc<Peers>,
    routes: RwLock<Arc<Routes>>,
    hop_limit: u32,
    retry: RetryPolicy,
    budget: RetryBudget,
}

impl Router {
    pub fn new(
        region: &str,
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        peers: Arc<Peers>,
        routes: Vec<(String, Vec<String>)>,
        hop_limit: u32,
    ) -> Self {
        Router {
            region: region.into(),
            runtime,
            registry,
            peers,
            routes: RwLock::new(Arc::new(routes)),
            hop_limit,
            retry: RetryPolicy::default(),
            budget: RetryBudget::new(),
        }
    }

    async fn route(self: Arc<Self>, request: CallRequest) -> Result<Value, CallError> {
        if request.hops > self.hop_limit {
            return Err(loop_detected(format!(
                "`{}` arrived after {} hops, over the hop limit of {}",
                request.function, request.hops, self.hop_limit
            )));
        }
        let local = self.registry.snapshot().lookup(&request.function);
        if let Some((plugin, index, reuse)) = local {
            let router: Arc<dyn Service> = self.clone();
            return self
                .runtime
                .call(plugin, index, request, router, self.region.clone(), reuse)
                .await;
        }
        let (candidates, idempotent) = self.plan(&request)?;
        self.forward(request, candidates, idempotent).await
    }

    /// Replaces the `[routes]` table (after `regions.toml` changed).
    pub fn set_routes(&self, routes: Routes) {
        *self.routes.write().expect("routes lock") = Arc::new(routes);
    }

    /// The peer links, for reconfiguration.
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    /// The preferred regions for `function` from `[routes]`, if any pattern matches.
    fn preference(&self, function: &str) -> Option<Vec<String>> {
        self.routes
            .read()
            .expect("routes lock")
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => function.starts_with(prefix),
                None => pattern == function,
            })
            .map(|(_, regions)| regions.clone())
    }

    /// The peers to try, best first, and whether the function is idempotent.
    fn plan(&self, request: &CallRequest) -> Result<(Vec<Arc<Peer>>, bool), CallError> {
        let function = &request.function;
        let preference = self.preference(function);
        let preference = preference.as_deref();
        let peers = self.peers.list();
        // A call that was just forwarded within this region stays here.
        let same_region_ok = request.visited.last().map(String::as_str) != Some(&*self.region);
        let allowed = |peer: &Peer| {
            if peer.region == *self.region {
                same_region_ok
            } else {
                !request.visited.contains(&peer.region)
            }
        };

        let mut idempotent = false;
        let mut by_route = false;
        let mut known: Vec<Arc<Peer>> = Vec::new();
        for peer in peers.iter() {
            if let Some(info) = peer.lookup(function) {
                idempotent |= info.idempotent;
                known.push(peer.clone());
            }
        }
        if known.is_empty() {
            // Nobody we know serves it; a matching route may know better.
            if let Some(regions) = preference {
                by_route = true;
                known = peers
                    .iter()
                    .filter(|p| regions.contains(&p.region))
                    .cloned()
                    .collect();
            }
        }
        if known.is_empty() {
            return Err(CallError::not_found(function));
        }
        let mut candidates: Vec<Arc<Peer>> = known.iter().filter(|p| allowed(p)).cloned().collect();
        if candidates.is_empty() {
            let mut regions: Vec<&str> = known.iter().map(|p| p.region.as_str()).collect();
            regions.dedup();
            if by_route {
                return Err(loop_detected(format!(
                    "no host's catalog lists `{function}`, and the regions its route names were \
                     all visited ({}; visited: {}): check [routes] for a cycle",
                    regions.join(", "),
                    request.visited.join(", ")
                )));
            }
            return Err(loop_detected(format!(
                "every region serving `{function}` was already visited ({}; visited: {})",
                regions.join(", "),
                request.visited.join(", ")
            )));
        }
        if request.hops >= self.hop_limit {
            return Err(loop_detected(format!(
                "forwarding `{function}` would exceed the hop limit of {}",
                self.hop_limit
            )));
        }
        let rank = |peer: &Peer| {
            let tier = u8::from(peer.region != *self.region);
            let preferred = preference
                .and_then(|regions| regions.iter().position(|r| *r == peer.region))
                .unwrap_or(usize::MAX);
            (peer.health(), tier, preferred)
        };
        candidates.sort_by(|a, b| {
            rank(a)
                .cmp(&rank(b))
                .then_with(|| a.score().total_cmp(&b.score()))
        });
        Ok((candidates, idempotent))
    }

    async fn forward(
        &self,
        mut request: CallRequest,
        candidates: Vec<Arc<Peer>>,
        idempotent: bool,
    ) -> Result<Value, CallError> {
        let mut visited = request.visited.clone();
        if visited.last().map(String::as_str) != Some(&*self.region) {
            visited.push(self.region.to_string());
        }
        self.budget.record_call(&self.retry);
        let mut tried: Vec<String> = Vec::new();
        let mut all_not_found = true;
        let mut may_have_run = false;
        let mut last: Option<CallError> = None;
        let mut maybe_retries = 0u32;
        let attempts = candidates.len().min(self.retry.max_attempts as usize);
        for (attempt, peer) in candidates.iter().take(attempts).enumerate() {
            if attempt > 0 && !self.budget.try_retry(&self.retry) {
                tracing::warn!(function = %request.function, "retry budget exhausted");
                break;
            }
            if let Some(error) = &last
                && error.processed != Processed::No
            {
                // It may have run: back off before running it again elsewhere.
                let backoff = self.retry.backoff_base * 2u32.pow(maybe_retries.min(8));
                let backoff = backoff
                    .min(self.retry.backoff_max)
                    .mul_f64(0.8 + fastrand::f64() * 0.4);
                maybe_retries += 1;
                if backoff >= request.remaining() {
                    break;
                }
                tokio::time::sleep(backoff).await;
            }
            let remaining = request.remaining();
            if remaining.is_zero() {
                break;
            }
            tracing::debug!(function = %request.function, peer = %peer.addr, region = %peer.region, hops = request.hops + 1, "forwarding");
            // The router does its own failover across hosts: one attempt each.
            let options = CallOptions {
                timeout: Some(remaining),
                hops: request.hops + 1,
                visited: visited.clone(),
                metadata: request.metadata.clone(),
                ..CallOptions::default()
            };
            // The last attempt allowed takes the arguments; earlier ones copy.
            let args = if attempt + 1 >= attempts {
                std::mem::take(&mut request.args)
            } else {
                request.args.clone()
            };
            let result = peer
                .call(&request.function, args, options, &request.cancel)
                .await;
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            tried.push(format!("`{}` ({})", peer.region, peer.addr));
            let retryable = match error.processed {
                Processed::No => matches!(
                    error.code,
                    ErrorCode::Unavailable | ErrorCode::ResourceExhausted | ErrorCode::NotFound
                ),
                Processed::Maybe => {
                    idempotent
                        && matches!(
                            error.code,
                            ErrorCode::Unavailable | ErrorCode::ResourceExhausted
                        )
                }
                Processed::Yes => false,
            };
            if !retryable {
                return Err(error);
            }
            tracing::debug!(function = %request.function, peer = %peer.addr, "failing over: {error}");
            all_not_found &= error.code == ErrorCode::NotFound;
            may_have_run |= error.processed != Processed::No;
            last = Some(error);
        }
        if all_not_found && !tried.is_empty() {
            // Every host asked had stopped serving it (catalogs were stale).
            return Err(CallError::not_found(&request.function));
        }
        let processed = if may_have_run {
            Processed::Maybe
        } else {
            Processed::No
        };
        if request.remaining().is_zero() {
            return Err(CallError::deadline_exceeded(processed));
        }
        let why = last.map_or_else(String::new, |e| format!(": {}", e.message));
        Err(CallError::new(
            ErrorCode::Unavailable,
            processed,
            format!(
                "no host serving `{}` answered; tried region {}{why}",
                request.function,
                tried.join(", ")
            ),
        ))
    }
}

fn loop_detected(message: String) -> CallError {
    CallError::new(ErrorCode::LoopDetected, Processed::No, message)
}

impl Service for Router {
    fn call(self: Arc<Self>, request: CallRequest) -> BoxFuture<'static, Result<Value, CallError>> {
        Box::pin(async move {
            let region = self.region.clone();
            self.route(request).await.map_err(|e| e.in_region(&region))
        })
    }

    fn catalog(&self) -> Vec<FunctionInfo> {
        let mut all = self.peers.functions();
        for info in self.local_catalog() {
            merge_served(&mut all, &info, &self.region);
        }
        all.into_values()
            .map(|mut info| {
                info.regions.sort();
                info
            })
            .collect()
    }

    fn local_catalog(&self) -> Vec<FunctionInfo> {
        self.registry.snapshot().function_infos(&self.region)
    }

    fn local_changes(&self) -> watch::Receiver<u64> {
        self.registry.changes()
    }
}
