//! Links to the other hosts in `regions.toml`: one multiplexed connection to
//! each, reconnected with backoff, with the peer's catalog, a smoothed RTT
//! and the load the peer reports from pings, the latency of the calls it
//! answers, outlier ejection after consecutive host-level failures, and a
//! dead-peer check that fails the calls in flight on a link that has gone
//! silent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ciborium::Value;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::net::{ClientOptions, Connection, Probe};
use crate::protocol::{CallError, ErrorCode, FunctionInfo, Load, Processed, Role};
use crate::service::CallContext;
use crate::tls::Tls;

/// Timings of peer links; the defaults suit hosts on one network.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Time to connect and exchange `hello`.
    pub connect_timeout: Duration,
    /// How often each link is pinged.
    pub ping_interval: Duration,
    /// Ping intervals in a row in which nothing at all arrives on a link
    /// (no pong, no reply) before the peer is declared dead: its calls in
    /// flight fail at once and the link is redialled.
    pub missed_pings: u32,
    /// First and largest wait between reconnection attempts (±20% jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Consecutive host-level failures before a host is ejected.
    pub eject_after: u32,
    /// Ejection time: `eject_base` × ejections in a row, at most `eject_max`.
    pub eject_base: Duration,
    pub eject_max: Duration,
    /// Dial peers with mutual TLS, as this material says at each dial;
    /// `None`: plaintext.
    pub tls: Option<Arc<Tls>>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            connect_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_millis(500),
            missed_pings: 3,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            eject_after: 5,
            eject_base: Duration::from_secs(30),
            eject_max: Duration::from_secs(300),
            tls: None,
        }
    }
}

impl PeerConfig {
    /// How long a link may stay silent before its peer is declared dead.
    pub fn dead_after(&self) -> Duration {
        self.ping_interval * self.missed_pings
    }

    /// How long the load a peer reported counts: 3 ping intervals, so one
    /// or two lost pongs keep it, and a peer that stopped reporting (its
    /// link is down, or it is an older host) is soon ranked without it.
    pub fn report_fresh_for(&self) -> Duration {
        self.ping_interval * 3
    }
}

/// What a [`Peer`] needs of its connection: a [`Connection`] in a host, a fake in
/// the router's tests.
pub trait Link: Send + Sync + 'static {
    /// Makes one call over the link. Dropping the future cancels the call on
    /// the peer.
    fn call<'a>(
        &'a self,
        function: &'a str,
        args: Vec<Value>,
        context: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value, CallError>>;
}

impl Link for Connection {
    fn call<'a>(
        &'a self,
        function: &'a str,
        args: Vec<Value>,
        context: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value, CallError>> {
        Box::pin(self.call_in(function, args, context))
    }
}

/// One live link: the connection and the token that fails its calls in
/// flight when the peer is declared dead or the link ends.
#[derive(Clone)]
struct Linked {
    link: Arc<dyn Link>,
    ended: CancellationToken,
}

/// One other host.
pub struct Peer {
    /// The address dialled, as written in `regions.toml`.
    pub addr: String,
    pub region: String,
    config: PeerConfig,
    state: Mutex<PeerState>,
    in_flight: AtomicUsize,
    /// Stops this peer's link when it leaves the topology.
    stop: CancellationToken,
}

