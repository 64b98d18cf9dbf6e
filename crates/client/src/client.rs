//! The client applications call through: one host or several, with failover.
//!
//! A [`Client`] keeps one [`Connection`] per host it knows, each looked
//! after by a task of its own that connects, reconnects with jittered
//! backoff, pings to measure the round trip, and learns from the host's
//! catalog which functions are idempotent. A call goes to the best host now:
//! one of the preferred region first, then the lowest measured round trip.
//! When that host drains or its connection is lost, new calls go elsewhere,
//! and a failed call is tried again by the `processed` rule (see
//! [`Client::call_value_with`]).

use std::collections::HashSet;
use std::fmt::{self, Display};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ciborium::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::connection::{ClientOptions, Connection};
use crate::context::CallContext;
use crate::regions::Regions;
use crate::typed;
use wasmrpc_protocol::{CallError, ErrorCode, FunctionInfo, Processed, retry};

/// Per-call settings.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// The call's deadline, from now. `None`: the client's default.
    pub timeout: Option<std::time::Duration>,
    /// Hops already made (for forwarding hosts).
    pub hops: u32,
    /// Regions already visited (for forwarding hosts).
    pub visited: Vec<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Attempts in all, the first included. `None`: one per host, at most
    /// the client's [`RetryPolicy::max_attempts`](wasmrpc_protocol::RetryPolicy)
    /// (so a client of one host does not try again); `Some(1)`: never tried
    /// again. More attempts than hosts go back to hosts already tried, after
    /// a backoff.
    pub attempts: Option<u32>,
    /// This call is safe to run more than once (see [`Client::call_value_with`]).
    pub idempotent: bool,
}

/// A client of one or several hosts. Cheap to clone; clones share the
/// connections, and any number of tasks may call through it at once.
/// Dropping the last clone closes its connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Stops the hosts' tasks when the last clone goes.
    _stop: DropGuard,
}

/// What the hosts' tasks and the callers share.
struct Shared {
    hosts: Vec<Arc<Host>>,
    /// The index of the host calls go to while it can take them (see
    /// [`Shared::rerank`]); `usize::MAX` before the first choice.
    current: AtomicUsize,
    options: ClientOptions,
    /// Functions some host's catalog marks idempotent.
    idempotent: RwLock<HashSet<String>>,
    /// Bumped whenever a host becomes usable or unusable.
    changed: watch::Sender<u64>,
}

/// One host of the client.
struct Host {
    addr: String,
    region: Option<String>,
    /// 0 for a host of the preferred region (or of any, with no
    /// preference), 1 for the others: calls go to tier 0 while it has a
    /// usable host.
    tier: u8,
    /// Breaks ties between hosts equally near, at random per client, so that
    /// clients given the same hosts spread over them.
    tiebreak: u32,
    state: Mutex<HostState>,
}

#[derive(Default)]
struct HostState {
    /// The connection new calls may use: open, and its host not draining.
    connection: Option<Connection>,
    /// Smoothed round trip of pings.
    rtt: Option<Duration>,
    /// A connection attempt is under way (the first, or one after a loss):
    /// calls may wait for it rather than fail.
    connecting: bool,
    /// Why the last connection attempt failed or the last connection ended.
    error: Option<CallError>,
    /// Connection attempts made (and completed) so far.
    attempts: u64,
}

/// What a client knows about one of its hosts ([`Client::hosts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    pub addr: String,
    /// The host's region, when the client was built from a regions file.
    pub region: Option<String>,
    /// Calls go to this host's tier first (its region is the preferred one).
    pub preferred: bool,
    /// New calls may go to it now.
    pub connected: bool,
    /// New calls go to it now: it is the nearest usable host of the
    /// lowest tier (only one host is current at a time).
    pub current: bool,
    /// Smoothed round trip of the client's pings.
    pub rtt: Option<Duration>,
    /// Why it is not connected, when it is not.
    pub error: Option<String>,
}

/// A host to connect to, and where it stands in the order of preference.
struct HostSpec {
    addr: String,
    region: Option<String>,
    tier: u8,
}

impl Client {
    /// Connects to one host with default options.
    ///
    /// # Errors
    ///
    /// `unavailable` (`processed: no`) when the host cannot be reached or
    /// refuses the handshake.
    pub async fn connect(addr: impl Display) -> Result<Client, CallError> {
        Client::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects to one host. The client reconnects by itself when the
    /// connection is lost.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_with(
        addr: impl Display,
        options: ClientOptions,
    ) -> Result<Client, CallError> {
        Client::connect_any([addr], options).await
    }

