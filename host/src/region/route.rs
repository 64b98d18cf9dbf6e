//! The routing decision: run a call here, or forward it to the
//! best peer that serves it, failing over and hedging when that is safe.
//!
//! 1. The function is hosted here ([`Local`]): run it.
//! 2. Otherwise the candidates are the peers whose catalog has it (or, when
//!    none has it, the hosts of the regions the most specific matching
//!    `[routes]` entry names). Order: healthy before ejected before
//!    unreachable; among equals, a peer that is late (calls waiting on it
//!    past its usual latency with no word from it) after one that is not;
//!    same region before other regions; then `[routes]` order; then
//!    smoothed RTT × load.
//! 3. Forward with one more hop, this region added to the visited list and
//!    the remaining deadline. Visited regions and the hop limit are never
//!    crossed: `loop_detected`.
//! 4. Fail over to the next candidate when the call certainly did not run
//!    there, or when it may have run and the function is idempotent
//!    ([`retryable`]). Idempotent calls are also hedged: a late attempt gets
//!    a second one beside it on the next candidate. Attempts, backoff and a
//!    retry budget bound both, and the deadline always wins.
//! 5. No candidate at all: `not_found`.
//!
//! The router knows no sockets and no wasmtime: it runs local calls through
//! [`Local`] and reaches peers through their [`Link`](super::peers::Link),
//! so every rule above is unit-tested with fakes (`route/tests.rs`).

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ciborium::Value;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::Instant;

use super::keys::{KeyRank, Keyed, Keys};
use super::peers::{Health, Peer, Peers, merge_served};
use crate::observe::trace::trace_id;
use crate::observe::{Attempt, CallMeter, CallTrace, Metrics, Placement as Where, Tracing};
use crate::protocol::retry::{RetryPolicy, retryable};
use crate::protocol::{CallError, DEFAULT_HOP_LIMIT, ErrorCode, FunctionInfo, Processed};
use crate::service::{CallContext, CallRequest, Service};

/// What runs calls on this host: the loaded plugins in a host, a fake in the
/// router's tests. The router decides; this executes.
pub trait Local: Send + Sync + 'static {
    /// Starts `request` here when this host serves its function, else hands
    /// the request back. Nested calls the handler makes go to `nested`;
    /// `region` is this host's region. A call run here names its function
    /// to `meter` ([`CallMeter::local`]).
    fn run(
        &self,
        request: CallRequest,
        nested: Arc<dyn Service>,
        region: Arc<str>,
        meter: &mut CallMeter,
    ) -> Placement<impl Future<Output = Result<Value, CallError>> + Send>;

    /// The functions this host runs itself, as served by `region`.
    fn catalog(&self, region: &str) -> Vec<FunctionInfo>;

    /// Whether this host runs `function` itself.
    fn serves(&self, function: &str) -> bool;

    /// Changes whenever [`Local::catalog`] does.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// Where [`Local::run`] put a call.
pub enum Placement<F> {
    /// It runs here: the call's future.
    Here(F),
    /// This host does not serve the function: the request, to forward.
    Elsewhere(CallRequest),
}

/// How the router forwards, retries and hedges.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Forwards a call may make before `loop_detected`.
    pub hop_limit: u32,
    /// Attempts per call and the backoff before a call that may have run is
    /// tried again elsewhere.
    pub retry: RetryPolicy,
    /// Retries and hedges allowed per `budget_window`: `budget_min` plus
    /// `budget_ratio` of the calls forwarded in it, or in the window just
    /// before if that had more.
    pub budget_ratio: f64,
    pub budget_min: u32,
    pub budget_window: Duration,
    /// Hedging of idempotent calls: a second attempt goes to the next
    /// candidate when the first has not answered within the first peer's
    /// usual latency (mean + 4 deviations of its answered calls), bounded by
    /// `hedge_min` and `hedge_max`. `hedge_max` of zero turns hedging off.
    pub hedge_min: Duration,
    pub hedge_max: Duration,
    /// The first candidate among equally ranked peers is the better-scored
    /// of two picked at random (power of two choices), which spreads calls
    /// over peers that look alike; `false`: always the best-scored.
    pub two_choices: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            hop_limit: DEFAULT_HOP_LIMIT,
            retry: RetryPolicy::default(),
            budget_ratio: 0.2,
            budget_min: 10,
            budget_window: Duration::from_secs(10),
            hedge_min: Duration::from_millis(10),
            hedge_max: Duration::from_secs(1),
            two_choices: true,
        }
    }
}