#[derive(Default)]
struct PeerState {
    linked: Option<Linked>,
    /// Why the last link ended, for the errors of calls it failed.
    ended_because: Option<String>,
    /// The peer's own functions as last pushed; kept while the link is down
    /// so its callers get `unavailable` rather than `not_found`.
    functions: Arc<HashMap<String, FunctionInfo>>,
    /// Smoothed ping round-trip time (RFC 6298 style, gain 1/8).
    srtt: Option<Duration>,
    /// The load the peer reported in its last `pong`, and when it came.
    reported: Option<(Load, Instant)>,
    /// How long the peer takes to answer calls.
    latency: Latency,
    /// Host-level failures in a row (see [`host_failure`]).
    failures: u32,
    /// Ejections in a row: each lasts longer. Reset by an answer after the
    /// last ejection ended.
    ejections: u32,
    ejected_until: Option<Instant>,
    /// Ejections since the host started.
    ejections_total: u64,
    /// Links lost or declared dead since the host started.
    links_lost: u64,
    /// Since when calls to this peer have been waiting without a word from
    /// it (no answer, no pong); `None` when we heard from it after the last
    /// call started. Stays set when those calls are abandoned (a hedge won,
    /// the caller left), so a hung peer keeps looking late until it speaks.
    silent_since: Option<Instant>,
}

/// Smoothed latency of answered calls and its mean deviation (the RFC 6298
/// estimator, applied to whole calls): what a hedge delay is made of.
#[derive(Debug, Default, Clone, Copy)]
pub struct Latency {
    mean: Option<Duration>,
    deviation: Duration,
}

impl Latency {
    /// Takes in one call's latency.
    pub fn observe(&mut self, sample: Duration) {
        match self.mean {
            None => {
                self.mean = Some(sample);
                self.deviation = sample / 2;
            }
            Some(mean) => {
                let error = mean.abs_diff(sample);
                self.deviation = self.deviation.mul_f64(0.75) + error.mul_f64(0.25);
                self.mean = Some(mean.mul_f64(0.875) + sample.mul_f64(0.125));
            }
        }
    }

    /// How long a call may take before it looks late: mean + 4 × deviation,
    /// within `[min, max]`; `max` while nothing has been measured.
    pub fn late_after(&self, min: Duration, max: Duration) -> Duration {
        match self.mean {
            Some(mean) => (mean + self.deviation * 4).clamp(min, max.max(min)),
            None => max.max(min),
        }
    }
}

/// How usable a peer is right now, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Up,
    Ejected,
    Down,
}

/// A peer as an operator sees it at one moment.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    pub region: String,
    pub addr: String,
    pub health: Health,
    /// Smoothed ping round-trip time, once measured.
    pub rtt: Option<Duration>,
    pub in_flight: usize,
    /// The load the peer last reported, and how long ago, while it counts
    /// (see [`PeerConfig::report_fresh_for`]).
    pub reported: Option<(Load, Duration)>,
    /// The figure the router ranks the peer by, after health, lateness,
    /// region and `[routes]` order ([`Peer::score`]): lower is better.
    pub score: f64,
    /// Host-level failures in a row.
    pub failures: u32,
    /// Time left of the current ejection.
    pub ejected_for: Option<Duration>,
    /// Ejections since this host started.
    pub ejections: u64,
    /// Links lost (closed, broken, or the peer declared dead) since this
    /// host started.
    pub links_lost: u64,
    /// Functions in the peer's catalog.
    pub functions: usize,
    /// Why the link is down, when it is.
    pub down_because: Option<String>,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Ejected => "ejected",
            Health::Down => "down",
        }
    }
}

/// Counts a call in flight to a peer for as long as it lives, however its
/// future ends (answered, failed, or dropped by a caller that went away).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// [`Peer::score`] of a peer with smoothed round trip `srtt`, `ours` calls
/// of ours in flight to it, and the load it reported, if that counts.
fn score(srtt: Option<Duration>, ours: usize, report: Option<&Load>) -> f64 {
    let srtt = srtt.map_or(1.0, |d| d.as_secs_f64());
    let ours = ours as f64;
    let (others, busy) = match report {
        Some(load) => {
            let others = (load.in_flight as f64 - ours).max(0.0);
            let instances = if load.instances_max == 0 {
                0.0
            } else {
                load.instances as f64 / load.instances_max as f64
            };
            let cpu = load.cpu.filter(|c| c.is_finite()).unwrap_or(0.0);
            (others, cpu.max(instances).clamp(0.0, 0.9))
        }
        None => (0.0, 0.0),
    };
    srtt * (1.0 + (ours + others) / 4.0) / (1.0 - busy)
}

