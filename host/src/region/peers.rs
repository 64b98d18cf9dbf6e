//! Links to the other hosts in `regions.toml`: one multiplexed connection to
//! each, reconnected with backoff, with the peer's catalog, a smoothed RTT
//! from pings, and outlier ejection after consecutive failures.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ciborium::Value;
use tokio_util::sync::CancellationToken;

use crate::net::{CallOptions, Client, ClientOptions};
use crate::protocol::{CallError, ErrorCode, FunctionInfo, Processed, Role};

/// Timings of peer links; the defaults suit hosts on one network.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Time to connect and exchange `hello`.
    pub connect_timeout: Duration,
    /// How often each link is pinged.
    pub ping_interval: Duration,
    /// Pings missed in a row before the link is dropped and redialled.
    pub missed_pings: u32,
    /// First and largest wait between reconnection attempts (±20% jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Consecutive failed calls before a host is ejected.
    pub eject_after: u32,
    /// Ejection time: `eject_base` × number of ejections, at most `eject_max`.
    pub eject_base: Duration,
    pub eject_max: Duration,
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
        }
    }
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
    client: Option<Client>,
    /// The peer's own functions as last pushed; kept while the link is down
    /// so its callers get `unavailable` rather than `not_found`.
    functions: Arc<HashMap<String, FunctionInfo>>,
    /// Smoothed round-trip time (RFC 6298 style, gain 1/8).
    srtt: Option<Duration>,
    failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

/// How usable a peer is right now, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Up,
    Ejected,
    Down,
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

    fn state(&self) -> std::sync::MutexGuard<'_, PeerState> {
        self.state.lock().expect("peer lock")
    }

    /// The peer's entry for `function`, if its catalog has it.
    pub fn lookup(&self, function: &str) -> Option<FunctionInfo> {
        self.state().functions.get(function).cloned()
    }

    /// The peer's own functions.
    pub fn functions(&self) -> Arc<HashMap<String, FunctionInfo>> {
        self.state().functions.clone()
    }

    pub fn health(&self) -> Health {
        let state = self.state();
        if state.client.is_none() {
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

    /// Lower is better: smoothed RTT scaled by the calls we have in flight
    /// to this peer. Unmeasured peers count as 1 s.
    pub fn score(&self) -> f64 {
        let srtt = self.state().srtt.map_or(1.0, |d| d.as_secs_f64());
        srtt * (1.0 + self.in_flight.load(Ordering::Relaxed) as f64 / 4.0)
    }

    /// Forwards a call to this peer.
    ///
    /// # Errors
    ///
    /// The peer's error, or `unavailable` when there is no connection
    /// (`processed: no`) or it broke during the call (`processed: maybe`).
    pub async fn call(
        &self,
        function: &str,
        args: Vec<Value>,
        options: CallOptions,
        cancel: &CancellationToken,
    ) -> Result<Value, CallError> {
        let client = self.state().client.clone().ok_or_else(|| {
            CallError::new(
                ErrorCode::Unavailable,
                Processed::No,
                format!(
                    "no connection to `{}` (region `{}`)",
                    self.addr, self.region
                ),
            )
        })?;
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = tokio::select! {
            result = client.call_with(function, args, options) => result,
            () = cancel.cancelled() => Err(CallError::cancelled(Processed::Maybe)),
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.record(&result);
        result
    }

    /// Counts transport failures towards ejection; anything the peer itself
    /// answered (even an error) shows it is alive.
    fn record(&self, result: &Result<Value, CallError>) {
        // Errors without a region come from our side of the link: the peer
        // could not be reached or did not answer in time.
        let failed = matches!(result, Err(e) if e.region.is_none()
            && matches!(e.code, ErrorCode::Unavailable | ErrorCode::DeadlineExceeded));
        let mut state = self.state();
        if !failed {
            state.failures = 0;
            return;
        }
        state.failures += 1;
        let config = &self.config;
        if state.failures >= config.eject_after && state.ejected_until.is_none() {
            state.ejections += 1;
            let time = (config.eject_base * state.ejections).min(config.eject_max);
            state.ejected_until = Some(Instant::now() + time);
            tracing::warn!(peer = %self.addr, region = %self.region, "ejected for {time:?} after {} failures", state.failures);
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
    pub fn start(
        own_region: &str,
        own_id: &str,
        peers: Vec<(String, String)>,
        config: PeerConfig,
        shutdown: CancellationToken,
    ) -> Arc<Peers> {
        let options = ClientOptions {
            role: Role::Peer,
            region: Some(own_region.to_owned()),
            host_id: Some(own_id.to_owned()),
            connect_timeout: config.connect_timeout,
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

    /// Every function the peers serve, with their regions.
    pub fn functions(&self) -> BTreeMap<String, FunctionInfo> {
        let mut all: BTreeMap<String, FunctionInfo> = BTreeMap::new();
        for peer in self.list().iter() {
            for info in peer.functions().values() {
                merge_served(&mut all, info, &peer.region);
            }
        }
        all
    }
}

/// Records in `all` that `region` serves `info`'s function.
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
    entry.idempotent |= info.idempotent;
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
    while !shutdown.is_cancelled() {
        let connected = tokio::select! {
            connected = Client::connect_with(peer.addr.as_str(), options.clone()) => connected,
            () = shutdown.cancelled() => return,
        };
        match connected {
            Ok(client) => {
                backoff = config.backoff_min;
                was_up = true;
                follow(&peer, client, &config, &shutdown).await;
                tracing::warn!(peer = %peer.addr, region = %peer.region, "lost the link to peer");
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

/// Serves one live connection until it fails.
async fn follow(peer: &Peer, client: Client, config: &PeerConfig, shutdown: &CancellationToken) {
    let mut updates = client.catalog_updates();
    {
        let mut state = peer.state();
        state.client = Some(client.clone());
        state.failures = 0;
        state.ejected_until = None;
    }
    tracing::info!(peer = %peer.addr, region = %peer.region, "linked to peer");
    let mut ticker = tokio::time::interval(config.ping_interval);
    let mut missed = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = client.closed() => break,
            Ok(()) = updates.changed() => {
                let pushed = updates.borrow_and_update().clone();
                if let Some(functions) = pushed {
                    let index = functions.iter().map(|f| (f.name.clone(), f.clone())).collect();
                    peer.state().functions = Arc::new(index);
                    tracing::debug!(peer = %peer.addr, functions = functions.len(), "peer catalog updated");
                }
            }
            _ = ticker.tick() => {
                match tokio::time::timeout(config.ping_interval * 2, client.ping()).await {
                    Ok(Ok(rtt)) => {
                        missed = 0;
                        let mut state = peer.state();
                        state.srtt = Some(match state.srtt {
                            Some(srtt) => srtt.mul_f64(0.875) + rtt.mul_f64(0.125),
                            None => rtt,
                        });
                    }
                    _ => {
                        missed += 1;
                        if missed >= config.missed_pings {
                            break;
                        }
                    }
                }
            }
        }
    }
    peer.state().client = None;
}
