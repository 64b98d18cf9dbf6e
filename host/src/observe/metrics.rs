//! The host's Prometheus metrics: what each layer counts as it works.
//!
//! [`Metrics`] is a cheap handle (an `Option<Arc<_>>`): the router, the
//! connections, the runtime and the plugin reloader each hold one and count
//! into it. A host without an admin listener has no one to read its metrics
//! and uses [`Metrics::off`], where every method returns at its first branch.
//!
//! Labels are bounded. A function label is a name from this host's catalog
//! (its own plugins' or a peer's), or [`UNKNOWN_FUNCTION`]: a name a caller
//! made up never becomes a label value. Regions come from `regions.toml`,
//! plugins from the plugin folder, codes and reasons from fixed lists.
//! State that is read rather than counted (peers, loaded plugins) is
//! collected at scrape time by [`super::admin`].
//!
//! Kept or not, a [`Metrics`] also carries the host's [`HostLoad`]: the
//! calls in flight and instances in use that the host reports to its peers
//! are counted by the same guards, whether an admin listener reads them or
//! not.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::load::{Counted, HostLoad};
use crate::protocol::{CallError, ErrorCode, Processed, ProtocolError, Role};

/// The `function` label of a call whose function is in no catalog this host
/// knows (it was refused, or routed by `[routes]` alone).
pub const UNKNOWN_FUNCTION: &str = "_unknown";

/// Where a call went: run by one of this host's plugins, forwarded to a
/// peer, or refused before either (by the access rules, a drain, or the
/// connection's in-flight limit).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Placement {
    Local,
    Forwarded,
    Refused,
}

impl EncodeLabelValue for Placement {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(match self {
            Placement::Local => "local",
            Placement::Forwarded => "forwarded",
            Placement::Refused => "refused",
        })
    }
}

/// A call's outcome: `ok` or its error code's wire spelling.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Code(Option<ErrorCode>);

impl EncodeLabelValue for Code {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.0.map_or("ok", ErrorCode::as_str))
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct ProcessedLabel(Processed);

impl EncodeLabelValue for ProcessedLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

/// Why a forwarded call's attempt went to a peer: the first attempt, a
/// failover after an attempt failed, or a hedge beside a late one.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Attempt {
    First,
    Failover,
    Hedge,
}

impl EncodeLabelValue for Attempt {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(match self {
            Attempt::First => "first",
            Attempt::Failover => "failover",
            Attempt::Hedge => "hedge",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    function: Arc<str>,
    code: Code,
    processed: ProcessedLabel,
    placement: Placement,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: Arc<str>,
    placement: Placement,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    region: Arc<str>,
    kind: Attempt,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    region: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type FloatCounter = Counter<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 25 µs to 6.5 s, doubling.
    Histogram::new(exponential_buckets(25e-6, 2.0, 19))
}

struct Meters {
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    forward_attempts: Family<AttemptLabels, Counter>,
    retry_budget_refusals: Family<RegionLabels, Counter>,
    plugin_loads: Family<PluginLabels, Counter>,
    plugin_refusals: Family<PluginLabels, Counter>,
    instances_in_use: Family<PluginLabels, Gauge>,
    guest_seconds: Family<PluginLabels, FloatCounter>,
    connections_open: Family<RoleLabels, Gauge>,
    connections: Family<RoleLabels, Counter>,
    rejected_frames: Family<ReasonLabels, Counter>,
}

/// A handle on the host's metrics and its load; clones count into the same
/// ones.
#[derive(Clone, Default)]
pub struct Metrics {
    meters: Option<Arc<Meters>>,
    load: Arc<HostLoad>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.meters.is_some() {
            "Metrics(on)"
        } else {
            "Metrics(off)"
        })
    }
}