    /// Connects to several hosts, equals in preference: calls go to the one
    /// with the lowest measured round trip, and elsewhere when it fails.
    ///
    /// # Errors
    ///
    /// `invalid_args` for an empty list; `unavailable` (`processed: no`)
    /// when no host can be reached, with each host's reason.
    pub async fn connect_any(
        addrs: impl IntoIterator<Item = impl Display>,
        options: ClientOptions,
    ) -> Result<Client, CallError> {
        let hosts = addrs
            .into_iter()
            .map(|addr| HostSpec {
                addr: addr.to_string(),
                region: None,
                tier: 0,
            })
            .collect();
        Client::start(hosts, options).await
    }

    /// Connects to the hosts of a regions file (`regions.toml`): those of
    /// `region` are preferred, the others' take calls only while no host of
    /// `region` can (they forward what they do not serve themselves, as any
    /// host does). With `region` `None`, every host is an equal. When
    /// `options` has no TLS settings and the file has a `[tls]` table, its
    /// CA is trusted.
    ///
    /// # Errors
    ///
    /// `invalid_args` for a file that cannot be read or a region it does not
    /// name; otherwise as [`Client::connect_any`].
    pub async fn connect_region(
        config: &Path,
        region: Option<&str>,
        mut options: ClientOptions,
    ) -> Result<Client, CallError> {
        let invalid =
            |message: String| CallError::new(ErrorCode::InvalidArgs, Processed::No, message);
        let regions = Regions::load(config).map_err(|e| invalid(e.to_string()))?;
        if let Some(region) = region
            && !regions.regions.iter().any(|r| r.name == region)
        {
            let names: Vec<&str> = regions.regions.iter().map(|r| r.name.as_str()).collect();
            return Err(invalid(format!(
                "{} names no region `{region}` (it has: {})",
                config.display(),
                names.join(", ")
            )));
        }
        if options.tls.is_none() {
            options.tls = regions.client_tls().map_err(|e| invalid(e.to_string()))?;
        }
        let hosts = regions
            .regions
            .iter()
            .flat_map(|r| {
                let tier = u8::from(region.is_some_and(|name| name != r.name));
                r.hosts.iter().map(move |addr| HostSpec {
                    addr: addr.clone(),
                    region: Some(r.name.clone()),
                    tier,
                })
            })
            .collect();
        Client::start(hosts, options).await
    }

    async fn start(hosts: Vec<HostSpec>, options: ClientOptions) -> Result<Client, CallError> {
        if hosts.is_empty() {
            return Err(CallError::new(
                ErrorCode::InvalidArgs,
                Processed::No,
                "no host to connect to",
            ));
        }
        let stop = CancellationToken::new();
        let hosts: Vec<Arc<Host>> = hosts
            .into_iter()
            .map(|spec| {
                Arc::new(Host {
                    addr: spec.addr,
                    region: spec.region,
                    tier: spec.tier,
                    tiebreak: fastrand::u32(..),
                    state: Mutex::new(HostState {
                        connecting: true,
                        ..HostState::default()
                    }),
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            hosts,
            current: AtomicUsize::new(usize::MAX),
            options,
            idempotent: RwLock::new(HashSet::new()),
            changed: watch::Sender::new(0),
        });
        for host in &shared.hosts {
            tokio::spawn(look_after(host.clone(), shared.clone(), stop.child_token()));
        }
        let client = Client {
            inner: Arc::new(Inner {
                shared,
                _stop: stop.drop_guard(),
            }),
        };
        client.first_connection().await?;
        Ok(client)
    }

    /// Waits until a host of the first tier is connected, or every host of
    /// it has been tried once and some host is connected; fails when every
    /// host has been tried and none could be reached.
    async fn first_connection(&self) -> Result<(), CallError> {
        let mut changed = self.inner.shared.changed.subscribe();
        loop {
            let (mut preferred_up, mut preferred_pending, mut any_up, mut all_tried) =
                (false, false, false, true);
            for host in &self.inner.shared.hosts {
                let state = host.state();
                let up = state.connection.is_some();
                let tried = state.attempts > 0;
                any_up |= up;
                all_tried &= tried;
                if host.tier == 0 {
                    preferred_up |= up;
                    preferred_pending |= !tried;
                }
            }
            if preferred_up || (any_up && !preferred_pending) {
                return Ok(());
            }
            if all_tried {
                return Err(self.no_host());
            }
            if changed.changed().await.is_err() {
                return Err(self.no_host());
            }
        }
    }

    /// The hosts this client knows, in the order it was given them, with
    /// their state now.
    pub fn hosts(&self) -> Vec<HostView> {
        let current = self.inner.shared.current.load(Ordering::Relaxed);
        self.inner
            .shared
            .hosts
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let state = host.state();
                HostView {
                    current: index == current && state.usable().is_some(),
                    addr: host.addr.clone(),
                    region: host.region.clone(),
                    preferred: host.tier == 0,
                    connected: state.connection.is_some(),
                    rtt: state.rtt,
                    error: state.error.as_ref().map(|e| e.message.clone()),
                }
            })
            .collect()
    }

