//! The admin listener (`--admin ADDR`): metrics, health, status and the
//! dashboard over HTTP/1.1 (axum). It is a separate listener from the RPC
//! port, serves only GETs, changes nothing, and keeps answering while the
//! host drains, so that `/readyz` can say so.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use super::status::{self, KeyStatus, PeerStatus, RouteStatus, Status};
use crate::plugins;
use crate::region::keys::Keys;
use crate::region::{Health, Peers, Routes};

/// The dashboard: one page, no external resources.
const DASHBOARD: &str = include_str!("dashboard.html");

/// What the admin listener reports on: the host's parts, some of them set
/// once the host has built them ([`HostState::wire`]).
pub struct HostState {
    pub region: String,
    /// The host's address in `regions.toml` (its listen address).
    host: std::sync::RwLock<String>,
    started: Instant,
    plugins: Arc<plugins::Registry>,
    wired: OnceLock<Wired>,
    listening: AtomicBool,
    /// Cancelled when the host starts draining.
    draining: CancellationToken,
}

struct Wired {
    peers: Arc<Peers>,
    routes: Box<dyn Fn() -> (Arc<Routes>, Arc<Keys>) + Send + Sync>,
}

impl HostState {
    pub fn new(
        region: &str,
        host: &str,
        plugins: Arc<plugins::Registry>,
        draining: CancellationToken,
    ) -> Arc<HostState> {
        Arc::new(HostState {
            region: region.to_owned(),
            host: std::sync::RwLock::new(host.to_owned()),
            started: Instant::now(),
            plugins,
            wired: OnceLock::new(),
            listening: AtomicBool::new(false),
            draining,
        })
    }

    /// Gives the state the peer links and the `[routes]` and `[keys]` in
    /// force.
    pub fn wire(
        &self,
        peers: Arc<Peers>,
        routes: impl Fn() -> (Arc<Routes>, Arc<Keys>) + Send + Sync + 'static,
    ) {
        let _ = self.wired.set(Wired {
            peers,
            routes: Box::new(routes),
        });
    }