impl Metrics {
    /// Metrics that are kept.
    pub fn on() -> Metrics {
        let meters = Arc::new(Meters {
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency_histogram),
            forward_attempts: Family::default(),
            retry_budget_refusals: Family::default(),
            plugin_loads: Family::default(),
            plugin_refusals: Family::default(),
            instances_in_use: Family::default(),
            guest_seconds: Family::default(),
            connections_open: Family::default(),
            connections: Family::default(),
            rejected_frames: Family::default(),
        });
        Metrics {
            meters: Some(meters),
            load: Arc::default(),
        }
    }

    /// Metrics that are not kept: every method does nothing but count the
    /// host's load.
    pub fn off() -> Metrics {
        Metrics::default()
    }

    pub fn is_on(&self) -> bool {
        self.meters.is_some()
    }

    /// The host's own load, as it reports it to its peers.
    pub fn load(&self) -> &Arc<HostLoad> {
        &self.load
    }

    /// Adds the metrics to `registry` (names without the `wasmrpc_` prefix,
    /// which the registry adds).
    pub fn register(&self, registry: &mut Registry) {
        let Some(m) = &self.meters else { return };
        registry.register(
            "calls",
            "Calls this host routed (from callers, from peers, and its guests' nested calls), \
             by function, outcome code, `processed` and placement",
            m.calls.clone(),
        );
        registry.register_with_unit(
            "call_duration",
            "Time from a call's arrival at the router to its answer, by function and placement",
            Unit::Seconds,
            m.call_seconds.clone(),
        );
        registry.register(
            "forward_attempts",
            "Attempts of forwarded calls, by the peer's region and kind \
             (first, failover after a failure, hedge beside a late attempt)",
            m.forward_attempts.clone(),
        );
        registry.register(
            "retry_budget_refusals",
            "Failovers and hedges not made because the retry budget was spent, \
             by the region they would have gone to",
            m.retry_budget_refusals.clone(),
        );
        registry.register(
            "plugin_loads",
            "Plugin versions loaded or replaced, by plugin",
            m.plugin_loads.clone(),
        );
        registry.register(
            "plugin_refusals",
            "Plugin files refused (unreadable, invalid, bad sidecar), by plugin",
            m.plugin_refusals.clone(),
        );
        registry.register(
            "instances_in_use",
            "Guest instances running a call now, by plugin",
            m.instances_in_use.clone(),
        );
        registry.register_with_unit(
            "guest_cpu",
            "Time host threads spent running a plugin's guest code, measured around each \
             poll of its calls (instantiation included)",
            Unit::Seconds,
            m.guest_seconds.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open now, by role (client or peer), after the handshake",
            m.connections_open.clone(),
        );
        registry.register(
            "connections",
            "Connections that completed the handshake, by role",
            m.connections.clone(),
        );
        registry.register(
            "rejected_frames",
            "Connections ended by a frame or handshake the host refused, by reason",
            m.rejected_frames.clone(),
        );
    }

    /// The meters of one plugin version, made once when it loads: its
    /// plugin meter and, for each of `functions`, the meters of a call that
    /// succeeds here (the common case, counted with no lookup).
    pub fn loaded_plugin<'a>(
        &self,
        plugin: &Arc<str>,
        functions: impl IntoIterator<Item = &'a str>,
    ) -> LoadedMeters {
        let Some(m) = &self.meters else {
            return LoadedMeters {
                plugin: self.plugin(plugin),
                functions: Vec::new(),
            };
        };
        let functions = functions
            .into_iter()
            .map(|name| {
                let function: Arc<str> = name.into();
                let ok = m.calls.get_or_create_owned(&CallLabels {
                    function: function.clone(),
                    code: Code(None),
                    processed: ProcessedLabel(Processed::Yes),
                    placement: Placement::Local,
                });
                let seconds = m.call_seconds.get_or_create_owned(&FunctionLabels {
                    function: function.clone(),
                    placement: Placement::Local,
                });
                FunctionMeter {
                    function,
                    ok,
                    seconds,
                }
            })
            .collect();
        LoadedMeters {
            plugin: self.plugin(plugin),
            functions,
        }
    }

    /// Starts measuring a call that has reached the router.
    pub fn start_call(&self) -> CallMeter {
        CallMeter {
            meters: self.meters.clone(),
            start: self.meters.as_ref().map(|_| Instant::now()),
            _in_flight: self.load.call(),
            function: None,
            local: None,
            placement: Placement::Forwarded,
            done: false,
        }
    }

    /// Counts a call refused before routing (access rules, drain, the
    /// in-flight limit). `known` says whether `function` is in the catalog.
    pub fn refused(&self, function: &str, known: bool, error: &CallError) {
        let Some(m) = &self.meters else { return };
        let function: Arc<str> = if known {
            function.into()
        } else {
            UNKNOWN_FUNCTION.into()
        };
        m.calls
            .get_or_create(&CallLabels {
                function,
                code: Code(Some(error.code)),
                processed: ProcessedLabel(error.processed),
                placement: Placement::Refused,
            })
            .inc();
    }

    /// Counts an attempt of a forwarded call on a peer of `region`.
    pub fn forward_attempt(&self, region: &str, kind: Attempt) {
        let Some(m) = &self.meters else { return };
        m.forward_attempts
            .get_or_create(&AttemptLabels {
                region: region.into(),
                kind,
            })
            .inc();
    }

    /// Counts a failover or hedge to `region` that the retry budget refused.
    pub fn retry_budget_refusal(&self, region: &str) {
        let Some(m) = &self.meters else { return };
        m.retry_budget_refusals
            .get_or_create(&RegionLabels {
                region: region.into(),
            })
            .inc();
    }

    pub fn plugin_loaded(&self, plugin: &str) {
        let Some(m) = &self.meters else { return };
        m.plugin_loads
            .get_or_create(&PluginLabels {
                plugin: plugin.into(),
            })
            .inc();
    }

    pub fn plugin_refused(&self, plugin: &str) {
        let Some(m) = &self.meters else { return };
        m.plugin_refusals
            .get_or_create(&PluginLabels {
                plugin: plugin.into(),
            })
            .inc();
    }

    /// The meters of one plugin's calls: its instances in use and its
    /// guest time.
    pub fn plugin(&self, plugin: &Arc<str>) -> PluginMeter {
        PluginMeter {
            meters: self.meters.as_ref().map(|m| {
                let labels = PluginLabels {
                    plugin: plugin.clone(),
                };
                (
                    m.instances_in_use.get_or_create_owned(&labels),
                    m.guest_seconds.get_or_create_owned(&labels),
                )
            }),
            load: Some(self.load.clone()),
        }
    }

    /// Counts a connection that completed its handshake as `role`, open
    /// until the guard is dropped.
    pub fn connection(&self, role: Role) -> Option<ConnectionGuard> {
        let m = self.meters.as_ref()?;
        let labels = RoleLabels {
            role: match role {
                Role::Peer => "peer",
                Role::Client | Role::Host => "client",
            },
        };
        m.connections.get_or_create(&labels).inc();
        let open = m.connections_open.get_or_create_owned(&labels);
        open.inc();
        Some(ConnectionGuard(open))
    }

    /// Counts a connection ended by `error`, when the host refused what the
    /// other side sent (not a closed socket or an idle connection).
    pub fn connection_ended(&self, error: &ProtocolError) {
        let Some(m) = &self.meters else { return };
        let reason = match error {
            ProtocolError::FrameTooLarge { .. } => "frame_too_large",
            ProtocolError::Malformed(_) => "malformed",
            ProtocolError::Unexpected { .. } => "unexpected_message",
            ProtocolError::Version { .. } => "version",
            ProtocolError::FrameTimeout(_) => "frame_timeout",
            ProtocolError::TooManyCancels { .. } => "too_many_cancels",
            ProtocolError::SlowReader(_) => "slow_reader",
            ProtocolError::Unauthenticated(_) => "unauthenticated",
            ProtocolError::Idle(_) | ProtocolError::Io(_) => return,
        };
        m.rejected_frames
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// Keeps a connection counted as open.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Measures one call through the router. The router names the function
/// once it knows it is in a catalog ([`CallMeter::known`]); the call is
/// counted when [`CallMeter::finish`] sees its outcome, or as `cancelled`
/// if its future is dropped first (the caller went away).
pub struct CallMeter {
    meters: Option<Arc<Meters>>,
    start: Option<Instant>,
    function: Option<Arc<str>>,
    /// The function's meters, when it runs here.
    local: Option<FunctionMeter>,
    placement: Placement,
    done: bool,
    /// Counts the call in the host's load while it lives.
    _in_flight: Counted,
}

impl CallMeter {
    /// The call's function is catalogued, and runs at `placement`.
    pub fn known(&mut self, function: &str, placement: Placement) {
        if self.meters.is_some() {
            self.function = Some(function.into());
        }
        self.placement = placement;
    }

    /// The call runs here, as the function `meter` measures.
    pub fn local(&mut self, meter: &FunctionMeter) {
        if self.meters.is_some() {
            self.local = Some(meter.clone());
        }
        self.placement = Placement::Local;
    }

    /// Counts the call with its outcome.
    pub fn finish<T>(mut self, outcome: &Result<T, CallError>) {
        let (code, processed) = match outcome {
            Ok(_) => (None, Processed::Yes),
            Err(error) => (Some(error.code), error.processed),
        };
        self.record(code, processed);
    }

    fn record(&mut self, code: Option<ErrorCode>, processed: Processed) {
        self.done = true;
        let (Some(m), Some(start)) = (&self.meters, self.start) else {
            return;
        };
        let elapsed = start.elapsed().as_secs_f64();
        let function = match self.local.take() {
            Some(local) => {
                local.seconds.observe(elapsed);
                if code.is_none() {
                    local.ok.inc();
                    return;
                }
                local.function
            }
            None => {
                let function = self
                    .function
                    .take()
                    .unwrap_or_else(|| UNKNOWN_FUNCTION.into());
                m.call_seconds
                    .get_or_create(&FunctionLabels {
                        function: function.clone(),
                        placement: self.placement,
                    })
                    .observe(elapsed);
                function
            }
        };
        m.calls
            .get_or_create(&CallLabels {
                function,
                code: Code(code),
                processed: ProcessedLabel(processed),
                placement: self.placement,
            })
            .inc();
    }
}

impl Drop for CallMeter {
    fn drop(&mut self) {
        if !self.done {
            self.record(Some(ErrorCode::Cancelled), Processed::Maybe);
        }
    }
}

/// The meters of a function that runs here: its name as a label, its
/// successful calls and its latency, resolved once.
#[derive(Clone)]
pub struct FunctionMeter {
    function: Arc<str>,
    ok: Counter,
    seconds: Histogram,
}

/// The meters of one loaded plugin version (none when metrics are off).
#[derive(Clone, Default)]
pub struct LoadedMeters {
    pub plugin: PluginMeter,
    /// By function index, as in the plugin's `functions`.
    pub functions: Vec<FunctionMeter>,
}

/// One plugin's meters, taken once per call, and the host's load its
/// instances count in.
#[derive(Clone, Default)]
pub struct PluginMeter {
    meters: Option<(Gauge, FloatCounter)>,
    load: Option<Arc<HostLoad>>,
}

impl PluginMeter {
    /// Counts an instance in use (in the metrics and the host's load) until
    /// the guard is dropped.
    pub fn in_use(&self) -> Option<InUse> {
        let gauge = self.meters.as_ref().map(|(gauge, _)| {
            gauge.inc();
            gauge.clone()
        });
        let load = self.load.as_ref().map(|load| load.instance());
        (gauge.is_some() || load.is_some()).then_some(InUse { gauge, _load: load })
    }

    /// Adds time spent running the plugin's guest code.
    pub fn guest_time(&self, seconds: f64) {
        if let Some((_, counter)) = &self.meters {
            counter.inc_by(seconds);
        }
    }

    /// Whether metrics are kept (guest time is measured only then).
    pub fn is_on(&self) -> bool {
        self.meters.is_some()
    }
}

/// Keeps an instance counted as in use.
pub struct InUse {
    gauge: Option<Gauge>,
    _load: Option<Counted>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            gauge.dec();
        }
    }
}