/// Counts forwarded calls and extra attempts (retries and hedges) in a
/// window, and refuses extra attempts past `budget_min` + `budget_ratio` of
/// the calls: under a wide failure, retries cannot multiply the load. The
/// calls of the previous window count too while the current one is young,
/// so a new window does not start with only `budget_min` to spend.
struct RetryBudget {
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    calls: u32,
    retries: u32,
    /// Calls of the window before, if it ended just before this one began.
    previous_calls: u32,
}

impl RetryBudget {
    fn new() -> Self {
        RetryBudget {
            window: Mutex::new(Window {
                started: Instant::now(),
                calls: 0,
                retries: 0,
                previous_calls: 0,
            }),
        }
    }

    fn with_window<T>(&self, config: &RoutingConfig, f: impl FnOnce(&mut Window) -> T) -> T {
        let mut window = self.window.lock().expect("budget lock");
        let age = window.started.elapsed();
        if age >= config.budget_window {
            let previous_calls = if age < config.budget_window * 2 {
                window.calls
            } else {
                0
            };
            *window = Window {
                started: Instant::now(),
                calls: 0,
                retries: 0,
                previous_calls,
            };
        }
        f(&mut window)
    }

    fn record_call(&self, config: &RoutingConfig) {
        self.with_window(config, |window| window.calls += 1);
    }

    fn try_retry(&self, config: &RoutingConfig) -> bool {
        self.with_window(config, |window| {
            let calls = window.calls.max(window.previous_calls);
            let allowed = config.budget_min + (f64::from(calls) * config.budget_ratio) as u32;
            let ok = window.retries < allowed;
            if ok {
                window.retries += 1;
            }
            ok
        })
    }
}

/// `[routes]`: (pattern, preferred regions).
pub type Routes = Vec<(String, Vec<String>)>;

/// The `[routes]` entry for `function`: the most specific pattern that
/// matches it wins (the function's own name, then the longest prefix, then
/// `*`), whatever the order of the file.
fn route_for<'r>(routes: &'r Routes, function: &str) -> Option<&'r [String]> {
    routes
        .iter()
        .filter_map(|(pattern, regions)| {
            let specificity = match pattern.strip_suffix('*') {
                Some(prefix) if function.starts_with(prefix) => prefix.len(),
                None if pattern == function => usize::MAX,
                _ => return None,
            };
            Some((specificity, regions))
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, regions)| regions.as_slice())
}

/// Routes calls for one host. Implements [`Service`] for the server and for
/// the guests' nested calls.
pub struct Router<L> {
    region: Arc<str>,
    /// This host's address as `regions.toml` lists it: its name in the
    /// rendezvous order of keys.
    addr: Arc<str>,
    local: L,
    peers: Arc<Peers>,
    routes: RwLock<Arc<Routes>>,
    keys: RwLock<Arc<Keys>>,
    config: RoutingConfig,
    budget: RetryBudget,
    metrics: Metrics,
    tracing: Tracing,
}

/// How the attempts of one forwarded call went, for its final error.
#[derive(Default)]
struct Attempts {
    /// `region` (address) of every host that failed.
    tried: Vec<String>,
    all_not_found: bool,
    may_have_run: bool,
    last: Option<CallError>,
    /// Retries made after failures that may have run: their backoff grows.
    maybe_retries: u32,
}