/// Whether `error`, from a call to a host of `region`, says the host (or the
/// link to it) is failing, rather than the handler or the caller: ejection
/// counts these.
///
/// - Errors without a region come from our side of the link: the peer could
///   not be reached, the link broke or was declared dead, or the peer did not
///   answer within the deadline.
/// - From the peer itself: `internal`, `unavailable` (draining, no capacity),
///   and `resource_exhausted` when nothing ran (its in-flight limit or its
///   instance pool; a guest over its memory limit is the handler's doing).
/// - Handler errors, traps, bad arguments, deadlines the handler ran into,
///   and errors from hosts further along are not the peer's failures.
pub fn host_failure(error: &CallError, region: &str) -> bool {
    match error.region.as_deref() {
        None => matches!(
            error.code,
            ErrorCode::Unavailable | ErrorCode::DeadlineExceeded | ErrorCode::Internal
        ),
        Some(from) if from == region => match error.code {
            ErrorCode::Internal | ErrorCode::Unavailable => true,
            ErrorCode::ResourceExhausted => error.processed == Processed::No,
            _ => false,
        },
        Some(_) => false,
    }
}

impl Peer {
    fn new(region: String, addr: String, config: PeerConfig, stop: CancellationToken) -> Peer {
        Peer {
            addr,
            region,
            config,
            state: Mutex::new(PeerState::default()),
            in_flight: AtomicUsize::new(0),
            stop,
        }
    }