    /// Calls `function` with typed arguments and answer, and the client's
    /// default deadline: `args` is a tuple of the arguments (`(2, 3)`,
    /// `("Ada",)`, `()` for none), and the answer is read into `R`, both
    /// mapped to CBOR as [`typed`] describes.
    ///
    /// ```no_run
    /// # async fn run(client: wasmrpc_client::Client) -> Result<(), wasmrpc_client::CallError> {
    /// let sum: i64 = client.call("math.add", (2, 3)).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::call_value_with`]; `invalid_args` (`processed: no`)
    /// when `args` cannot be encoded, `internal` (`processed: yes`) when the
    /// answer does not fit `R`.
    pub async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        function: &str,
        args: A,
    ) -> Result<R, CallError> {
        self.call_with(function, args, CallOptions::default()).await
    }

    /// [`Client::call`] with per-call options.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn call_with<A: Serialize, R: DeserializeOwned>(
        &self,
        function: &str,
        args: A,
        options: CallOptions,
    ) -> Result<R, CallError> {
        let args = typed::to_args(&args).map_err(|error| {
            CallError::new(
                ErrorCode::InvalidArgs,
                Processed::No,
                format!("cannot encode the arguments of `{function}`: {error}"),
            )
        })?;
        let value = self.call_value_with(function, args, options).await?;
        typed::from_value(value).map_err(|error| {
            CallError::new(
                ErrorCode::Internal,
                Processed::Yes,
                format!("the answer of `{function}` does not fit the type asked for: {error}"),
            )
        })
    }

    /// Calls `function` with CBOR arguments (one value per parameter, as
    /// PROTOCOL.md §8 maps them) and the client's default deadline.
    ///
    /// # Errors
    ///
    /// As [`Client::call_value_with`].
    pub async fn call_value(&self, function: &str, args: Vec<Value>) -> Result<Value, CallError> {
        self.call_value_with(function, args, CallOptions::default())
            .await
    }

    /// Calls `function` with CBOR arguments and per-call options.
    ///
    /// The call goes to the best host now. When an attempt fails, it is made
    /// again, on another host when there is one, if that is safe and may
    /// help: the call certainly did not run (`processed: no`: the host was
    /// draining, its connection was gone, it was out of capacity), or it may
    /// have run (`processed: maybe`: the connection was lost with the call
    /// in flight) and the function is idempotent, by
    /// [`CallOptions::idempotent`], [`ClientOptions::idempotent`] or the
    /// hosts' catalog. A call that may have run is tried again after a
    /// backoff. Attempts never outlive the deadline and are at most
    /// [`CallOptions::attempts`] (by default one per host). When no host is connected and none is
    /// connecting, the call fails at once.
    ///
    /// Dropping the returned future cancels the call on the host.
    ///
    /// # Errors
    ///
    /// The host's error, or `unavailable`/`deadline_exceeded` from the
    /// client side when no host can take the call or none answers in time.
    pub async fn call_value_with(
        &self,
        function: &str,
        mut args: Vec<Value>,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let shared = &self.inner.shared;
        let timeout = options.timeout.unwrap_or(shared.options.default_timeout);
        let context = CallContext {
            hops: options.hops,
            visited: options.visited,
            metadata: options.metadata,
            ..CallContext::new(timeout)
        };
        // By default each host at most once: a lone host's refusal is the
        // answer, as it was before there were several.
        let attempts = options
            .attempts
            .unwrap_or_else(|| {
                let hosts = u32::try_from(shared.hosts.len()).unwrap_or(u32::MAX);
                shared.options.retry.max_attempts.min(hosts)
            })
            .max(1);
        let mut tried = Vec::new();
        let mut backoffs = 0;
        let mut attempt = 1;
        loop {
            let (index, connection) = self.connection(&tried, &context).await?;
            let error = match connection.call_keeping(function, &mut args, &context).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            drop(connection);
            let idempotent = options.idempotent || self.is_idempotent(function);
            if attempt >= attempts || !retry::retryable(&error, idempotent) {
                return Err(error);
            }
            tried.push(index);
            if tried.len() >= self.inner.shared.hosts.len() {
                // Every host has had its try: the next round starts over.
                tried.clear();
            }
            // A call that may have run, or one going back to a host that
            // has just refused it, waits first.
            if error.processed == Processed::Maybe || tried.is_empty() {
                let backoff = shared.options.retry.backoff(backoffs, fastrand::f64());
                backoffs += 1;
                if backoff >= context.remaining() {
                    return Err(error);
                }
                tokio::time::sleep(backoff).await;
            }
            attempt += 1;
        }
    }

    /// The catalog, from the best host now: every function callable through
    /// it, with its signature and regions.
    ///
    /// # Errors
    ///
    /// `unavailable` or `deadline_exceeded` when no host answers.
    pub async fn list(&self) -> Result<Vec<FunctionInfo>, CallError> {
        let context = CallContext::new(self.inner.shared.options.default_timeout);
        let (_, connection) = self.connection(&[], &context).await?;
        connection.list().await
    }

    /// Measures one round trip to the best host now.
    ///
    /// # Errors
    ///
    /// `unavailable` or `deadline_exceeded` when no host answers.
    pub async fn ping(&self) -> Result<Duration, CallError> {
        let context = CallContext::new(self.inner.shared.options.default_timeout);
        let (_, connection) = self.connection(&[], &context).await?;
        connection.ping().await
    }

    /// Whether `function` is declared idempotent by the caller's options or
    /// by a host's catalog.
    fn is_idempotent(&self, function: &str) -> bool {
        let shared = &self.inner.shared;
        shared.options.idempotent.iter().any(|pattern| {
            pattern == function
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| function.starts_with(prefix))
        }) || shared
            .idempotent
            .read()
            .expect("client lock")
            .contains(function)
    }

    /// The connection of the host to call now (see [`Shared::choose`]),
    /// or of the best usable host not in `avoid`. Waits, within the call's
    /// deadline, while no host is usable but some are connecting.
    async fn connection(
        &self,
        avoid: &[usize],
        context: &CallContext,
    ) -> Result<(usize, Connection), CallError> {
        let shared = &self.inner.shared;
        let mut changed = shared.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if let Some(chosen) = shared.choose(avoid) {
                return Ok(chosen);
            }
            let connecting = shared.hosts.iter().any(|host| host.state().connecting);
            if !connecting && avoid.is_empty() {
                return Err(self.no_host());
            }
            if !connecting {
                // Only hosts already tried are usable: go back to them.
                return Box::pin(self.connection(&[], context)).await;
            }
            tokio::select! {
                result = changed.changed() => if result.is_err() {
                    return Err(self.no_host());
                },
                () = tokio::time::sleep_until(context.deadline) => {
                    return Err(CallError::new(
                        ErrorCode::DeadlineExceeded,
                        Processed::No,
                        format!("deadline passed while connecting: {}", self.no_host().message),
                    ));
                }
                () = context.cancel.cancelled() => return Err(CallError::cancelled(Processed::No)),
            }
        }
    }

    /// Why no host can take a call (`processed: no`): a lone host's own
    /// error (so a refused handshake keeps its code, `unauthenticated` say);
    /// for several, `unavailable` with each host's reason, or their common
    /// code when they all give the same one.
    fn no_host(&self) -> CallError {
        let errors: Vec<CallError> = self
            .inner
            .shared
            .hosts
            .iter()
            .map(|host| {
                let state = host.state();
                match (&state.connection, &state.error) {
                    (Some(connection), _) => CallError::new(
                        ErrorCode::Unavailable,
                        Processed::No,
                        connection
                            .stop_reason()
                            .unwrap_or_else(|| format!("`{}` is draining", host.addr)),
                    ),
                    (None, Some(error)) => error.clone(),
                    (None, None) => CallError::new(
                        ErrorCode::Unavailable,
                        Processed::No,
                        format!("`{}`: still connecting", host.addr),
                    ),
                }
            })
            .collect();
        if let [one] = errors.as_slice() {
            return CallError::new(one.code, Processed::No, one.message.clone());
        }
        let code = match errors.first() {
            Some(first) if errors.iter().all(|e| e.code == first.code) => first.code,
            _ => ErrorCode::Unavailable,
        };
        let reasons: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        CallError::new(
            code,
            Processed::No,
            format!("no host can take the call: {}", reasons.join("; ")),
        )
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("hosts", &self.hosts())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The host calls go to, and its connection: the current one while it
    /// can take calls; otherwise (or when it is in `avoid`) the best usable
    /// host not in `avoid` (see [`Shared::best`]), which becomes the current
    /// one when nothing was avoided.
    fn choose(&self, avoid: &[usize]) -> Option<(usize, Connection)> {
        let current = self.current.load(Ordering::Relaxed);
        if !avoid.contains(&current)
            && let Some(host) = self.hosts.get(current)
            && let Some(connection) = host.state().usable()
        {
            return Some((current, connection));
        }
        let (index, connection) = self.best(avoid)?;
        if avoid.is_empty() {
            self.current.store(index, Ordering::Relaxed);
        }
        Some((index, connection))
    }

    /// The best usable host not in `avoid`: the lowest tier, then the
    /// shortest round trip (unmeasured last), then the tiebreak.
    fn best(&self, avoid: &[usize]) -> Option<(usize, Connection)> {
        let mut best: Option<((u8, Duration, u32), usize, Connection)> = None;
        for (index, host) in self.hosts.iter().enumerate() {
            if avoid.contains(&index) {
                continue;
            }
            let state = host.state();
            let Some(connection) = state.usable() else {
                continue;
            };
            let rank = (host.tier, state.rtt.unwrap_or(Duration::MAX), host.tiebreak);
            if best.as_ref().is_none_or(|(better, ..)| rank < *better) {
                best = Some((rank, index, connection));
            }
        }
        best.map(|(_, index, connection)| (index, connection))
    }

    /// Settles which host calls go to: the best one when there is no usable
    /// current host; otherwise the current one stays unless a usable host
    /// is of a lower tier, or of the same tier with a round trip shorter by
    /// more than a fifth and 1 ms (so that noise between equally near hosts
    /// does not move calls back and forth). Run when a host connects and
    /// after each ping.
    fn rerank(&self) {
        let current = self.current.load(Ordering::Relaxed);
        let standing = self.hosts.get(current).and_then(|host| {
            let state = host.state();
            state.usable().map(|_| (host.tier, state.rtt))
        });
        let Some((best, _)) = self.best(&[]) else {
            return;
        };
        let better = match standing {
            None => true,
            Some(_) if best == current => false,
            Some((tier, rtt)) => {
                let host = &self.hosts[best];
                let theirs = host.state().rtt;
                let nearer = match (theirs, rtt) {
                    (Some(theirs), Some(ours)) => {
                        theirs + (ours / 5).max(Duration::from_millis(1)) < ours
                    }
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                host.tier < tier || (host.tier == tier && nearer)
            }
        };
        if better {
            self.current.store(best, Ordering::Relaxed);
        }
    }
}

impl HostState {
    /// The connection, if new calls may use it.
    fn usable(&self) -> Option<Connection> {
        self.connection
            .as_ref()
            .filter(|connection| connection.accepting())
            .cloned()
    }
}

impl Host {
    fn state(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().expect("client lock")
    }
}

/// Weight of a new ping's round trip in the smoothed one.
const RTT_WEIGHT: f64 = 0.3;

/// Keeps `host` connected until `stop`: connects, learns the catalog's
/// idempotent functions, pings every probe interval, and when the
/// connection stops taking calls (drain, loss, a ping left unanswered),
/// takes it out of use and connects again after a jittered backoff.
async fn look_after(host: Arc<Host>, shared: Arc<Shared>, stop: CancellationToken) {
    let options = &shared.options;
    // Consecutive failures: connection attempts that failed, and
    // connections that ended before a ping had been answered.
    let mut failures: u32 = 0;
    loop {
        host.state().connecting = true;
        let connected = tokio::select! {
            connected = Connection::connect_with(host.addr.as_str(), options.clone()) => connected,
            () = stop.cancelled() => return,
        };
        let connection = match connected {
            Ok(connection) => connection,
            Err(error) => {
                failures = failures.saturating_add(1);
                {
                    let mut state = host.state();
                    state.connecting = false;
                    state.attempts += 1;
                    state.error = Some(error);
                }
                shared.changed.send_modify(|n| *n += 1);
                if wait(reconnect_backoff(options, failures), &stop).await {
                    return;
                }
                continue;
            }
        };
        tracing::debug!(host = %host.addr, "connected");
        let idempotent: Vec<String> = match connection.list().await {
            Ok(catalog) => catalog
                .into_iter()
                .filter(|f| f.idempotent)
                .map(|f| f.name)
                .collect(),
            Err(_) => Vec::new(),
        };
        if !idempotent.is_empty() {
            shared
                .idempotent
                .write()
                .expect("client lock")
                .extend(idempotent);
        }
        {
            let mut state = host.state();
            state.connection = Some(connection.clone());
            state.connecting = false;
            state.attempts += 1;
            state.error = None;
        }
        shared.rerank();
        shared.changed.send_modify(|n| *n += 1);
        let reason = probe(&host, &connection, &shared, &stop, &mut failures).await;
        {
            let mut state = host.state();
            state.connection = None;
            state.error = Some(CallError::new(
                ErrorCode::Unavailable,
                Processed::No,
                reason.clone(),
            ));
        }
        shared.rerank();
        shared.changed.send_modify(|n| *n += 1);
        tracing::debug!(host = %host.addr, "out of use: {reason}");
        if stop.is_cancelled() {
            return;
        }
        failures = failures.saturating_add(1);
        if wait(reconnect_backoff(options, failures), &stop).await {
            return;
        }
    }
}

/// Pings `connection` every probe interval until it stops taking calls;
/// returns why. A ping answered resets `failures`.
async fn probe(
    host: &Host,
    connection: &Connection,
    shared: &Shared,
    stop: &CancellationToken,
    failures: &mut u32,
) -> String {
    let options = &shared.options;
    // A host that leaves a ping unanswered this long is taken out of use
    // (calls in flight on it still get their answers if it comes back).
    let silence = (options.probe_interval * 3).max(Duration::from_secs(1));
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = connection.stopped() => {
                return connection
                    .stop_reason()
                    .unwrap_or_else(|| format!("connection to `{}` ended", host.addr));
            }
            () = stop.cancelled() => return "client closed".into(),
            () = tokio::time::sleep_until(next) => {}
        }
        match tokio::time::timeout(silence, connection.ping()).await {
            Ok(Ok(rtt)) => {
                *failures = 0;
                {
                    let mut state = host.state();
                    state.rtt = Some(match state.rtt {
                        Some(old) => old.mul_f64(1.0 - RTT_WEIGHT) + rtt.mul_f64(RTT_WEIGHT),
                        None => rtt,
                    });
                }
                shared.rerank();
            }
            Ok(Err(error)) if !connection.accepting() => {
                return connection.stop_reason().unwrap_or(error.message);
            }
            Ok(Err(error)) => return error.message,
            Err(_) => return format!("`{}` left a ping unanswered for {silence:?}", host.addr),
        }
        next = Instant::now() + options.probe_interval;
    }
}