    /// The RPC listener is bound and serving, as `host`.
    pub fn set_listening(&self, host: &str) {
        host.clone_into(&mut self.host.write().expect("host lock"));
        self.listening.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Listening (plugins loaded before that) and not draining.
    pub fn ready(&self) -> bool {
        self.listening.load(Ordering::Acquire) && !self.draining()
    }

    fn peers(&self) -> Vec<crate::region::PeerSnapshot> {
        self.wired.get().map_or_else(Vec::new, |w| {
            w.peers.list().iter().map(|p| p.snapshot()).collect()
        })
    }

    /// The host now, as `/status` answers.
    pub fn status(&self) -> Status {
        let (routes, keys) = self.wired.get().map(|w| (w.routes)()).unwrap_or_default();
        Status {
            region: self.region.clone(),
            host: self.host.read().expect("host lock").clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            ready: self.ready(),
            draining: self.draining(),
            plugins: status::plugins(&self.plugins.snapshot(), &self.plugins.refusals()),
            peers: self.peers().iter().map(PeerStatus::from_snapshot).collect(),
            routes: routes
                .iter()
                .map(|(pattern, regions)| RouteStatus {
                    pattern: pattern.clone(),
                    regions: regions.clone(),
                })
                .collect(),
            keys: keys.rules().iter().map(KeyStatus::from_rule).collect(),
        }
    }
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Reads the host's state into metrics at each scrape: peers, plugins,
/// readiness.
#[derive(Debug)]
struct StateCollector(Arc<HostState>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    region: String,
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerStateLabels {
    region: String,
    address: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

fn encode_family<S, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    family: &Family<S, M>,
) -> std::fmt::Result
where
    S: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug,
    M: EncodeMetric + prometheus_client::metrics::TypedMetric,
{
    family.encode(encoder.encode_descriptor(name, help, None, M::TYPE)?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let state = &self.0;
        let ready = ConstGauge::new(i64::from(state.ready()));
        ready.encode(encoder.encode_descriptor(
            "ready",
            "1 when the host is listening and not draining (as /readyz)",
            None,
            ready.metric_type(),
        )?)?;
        let uptime = ConstGauge::new(state.started.elapsed().as_secs_f64());
        uptime.encode(encoder.encode_descriptor(
            "uptime_seconds",
            "Seconds since the host started",
            None,
            uptime.metric_type(),
        )?)?;

        let health: Family<PeerStateLabels, Gauge> = Family::default();
        let rtt: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
        let in_flight: Family<PeerLabels, Gauge> = Family::default();
        let failures: Family<PeerLabels, Gauge> = Family::default();
        let ejected: Family<PeerLabels, Gauge> = Family::default();
        type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;
        let reported_in_flight: Family<PeerLabels, Gauge> = Family::default();
        let reported_instances: Family<PeerLabels, Gauge> = Family::default();
        let reported_cpu: Family<PeerLabels, FloatGauge> = Family::default();
        let score: Family<PeerLabels, FloatGauge> = Family::default();
        let peers = state.peers();
        for peer in &peers {
            let labels = PeerLabels {
                region: peer.region.clone(),
                address: peer.addr.clone(),
            };
            for candidate in [Health::Up, Health::Ejected, Health::Down] {
                health
                    .get_or_create(&PeerStateLabels {
                        region: peer.region.clone(),
                        address: peer.addr.clone(),
                        state: candidate.as_str(),
                    })
                    .set(i64::from(peer.health == candidate));
            }
            if let Some(srtt) = peer.rtt {
                rtt.get_or_create(&labels).set(srtt.as_secs_f64());
            }
            in_flight
                .get_or_create(&labels)
                .set(i64::try_from(peer.in_flight).unwrap_or(i64::MAX));
            failures
                .get_or_create(&labels)
                .set(i64::from(peer.failures));
            ejected
                .get_or_create(&labels)
                .set(i64::from(peer.ejected_for.is_some()));
            if let Some((load, _)) = &peer.reported {
                reported_in_flight
                    .get_or_create(&labels)
                    .set(i64::try_from(load.in_flight).unwrap_or(i64::MAX));
                reported_instances
                    .get_or_create(&labels)
                    .set(i64::try_from(load.instances).unwrap_or(i64::MAX));
                if let Some(cpu) = load.cpu {
                    reported_cpu.get_or_create(&labels).set(cpu);
                }
            }
            score.get_or_create(&labels).set(peer.score);
        }
        // Counters the peers keep themselves: their values are read here.
        for (name, help, value) in [
            (
                "peer_ejections",
                "Ejections of the peer since this host started",
                (|p: &crate::region::PeerSnapshot| p.ejections) as fn(&_) -> u64,
            ),
            (
                "peer_links_lost",
                "Links to the peer lost (closed, broken, or the peer declared dead)",
                |p| p.links_lost,
            ),
        ] {
            let mut metric = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for peer in &peers {
                let labels = PeerLabels {
                    region: peer.region.clone(),
                    address: peer.addr.clone(),
                };
                ConstCounter::new(value(peer)).encode(metric.encode_family(&labels)?)?;
            }
        }
        encode_family(
            &mut encoder,
            "peer_health",
            "1 for the peer's health now (up, ejected or down), 0 for the others",
            &health,
        )?;
        encode_family(
            &mut encoder,
            "peer_rtt_seconds",
            "Smoothed ping round-trip time to the peer",
            &rtt,
        )?;
        encode_family(
            &mut encoder,
            "peer_in_flight",
            "Calls this host has in flight to the peer",
            &in_flight,
        )?;
        encode_family(
            &mut encoder,
            "peer_failures",
            "Host-level failures of the peer in a row (ejection counts them)",
            &failures,
        )?;
        encode_family(
            &mut encoder,
            "peer_ejected",
            "1 while the peer is ejected",
            &ejected,
        )?;
        encode_family(
            &mut encoder,
            "peer_reported_in_flight",
            "Calls the peer reported in flight from all its callers (in its last pong, \
             while the report counts)",
            &reported_in_flight,
        )?;
        encode_family(
            &mut encoder,
            "peer_reported_instances",
            "Wasm instances the peer reported running a call",
            &reported_instances,
        )?;
        encode_family(
            &mut encoder,
            "peer_reported_cpu",
            "The peer's CPU use over about a second as it reported it, 0 to 1 of its cores",
            &reported_cpu,
        )?;
        encode_family(
            &mut encoder,
            "peer_score",
            "The figure the router ranks the peer by after health, lateness, region and \
             routes (round trip scaled by calls in flight and reported load; lower is better)",
            &score,
        )?;

        let functions: Family<PluginLabels, Gauge> = Family::default();
        for loaded in state.plugins.snapshot().plugins() {
            functions
                .get_or_create(&PluginLabels {
                    plugin: loaded.plugin.name.to_string(),
                })
                .set(i64::try_from(loaded.plugin.functions.len()).unwrap_or(i64::MAX));
        }
        encode_family(
            &mut encoder,
            "plugin_functions",
            "Functions of each plugin loaded now",
            &functions,
        )?;
        Ok(())
    }
}

struct Admin {
    registry: Registry,
    state: Arc<HostState>,
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve_admin(listener: TcpListener, metrics: Metrics, state: Arc<HostState>) {
    let mut registry = Registry::with_prefix("wasmrpc");
    registry.register(
        "build",
        "The wasmrpc version this host runs",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    metrics.register(&mut registry);
    registry.register_collector(Box::new(StateCollector(state.clone())));
    let admin = Arc::new(Admin { registry, state });
    let app = axum::Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .with_state(admin);
    let addr = listener.local_addr().ok();
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(addr = ?addr, "the admin listener stopped: {error}");
    }
}

/// Binds the admin listener.
///
/// # Errors
///
/// When `addr` cannot be bound.
pub async fn bind_admin(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the admin listener `{addr}`: {e}"))
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DASHBOARD,
    )
        .into_response()
}

async fn metrics_text(State(admin): State<Arc<Admin>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &admin.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    let state = &admin.state;
    if state.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if state.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: loading plugins\n",
        )
            .into_response()
    }
}

async fn status_json(State(admin): State<Arc<Admin>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(admin.state.status()),
    )
        .into_response()
}