    /// A peer reached through `link`, serving `functions`, with no link task
    /// behind it: for tests of the routing decision.
    #[cfg(test)]
    pub(crate) fn linked(
        region: &str,
        addr: &str,
        config: PeerConfig,
        link: Arc<dyn Link>,
        functions: Vec<FunctionInfo>,
    ) -> Arc<Peer> {
        let peer = Peer::new(region.into(), addr.into(), config, CancellationToken::new());
        peer.set_functions(functions);
        peer.link_up(link);
        Arc::new(peer)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PeerState> {
        self.state.lock().expect("peer lock")
    }

    /// Whether the peer's catalog has `function`, and if so whether the
    /// peer declares it idempotent.
    pub fn serves(&self, function: &str) -> Option<bool> {
        self.state().functions.get(function).map(|f| f.idempotent)
    }

    /// The peer's own functions.
    pub fn functions(&self) -> Arc<HashMap<String, FunctionInfo>> {
        self.state().functions.clone()
    }

    fn set_functions(&self, functions: Vec<FunctionInfo>) {
        let index = functions.into_iter().map(|f| (f.name.clone(), f)).collect();
        self.state().functions = Arc::new(index);
    }

    pub fn health(&self) -> Health {
        let state = self.state();
        if state.linked.is_none() {
            Health::Down
        } else if state
            .ejected_until
            .is_some_and(|until| Instant::now() < until)
        {
            Health::Ejected
        } else {
            Health::Up
        }
    }

    /// How good a target the peer is for the next call, lower is better:
    /// the expected wait for an answer, in seconds of round trip, as
    ///
    /// ```text
    /// srtt × (1 + (ours + others) / 4) × 1 / (1 − min(busy, 0.9))
    /// ```
    ///
    /// - `srtt`: the smoothed ping round trip; 1 s while unmeasured.
    /// - `ours`: the calls we have in flight to the peer now.
    /// - `others`: the calls the peer reported in flight, less ours (at
    ///   least 0): the work other callers give it, which our own count
    ///   cannot see. Every call in flight ahead of ours adds a quarter of
    ///   a round trip, as ours alone did before peers reported their load.
    /// - `busy`: the larger of the peer's reported CPU use and the share
    ///   of its instance pool in use, 0 to 1. At utilisation ρ a queue's
    ///   answer time grows as 1 / (1 − ρ); capped at 0.9, a saturated peer
    ///   ranks ten times worse, still finite, so that saturated peers
    ///   still rank among themselves by round trip and calls in flight.
    ///
    /// A report older than 3 ping intervals counts as none (`others` and
    /// `busy` are 0), which is also how a peer that sends none (an older
    /// host) ranks: by RTT and our calls in flight alone. So an idle peer
    /// beats one saturated by other callers at the same RTT, and of two
    /// idle peers the nearer one wins until our own calls load it.
    pub fn score(&self) -> f64 {
        let (srtt, reported) = {
            let state = self.state();
            (state.srtt, state.reported)
        };
        let fresh_for = self.config.report_fresh_for();
        let report = reported
            .filter(|(_, at)| at.elapsed() <= fresh_for)
            .map(|(load, _)| load);
        score(srtt, self.in_flight(), report.as_ref())
    }

    /// Keeps the load the peer reported in a `pong`.
    pub(crate) fn reported(&self, load: Option<Load>) {
        if let Some(load) = load {
            self.state().reported = Some((load, Instant::now()));
        }
    }

    /// Calls in flight to this peer now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When a call to this peer has been waiting long enough that a second
    /// attempt elsewhere is worth it: from the latency of the calls it
    /// answered, within `[min, max]`.
    pub fn hedge_delay(&self, min: Duration, max: Duration) -> Duration {
        self.state().latency.late_after(min, max)
    }

    /// Until when the peer is ejected, if it is now.
    pub fn ejected_until(&self) -> Option<Instant> {
        self.state()
            .ejected_until
            .filter(|until| Instant::now() < *until)
    }

    /// What an operator sees of this peer now (`/status`, `/metrics`).
    pub fn snapshot(&self) -> PeerSnapshot {
        let health = self.health();
        let in_flight = self.in_flight();
        let state = self.state();
        let now = Instant::now();
        let fresh_for = self.config.report_fresh_for();
        let reported = state
            .reported
            .map(|(load, at)| (load, now.duration_since(at)))
            .filter(|(_, age)| *age <= fresh_for);
        let score = score(state.srtt, in_flight, reported.as_ref().map(|(l, _)| l));
        PeerSnapshot {
            region: self.region.clone(),
            addr: self.addr.clone(),
            health,
            rtt: state.srtt,
            in_flight,
            reported,
            score,
            failures: state.failures,
            ejected_for: state
                .ejected_until
                .filter(|until| now < *until)
                .map(|until| until - now),
            ejections: state.ejections_total,
            links_lost: state.links_lost,
            functions: state.functions.len(),
            down_because: if state.linked.is_none() {
                state.ended_because.clone()
            } else {
                None
            },
        }
    }

    /// Forwards a call to this peer.
    ///
    /// # Errors
    ///
    /// The peer's error; `unavailable` when there is no connection
    /// (`processed: no`), or when the link broke or the peer was declared
    /// dead during the call (`processed: maybe`); `cancelled` (`processed:
    /// maybe`) when the context's `cancel` fires.
    pub async fn call(
        &self,
        function: &str,
        args: Vec<Value>,
        context: &CallContext,
    ) -> Result<Value, CallError> {
        let Some(Linked { link, ended }) = self.state().linked.clone() else {
            return Err(CallError::new(
                ErrorCode::Unavailable,
                Processed::No,
                format!(
                    "no connection to `{}` (region `{}`)",
                    self.addr, self.region
                ),
            ));
        };
        let _in_flight = InFlight::start(&self.in_flight);
        let start = Instant::now();
        self.state().silent_since.get_or_insert(start);
        let result = tokio::select! {
            result = link.call(function, args, context) => result,
            () = ended.cancelled() => Err(self.link_ended_error()),
            () = context.cancel.cancelled() => Err(CallError::cancelled(Processed::Maybe)),
        };
        self.record(&result, start.elapsed());
        result
    }

    /// The error of a call whose link ended under it.
    fn link_ended_error(&self) -> CallError {
        let why = self
            .state()
            .ended_because
            .clone()
            .unwrap_or_else(|| "the link ended".into());
        CallError::new(
            ErrorCode::Unavailable,
            Processed::Maybe,
            format!(
                "lost `{}` (region `{}`) during the call: {why}",
                self.addr, self.region
            ),
        )
    }

    /// Counts host-level failures towards ejection (see [`host_failure`]);
    /// any other answer shows the host is alive and feeds its latency.
    fn record(&self, result: &Result<Value, CallError>, took: Duration) {
        if matches!(result, Err(e) if e.code == ErrorCode::Cancelled && e.region.is_none()) {
            // Our caller gave up: that says nothing about the peer.
            return;
        }
        let failed = matches!(result, Err(e) if host_failure(e, &self.region));
        let now = Instant::now();
        let mut state = self.state();
        if !failed {
            state.failures = 0;
            state.latency.observe(took);
            // This call still counts as in flight: others wait if more do.
            state.silent_since = (self.in_flight() > 1).then_some(now);
            if state.ejected_until.is_some_and(|until| until <= now) {
                state.ejected_until = None;
                state.ejections = 0;
            }
            return;
        }
        state.failures += 1;
        let ejected = state.ejected_until.is_some_and(|until| now < until);
        let config = &self.config;
        if state.failures >= config.eject_after && !ejected {
            state.ejections += 1;
            state.failures = 0;
            let time = (config.eject_base * state.ejections).min(config.eject_max);
            state.ejected_until = Some(now + time);
            state.ejections_total += 1;
            tracing::warn!(peer = %self.addr, region = %self.region, "ejected for {time:?} after {} host-level failures in a row (ejection {} in a row)", config.eject_after, state.ejections);
        }
    }

    /// Puts `link` in service.
    pub(crate) fn link_up(&self, link: Arc<dyn Link>) {
        let mut state = self.state();
        state.linked = Some(Linked {
            link,
            ended: CancellationToken::new(),
        });
        state.ended_because = None;
        state.failures = 0;
        state.ejected_until = None;
        state.silent_since = None;
        // What the previous link reported is no news of this one.
        state.reported = None;
    }

    /// The peer answered a ping: it is alive, whatever its calls do.
    pub(crate) fn heard_from(&self) {
        let in_flight = self.in_flight() > 0;
        self.state().silent_since = in_flight.then(Instant::now);
    }

    /// Whether calls to this peer have waited longer than its usual latency
    /// (its hedge delay within `[min, max]`) without a word from it: a peer
    /// that may have hung. The router tries such a peer after the others,
    /// so a hung host stops receiving new calls long before the dead-peer
    /// check declares it dead.
    pub fn is_late(&self, min: Duration, max: Duration) -> bool {
        let state = self.state();
        state
            .silent_since
            .is_some_and(|since| since.elapsed() > state.latency.late_after(min, max))
    }

    /// Takes the link out of service and fails the calls in flight on it
    /// with `why`.
    pub(crate) fn link_down(&self, why: String) {
        let mut state = self.state();
        state.ended_because = Some(why);
        if let Some(linked) = state.linked.take() {
            linked.ended.cancel();
            state.links_lost += 1;
        }
    }
}

/// All peer links of a host; the set can be replaced while serving.
pub struct Peers {
    peers: RwLock<Arc<Vec<Arc<Peer>>>>,
    options: ClientOptions,
    config: PeerConfig,
    shutdown: CancellationToken,
}

impl Peers {
    /// Starts a link task for every `(region, address)`; they run until
    /// `shutdown` is cancelled or the peer leaves the topology.
    ///
    /// Links send and accept frames of up to `max_frame` bytes, the host's own
    /// limit: a call the host accepted can be forwarded, and its reply read.
    pub fn start(
        own_region: &str,
        own_id: &str,
        peers: Vec<(String, String)>,
        config: PeerConfig,
        max_frame: usize,
        shutdown: CancellationToken,
    ) -> Arc<Peers> {
        let options = ClientOptions {
            role: Role::Peer,
            region: Some(own_region.to_owned()),
            host_id: Some(own_id.to_owned()),
            connect_timeout: config.connect_timeout,
            max_frame,
            ..ClientOptions::default()
        };
        let all = Arc::new(Peers {
            peers: RwLock::new(Arc::new(Vec::new())),
            options,
            config,
            shutdown,
        });
        all.set(peers);
        all
    }