/// The wait before reconnection attempt `failures` (from 1): from
/// `reconnect_min`, doubling up to `reconnect_max`, drawn from half to all
/// of it.
fn reconnect_backoff(options: &ClientOptions, failures: u32) -> Duration {
    let exponential = options
        .reconnect_min
        .saturating_mul(1 << failures.saturating_sub(1).min(16));
    exponential
        .min(options.reconnect_max)
        .mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Sleeps `duration`; true if `stop` fired first.
async fn wait(duration: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = stop.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_doubles_within_its_bounds_and_is_jittered() {
        let options = ClientOptions::default();
        for failures in 1..40 {
            let full = options
                .reconnect_min
                .saturating_mul(1 << (failures - 1).min(16))
                .min(options.reconnect_max);
            let wait = reconnect_backoff(&options, failures);
            assert!(
                wait >= full / 2 && wait <= full,
                "{failures}: {wait:?} of {full:?}"
            );
        }
        assert_eq!(
            options
                .reconnect_min
                .saturating_mul(1 << 7)
                .min(options.reconnect_max),
            options.reconnect_max
        );
        let waits: HashSet<Duration> = (0..20).map(|_| reconnect_backoff(&options, 3)).collect();
        assert!(waits.len() > 1, "jittered: {waits:?}");
    }
}