impl<L: Local> Router<L> {
    pub fn new(
        region: &str,
        local: L,
        peers: Arc<Peers>,
        routes: Routes,
        config: RoutingConfig,
    ) -> Self {
        Router {
            region: region.into(),
            addr: "".into(),
            local,
            peers,
            routes: RwLock::new(Arc::new(routes)),
            keys: RwLock::new(Arc::new(Keys::default())),
            config,
            budget: RetryBudget::new(),
            metrics: Metrics::off(),
            tracing: Tracing::off(),
        }
    }

    /// Routes calls by the `[keys]` rules `keys`; `addr` is this host's
    /// address as `regions.toml` lists it (its place in each key's order).
    pub fn with_keys(mut self, addr: &str, keys: Keys) -> Self {
        self.addr = addr.into();
        self.keys = RwLock::new(Arc::new(keys));
        self
    }

    /// Records this host's span of each sampled call through `tracing`.
    pub fn with_tracing(mut self, tracing: Tracing) -> Self {
        self.tracing = tracing;
        self
    }

    /// Counts calls, forward attempts and budget refusals in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The `[routes]` table in force.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().expect("routes lock").clone()
    }

    /// The `[keys]` rules in force.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().expect("keys lock").clone()
    }

    /// Replaces the `[keys]` rules (after `regions.toml` changed).
    pub fn set_keys(&self, keys: Keys) {
        *self.keys.write().expect("keys lock") = Arc::new(keys);
    }

    async fn route(
        self: Arc<Self>,
        request: CallRequest,
        meter: &mut CallMeter,
        trace: &mut CallTrace,
    ) -> Result<Value, CallError> {
        if request.context.hops > self.config.hop_limit {
            return Err(loop_detected(format!(
                "`{}` arrived after {} hops, over the hop limit of {}",
                request.function, request.context.hops, self.config.hop_limit
            )));
        }
        let keyed = {
            let keys = self.keys.read().expect("keys lock");
            if keys.is_empty() {
                None
            } else {
                keys.keyed(&request)
            }
        };
        if let Some(keyed) = &keyed
            && !request.from_peer
            && self.local.serves(&request.function)
        {
            return self.route_keyed_here(request, keyed, meter, trace).await;
        }
        let nested: Arc<dyn Service> = self.clone();
        let request = match self.local.run(request, nested, self.region.clone(), meter) {
            Placement::Here(running) => {
                trace.placed(Where::Local);
                return running.await;
            }
            Placement::Elsewhere(request) => request,
        };
        let (candidates, idempotent) = self.plan(&request, keyed.as_ref())?;
        if self.metrics.is_on() && candidates[0].serves(&request.function).is_some() {
            meter.known(&request.function, Where::Forwarded);
        }
        trace.placed(Where::Forwarded);
        self.forward(request, candidates, idempotent).await
    }

    /// A keyed call for a function this host serves too: it runs here when
    /// this host comes first in the key's order; otherwise the hosts ahead
    /// of this one are tried in that order, and this host takes the call
    /// when none of them did and it surely did not run (or the function is
    /// idempotent).
    async fn route_keyed_here(
        self: Arc<Self>,
        request: CallRequest,
        keyed: &Keyed,
        meter: &mut CallMeter,
        trace: &mut CallTrace,
    ) -> Result<Value, CallError> {
        let here = (Health::Up, keyed.rank(&self.addr, &self.region));
        let ahead = match self.plan(&request, Some(keyed)) {
            Ok((candidates, idempotent)) => {
                let ahead: Vec<Arc<Peer>> = candidates
                    .into_iter()
                    .take_while(|peer| self.keyed_rank(peer, keyed) < here)
                    .collect();
                (!ahead.is_empty()).then_some((ahead, idempotent))
            }
            // No peer may take it (none serves it, or every one is
            // excluded by the call's path): this host is the only one.
            Err(_) => None,
        };
        let nested: Arc<dyn Service> = self.clone();
        let Some((ahead, idempotent)) = ahead else {
            return match self.local.run(request, nested, self.region.clone(), meter) {
                Placement::Here(running) => {
                    trace.placed(Where::Local);
                    running.await
                }
                // Unloaded since the check: route it as a call not served here.
                Placement::Elsewhere(request) => {
                    let (candidates, idempotent) = self.plan(&request, Some(keyed))?;
                    trace.placed(Where::Forwarded);
                    self.forward(request, candidates, idempotent).await
                }
            };
        };
        tracing::debug!(function = %request.function, owner = %ahead[0].addr, trace_id = %trace_id(&request.context.metadata), "the call's key belongs to another host");
        if self.metrics.is_on() {
            meter.known(&request.function, Where::Forwarded);
        }
        trace.placed(Where::Forwarded);
        let fallback = CallRequest {
            function: request.function.clone(),
            args: request.args.clone(),
            context: request.context.clone(),
            from_peer: false,
        };
        let error = match self.forward(request, ahead, idempotent).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let may_run_here = matches!(
            error.code,
            ErrorCode::Unavailable | ErrorCode::ResourceExhausted | ErrorCode::NotFound
        ) && (error.processed == Processed::No || idempotent);
        if !may_run_here {
            return Err(error);
        }
        tracing::debug!(function = %fallback.function, trace_id = %trace_id(&fallback.context.metadata), "no host ahead of this one in the key's order took the call ({}); running it here", error.message);
        match self.local.run(fallback, nested, self.region.clone(), meter) {
            Placement::Here(running) => running.await,
            Placement::Elsewhere(_) => Err(error),
        }
    }

    /// Where `peer` stands in the order of a keyed call: usable hosts
    /// first (healthy, then ejected, then unreachable), then the key's own
    /// order. Lateness does not count: a host that is merely slower than
    /// usual keeps its keys (a key that moved with every burst of load
    /// would lose what pinning it is for); one that hangs loses them when
    /// it is declared dead.
    fn keyed_rank(&self, peer: &Peer, keyed: &Keyed) -> (Health, KeyRank) {
        (peer.health(), keyed.rank(&peer.addr, &peer.region))
    }

    /// The longest a peer's calls may wait before it counts as late: the
    /// hedge bound, or the default one when hedging is off.
    fn late_max(&self) -> Duration {
        if self.config.hedge_max.is_zero() {
            RoutingConfig::default().hedge_max
        } else {
            self.config.hedge_max
        }
    }

    /// Replaces the `[routes]` table (after `regions.toml` changed).
    pub fn set_routes(&self, routes: Routes) {
        *self.routes.write().expect("routes lock") = Arc::new(routes);
    }

    /// The peer links, for reconfiguration.
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    /// The peers to try, best first, and whether the function is idempotent
    /// (every host listing it says so). A keyed call's peers follow its key
    /// ([`Router::keyed_rank`]) instead of region, `[routes]` and score.
    fn plan(
        &self,
        request: &CallRequest,
        keyed: Option<&Keyed>,
    ) -> Result<(Vec<Arc<Peer>>, bool), CallError> {
        let function = &request.function;
        let routes = self.routes.read().expect("routes lock").clone();
        let preference = route_for(&routes, function);
        let peers = self.peers.list();
        // A call that was just forwarded within this region stays here.
        let same_region_ok =
            request.context.visited.last().map(String::as_str) != Some(&*self.region);
        let allowed = |peer: &Peer| {
            if peer.region == *self.region {
                same_region_ok
            } else {
                !request.context.visited.contains(&peer.region)
            }
        };

        let mut idempotent = true;
        let mut by_route = false;
        let mut known: Vec<Arc<Peer>> = Vec::new();
        for peer in peers.iter() {
            if let Some(declared) = peer.serves(function) {
                idempotent &= declared;
                known.push(peer.clone());
            }
        }
        if known.is_empty() {
            // Nobody we know serves it; a matching route may know better.
            idempotent = false;
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
        let candidates: Vec<Arc<Peer>> = known.iter().filter(|p| allowed(p)).cloned().collect();
        if candidates.is_empty() {
            let mut regions: Vec<&str> = known.iter().map(|p| p.region.as_str()).collect();
            regions.dedup();
            if by_route {
                return Err(loop_detected(format!(
                    "no host's catalog lists `{function}`, and the regions its route names were \
                     all visited ({}; visited: {}): check [routes] for a cycle",
                    regions.join(", "),
                    request.context.visited.join(", ")
                )));
            }
            return Err(loop_detected(format!(
                "every region serving `{function}` was already visited ({}; visited: {})",
                regions.join(", "),
                request.context.visited.join(", ")
            )));
        }
        if request.context.hops >= self.config.hop_limit {
            return Err(loop_detected(format!(
                "forwarding `{function}` would exceed the hop limit of {}",
                self.config.hop_limit
            )));
        }
        if let Some(keyed) = keyed {
            let mut ranked: Vec<_> = candidates
                .into_iter()
                .map(|peer| (self.keyed_rank(&peer, keyed), peer))
                .collect();
            ranked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.addr.cmp(&b.1.addr)));
            let candidates = ranked.into_iter().map(|(_, peer)| peer).collect();
            return Ok((candidates, idempotent));
        }
        // Lateness is judged with the hedge bounds, or the default ones when
        // hedging is off.
        let late_max = self.late_max();
        let rank = |peer: &Peer| {
            let tier = u8::from(peer.region != *self.region);
            let preferred = preference
                .and_then(|regions| regions.iter().position(|r| *r == peer.region))
                .unwrap_or(usize::MAX);
            let late = peer.is_late(self.config.hedge_min, late_max);
            (peer.health(), late, tier, preferred)
        };
        // Each peer's state is read once, not at every comparison.
        let mut ranked: Vec<_> = candidates
            .into_iter()
            .map(|peer| (rank(&peer), peer.score(), peer))
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.total_cmp(&b.1)));
        // Power of two choices among the best tier: the first candidate is
        // the better-scored of two picked at random, not always the best.
        // Scores come from reports up to a few pings old; were every host
        // to send each new call to the one peer that looked best, they would
        // all pile onto it and then all leave it together. The worst of the
        // tier is never first, and with two peers this is plain sorting.
        let tier = ranked.iter().take_while(|r| r.0 == ranked[0].0).count();
        if self.config.two_choices && tier > 2 {
            let first = fastrand::usize(..tier);
            let second = (first + 1 + fastrand::usize(..tier - 1)) % tier;
            // Sorted by score: the lower index is the better of the two.
            let chosen = first.min(second);
            ranked[..=chosen].rotate_right(1);
        }
        let candidates = ranked.into_iter().map(|(_, _, peer)| peer).collect();
        Ok((candidates, idempotent))
    }

    /// Forwards `request` to `candidates` in order until one answers, the
    /// failure is not safe to retry, or the attempts, the budget or the
    /// deadline run out.
    ///
    /// Idempotent calls are hedged: when an attempt has not answered within
    /// its peer's hedge delay, the next candidate gets one too, and the first
    /// answer wins. The attempts still running when the call ends are
    /// dropped, which cancels them on their hosts.
    async fn forward(
        &self,
        mut request: CallRequest,
        candidates: Vec<Arc<Peer>>,
        idempotent: bool,
    ) -> Result<Value, CallError> {
        // Every attempt carries the same context: one more hop, this region
        // visited, the same absolute deadline, cancelled with the call.
        let forwarded = request.context.forwarded(&self.region);
        self.budget.record_call(&self.config);
        let max_attempts = candidates
            .len()
            .min(self.config.retry.max_attempts.max(1) as usize);
        let mut attempts = Attempts {
            all_not_found: true,
            ..Attempts::default()
        };
        if max_attempts == 1 {
            // One host to ask: no failover, no hedge, nothing to race.
            let peer = &candidates[0];
            let args = std::mem::take(&mut request.args);
            tracing::debug!(function = %request.function, peer = %peer.addr, region = %peer.region, hops = forwarded.hops, trace_id = %trace_id(&forwarded.metadata), "forwarding");
            self.metrics.forward_attempt(&peer.region, Attempt::First);
            let error = match peer.call(&request.function, args, &forwarded).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            return Err(
                if self.note_failure(&request, peer, error, idempotent, &mut attempts) {
                    self.give_up(&request, attempts)
                } else {
                    attempts.last.expect("failure noted")
                },
            );
        }
        let hedging = idempotent && !self.config.hedge_max.is_zero();
        let mut running = FuturesUnordered::new();
        // When to start the next attempt while others run: the hedge delay,
        // or the backoff after a failure.
        let mut start_next: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        // What the next attempt started by `start_next` is.
        let mut due = Attempt::Hedge;
        let mut next = 0;
        loop {
            let mut kind = if next == 0 {
                Attempt::First
            } else {
                Attempt::Failover
            };
            if running.is_empty() {
                if next >= max_attempts
                    || !self
                        .may_retry(&request, &mut attempts, next, &candidates)
                        .await
                {
                    break;
                }
            } else {
                let start_due = async {
                    match start_next.as_mut() {
                        Some(sleep) => sleep.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    Some((index, result)) = running.next() => {
                        let index: usize = index;
                        let error = match result {
                            Ok(value) => return Ok(value),
                            Err(error) => error,
                        };
                        if !self.note_failure(&request, &candidates[index], error, idempotent, &mut attempts) {
                            return Err(attempts.last.expect("failure noted"));
                        }
                        if !running.is_empty() && next < max_attempts {
                            // Another attempt still runs: the next starts
                            // beside it after the usual wait.
                            let wait = self.retry_wait(&mut attempts);
                            start_next = Some(Box::pin(tokio::time::sleep(wait)));
                            due = Attempt::Failover;
                        }
                        continue;
                    }
                    () = start_due => {
                        start_next = None;
                        if next >= max_attempts {
                            continue;
                        }
                        if !self.budget.try_retry(&self.config) {
                            tracing::debug!(function = %request.function, trace_id = %trace_id(&request.context.metadata), "no further attempt: the retry budget is spent");
                            self.metrics.retry_budget_refusal(&candidates[next].region);
                            continue;
                        }
                        kind = due;
                        tracing::debug!(function = %request.function, peer = %candidates[next].addr, trace_id = %trace_id(&request.context.metadata), "starting another attempt beside the one running");
                    }
                }
            }
            let peer = &candidates[next];
            // The last attempt allowed takes the arguments; earlier ones copy.
            let args = if next + 1 >= max_attempts {
                std::mem::take(&mut request.args)
            } else {
                request.args.clone()
            };
            tracing::debug!(function = %request.function, peer = %peer.addr, region = %peer.region, hops = forwarded.hops, trace_id = %trace_id(&forwarded.metadata), "forwarding");
            self.metrics.forward_attempt(&peer.region, kind);
            running.push(attempt(next, peer, &request.function, args, &forwarded));
            due = Attempt::Hedge;
            start_next = (hedging && next + 1 < max_attempts).then(|| {
                let delay = peer.hedge_delay(self.config.hedge_min, self.config.hedge_max);
                Box::pin(tokio::time::sleep(delay))
            });
            next += 1;
        }
        Err(self.give_up(&request, attempts))
    }

    /// Whether attempt number `next` (from 0) may start now that no other
    /// runs: the first always; a retry when the budget allows, after its
    /// wait, and within the deadline.
    async fn may_retry(
        &self,
        request: &CallRequest,
        attempts: &mut Attempts,
        next: usize,
        candidates: &[Arc<Peer>],
    ) -> bool {
        if next == 0 {
            return true;
        }
        if !self.budget.try_retry(&self.config) {
            tracing::warn!(function = %request.function, trace_id = %trace_id(&request.context.metadata), "retry budget exhausted");
            self.metrics.retry_budget_refusal(&candidates[next].region);
            return false;
        }
        let wait = self.retry_wait(attempts);
        if wait >= request.remaining() {
            return false;
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }

    /// How long to wait before trying again after the last failure: nothing
    /// when it certainly did not run (another host is tried at once), a
    /// growing, jittered backoff when it may have.
    fn retry_wait(&self, attempts: &mut Attempts) -> Duration {
        match &attempts.last {
            Some(error) if error.processed != Processed::No => {
                let wait = self
                    .config
                    .retry
                    .backoff(attempts.maybe_retries, fastrand::f64());
                attempts.maybe_retries += 1;
                wait
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed attempt on `peer`; `false` when the error is final
    /// (not safe or not worth retrying), which is then `attempts.last`.
    fn note_failure(
        &self,
        request: &CallRequest,
        peer: &Peer,
        error: CallError,
        idempotent: bool,
        attempts: &mut Attempts,
    ) -> bool {
        // A host that no longer serves the function had a stale catalog
        // entry: nothing ran, so another host may still serve it.
        let stale = error.code == ErrorCode::NotFound && error.processed == Processed::No;
        let go_on = stale || retryable(&error, idempotent);
        if go_on {
            tracing::debug!(function = %request.function, peer = %peer.addr, trace_id = %trace_id(&request.context.metadata), "failing over: {error}");
            attempts
                .tried
                .push(format!("`{}` ({})", peer.region, peer.addr));
            attempts.all_not_found &= stale;
            attempts.may_have_run |= error.processed != Processed::No;
        }
        attempts.last = Some(error);
        go_on
    }

    /// The error of a call no attempt answered.
    fn give_up(&self, request: &CallRequest, attempts: Attempts) -> CallError {
        if attempts.all_not_found && !attempts.tried.is_empty() {
            // Every host asked had stopped serving it (catalogs were stale).
            return CallError::not_found(&request.function);
        }
        let processed = if attempts.may_have_run {
            Processed::Maybe
        } else {
            Processed::No
        };
        if request.remaining().is_zero() {
            return CallError::deadline_exceeded(processed);
        }
        let why = attempts
            .last
            .map_or_else(String::new, |e| format!(": {}", e.message));
        CallError::new(
            ErrorCode::Unavailable,
            processed,
            format!(
                "no host serving `{}` answered; tried region {}{why}",
                request.function,
                attempts.tried.join(", ")
            ),
        )
    }
}

/// One attempt on `peer`, tagged with its candidate index.
async fn attempt(
    index: usize,
    peer: &Peer,
    function: &str,
    args: Vec<Value>,
    context: &CallContext,
) -> (usize, Result<Value, CallError>) {
    (index, peer.call(function, args, context).await)
}

fn loop_detected(message: String) -> CallError {
    CallError::new(ErrorCode::LoopDetected, Processed::No, message)
}

impl<L: Local> Service for Router<L> {
    fn call(
        self: Arc<Self>,
        mut request: CallRequest,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        Box::pin(async move {
            let mut meter = self.metrics.start_call();
            // This host's span: what the call causes (attempts, nested
            // calls) names it as parent through the rewritten metadata.
            let mut trace = self
                .tracing
                .enter(&request.function, &mut request.context.metadata);
            let region = self.region.clone();
            let outcome = self
                .route(request, &mut meter, &mut trace)
                .await
                .map_err(|e| e.in_region(&region));
            meter.finish(&outcome);
            trace.finish(&outcome);
            outcome
        })
    }

    fn knows(&self, function: &str) -> bool {
        self.local.serves(function)
            || self
                .peers
                .list()
                .iter()
                .any(|p| p.serves(function).is_some())
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
        self.local.catalog(&self.region)
    }

    fn local_changes(&self) -> watch::Receiver<u64> {
        self.local.changes()
    }
}

#[cfg(test)]
mod tests;