    /// A fixed set of peers with no link tasks: for tests of the routing
    /// decision.
    #[cfg(test)]
    pub(crate) fn fixed(peers: Vec<Arc<Peer>>) -> Arc<Peers> {
        Arc::new(Peers {
            peers: RwLock::new(Arc::new(peers)),
            options: ClientOptions::default(),
            config: PeerConfig::default(),
            shutdown: CancellationToken::new(),
        })
    }

    /// The peers now.
    pub fn list(&self) -> Arc<Vec<Arc<Peer>>> {
        self.peers.read().expect("peers lock").clone()
    }

    /// Replaces the set of peers: links to peers no longer listed stop, new
    /// peers get a link, unchanged ones keep theirs.
    pub fn set(&self, wanted: Vec<(String, String)>) {
        let mut guard = self.peers.write().expect("peers lock");
        let mut next = Vec::with_capacity(wanted.len());
        for (region, addr) in wanted {
            let existing = guard.iter().find(|p| p.region == region && p.addr == addr);
            match existing {
                Some(peer) => next.push(peer.clone()),
                None => {
                    let peer = Arc::new(Peer::new(
                        region,
                        addr,
                        self.config.clone(),
                        self.shutdown.child_token(),
                    ));
                    tokio::spawn(maintain(
                        peer.clone(),
                        self.options.clone(),
                        self.config.clone(),
                    ));
                    next.push(peer);
                }
            }
        }
        for old in guard.iter() {
            if !next.iter().any(|p| Arc::ptr_eq(p, old)) {
                tracing::info!(peer = %old.addr, region = %old.region, "peer left the topology; dropping its link");
                old.stop.cancel();
            }
        }
        *guard = Arc::new(next);
    }

    /// Every function the linked peers serve, with their regions. A peer
    /// whose link is down is left out until it is back: `list` shows what
    /// can be called now.
    pub fn functions(&self) -> BTreeMap<String, FunctionInfo> {
        let mut all: BTreeMap<String, FunctionInfo> = BTreeMap::new();
        for peer in self.list().iter() {
            if peer.health() == Health::Down {
                continue;
            }
            for info in peer.functions().values() {
                merge_served(&mut all, info, &peer.region);
            }
        }
        all
    }
}

/// Records in `all` that `region` serves `info`'s function. The function is
/// idempotent only if every host serving it says so, as the router requires
/// before it retries or hedges a call.
pub(crate) fn merge_served(
    all: &mut BTreeMap<String, FunctionInfo>,
    info: &FunctionInfo,
    region: &str,
) {
    let entry = all
        .entry(info.name.clone())
        .or_insert_with(|| FunctionInfo {
            regions: Vec::new(),
            ..info.clone()
        });
    entry.idempotent &= info.idempotent;
    if !entry.regions.iter().any(|r| r == region) {
        entry.regions.push(region.to_owned());
    }
}

/// Keeps one peer link up: connect, follow catalog pushes, ping, and on any
/// failure reconnect with jittered exponential backoff.
async fn maintain(peer: Arc<Peer>, options: ClientOptions, config: PeerConfig) {
    let shutdown = peer.stop.clone();
    let mut backoff = config.backoff_min;
    let mut was_up = false;
    // The last refusal logged: a peer whose certificate does not fit is
    // logged once, not at every redial.
    let mut refusal = None;
    while !shutdown.is_cancelled() {
        let mut options = options.clone();
        if let Some(tls) = &config.tls {
            // The material of this moment: a rotated certificate is used at
            // the next dial.
            options.tls = Some(tls.current().peer_client(&peer.region));
        }
        let connected = tokio::select! {
            connected = Connection::connect_with(peer.addr.as_str(), options) => connected,
            () = shutdown.cancelled() => return,
        };
        match connected {
            Ok(client) => {
                backoff = config.backoff_min;
                was_up = true;
                refusal = None;
                follow(&peer, client, &config, &shutdown).await;
                tracing::warn!(peer = %peer.addr, region = %peer.region, "lost the link to peer");
            }
            Err(error) if error.code == ErrorCode::Unauthenticated => {
                was_up = false;
                if refusal.as_ref() != Some(&error.message) {
                    tracing::warn!(peer = %peer.addr, region = %peer.region, "peer refused: {}", error.message);
                    refusal = Some(error.message);
                }
            }
            Err(error) if was_up => {
                was_up = false;
                tracing::warn!(peer = %peer.addr, region = %peer.region, "peer unreachable: {}", error.message);
            }
            Err(error) => tracing::debug!(peer = %peer.addr, "peer unreachable: {}", error.message),
        }
        let jitter = 0.8 + fastrand::f64() * 0.4;
        tokio::select! {
            () = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// Serves one live connection until it fails or the peer is declared dead.
///
/// Pings go out every `ping_interval` without waiting for each other. Any
/// frame from the peer (a pong, a reply, a catalog push) shows it is alive;
/// `missed_pings` intervals in a row with nothing at all declare it dead.
async fn follow(
    peer: &Peer,
    client: Connection,
    config: &PeerConfig,
    shutdown: &CancellationToken,
) {
    let mut updates = client.catalog_updates();
    peer.link_up(Arc::new(client.clone()));
    tracing::info!(peer = %peer.addr, region = %peer.region, "linked to peer");
    let mut ticker = tokio::time::interval(config.ping_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pings = FuturesUnordered::new();
    let mut heard = client.frames_received();
    let mut silent = 0;
    let why = loop {
        tokio::select! {
            () = shutdown.cancelled() => break "the host is shutting down".to_owned(),
            () = client.closed() => break "the connection closed".to_owned(),
            Ok(()) = updates.changed() => {
                let pushed = updates.borrow_and_update().clone();
                if let Some(functions) = pushed {
                    tracing::debug!(peer = %peer.addr, functions = functions.len(), "peer catalog updated");
                    peer.set_functions(functions.to_vec());
                }
            }
            Some(pong) = pings.next() => {
                let pong: Result<Probe, CallError> = pong;
                if let Ok(Probe { rtt, load }) = pong {
                    peer.heard_from();
                    peer.reported(load);
                    let mut state = peer.state();
                    state.srtt = Some(match state.srtt {
                        Some(srtt) => srtt.mul_f64(0.875) + rtt.mul_f64(0.125),
                        None => rtt,
                    });
                }
            }
            _ = ticker.tick() => {
                let now = client.frames_received();
                if now == heard {
                    silent += 1;
                    if silent >= config.missed_pings {
                        let why = format!(
                            "nothing received for {:?} (no pong to {silent} pings); declared dead",
                            config.dead_after()
                        );
                        tracing::warn!(peer = %peer.addr, region = %peer.region, in_flight = peer.in_flight(), "{why}; failing its calls in flight and redialling");
                        break why;
                    }
                } else {
                    silent = 0;
                    heard = now;
                }
                pings.push(client.probe());
            }
        }
    };
    peer.link_down(why);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that never answers: the calls made through it stay in flight.
    struct Silent;

    impl Link for Silent {
        fn call<'a>(
            &'a self,
            _function: &'a str,
            _args: Vec<Value>,
            _context: &'a CallContext,
        ) -> BoxFuture<'a, Result<Value, CallError>> {
            Box::pin(std::future::pending())
        }
    }

    fn peer(addr: &str, rtt_ms: u64) -> Arc<Peer> {
        let peer = Peer::linked(
            "us-east",
            addr,
            PeerConfig::default(),
            Arc::new(Silent),
            Vec::new(),
        );
        peer.state().srtt = Some(Duration::from_millis(rtt_ms));
        peer
    }

    fn load(in_flight: u64, instances: u64, cpu: Option<f64>) -> Load {
        Load {
            in_flight,
            instances,
            instances_max: 256,
            cpu,
        }
    }

    fn assert_score(peer: &Peer, expected: f64) {
        let score = peer.score();
        assert!((score - expected).abs() < 1e-12, "{score} != {expected}");
    }

    #[tokio::test]
    async fn a_peer_busy_with_other_callers_scores_worse_than_an_idle_one() {
        let idle = peer("idle", 1);
        let saturated = peer("saturated", 1);
        // Before any report both score by RTT alone.
        assert_score(&idle, 0.001);
        assert_score(&saturated, 0.001);
        idle.reported(Some(load(0, 0, Some(0.02))));
        saturated.reported(Some(load(16, 16, Some(0.5))));
        // 1 ms × (1 + 16/4) / (1 − 0.5) and 1 ms / (1 − 0.02).
        assert_score(&saturated, 0.001 * 5.0 * 2.0);
        assert_score(&idle, 0.001 / 0.98);
        assert!(idle.score() < saturated.score());
        // Even from twice as far, the idle peer wins.
        idle.state().srtt = Some(Duration::from_millis(2));
        assert!(idle.score() < saturated.score());
        // A peer that does not report (an older host) ranks by RTT and our
        // calls alone: no report is no load.
        saturated.reported(None);
        assert_score(&saturated, 0.001 * 5.0 * 2.0);
    }

    #[tokio::test]
    async fn our_own_calls_are_not_counted_twice_and_busy_is_capped() {
        let peer = peer("p", 1);
        let context = CallContext::new(Duration::from_secs(5));
        let mut calls: Vec<_> = (0..2)
            .map(|_| Box::pin(peer.call("f", vec![], &context)))
            .collect();
        for call in &mut calls {
            assert!(futures::poll!(call.as_mut()).is_pending());
        }
        assert_eq!(peer.in_flight(), 2);
        // Ours alone: 1 ms × (1 + 2/4).
        assert_score(&peer, 0.0015);
        // The peer reports our 2 calls and 4 from others.
        peer.reported(Some(load(6, 0, None)));
        assert_score(&peer, 0.001 * (1.0 + 6.0 / 4.0));
        // A report older than our calls (fewer than ours) adds nothing.
        peer.reported(Some(load(1, 0, None)));
        assert_score(&peer, 0.0015);
        // Busy is the larger of CPU and the instance pool in use, at most 0.9.
        peer.reported(Some(load(2, 192, Some(0.5))));
        assert_score(&peer, 0.0015 / 0.25);
        peer.reported(Some(load(2, 0, Some(1.0))));
        assert_score(&peer, 0.0015 * 10.0);
        drop(calls);
        assert_eq!(peer.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_older_than_three_ping_intervals_counts_as_none() {
        let peer = peer("p", 1);
        peer.reported(Some(load(8, 0, Some(0.5))));
        let reported = 0.001 * 3.0 * 2.0;
        assert_score(&peer, reported);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_score(&peer, reported);
        assert_eq!(
            peer.snapshot().reported,
            Some((load(8, 0, Some(0.5)), Duration::from_millis(1500)))
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_score(&peer, 0.001);
        assert_eq!(peer.snapshot().reported, None);
        assert_eq!(peer.snapshot().score, 0.001);
        // A new link forgets what the old one reported.
        peer.reported(Some(load(8, 0, Some(0.5))));
        peer.link_up(Arc::new(Silent));
        assert_score(&peer, 0.001);
    }
}
