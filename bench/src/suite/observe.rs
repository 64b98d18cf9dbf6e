//! The observability group: what metrics and tracing cost, against hosts
//! alike in everything else.
//!
//! Every system is `math.add` on hosts of its own serving `math` alone,
//! plaintext: one host without an admin listener (no metrics are kept), one
//! with one (metrics kept), one that also takes part in traces and exports
//! spans over OTLP to a sink in this process (a new trace per call, 1 % of
//! them sampled), one that exports a span of every call (each carries a
//! sampled `traceparent`), and a forwarded pair a → b without and with
//! metrics and tracing. Their calls take turns with every other system's in
//! the same interleaved rounds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ciborium::Value;
use wasmrpc::{CallOptions, Client};

use super::{CallFn, Kind, Plan, System, args};
use crate::hosts::{Host, Lab, Security};
use crate::micro;
use crate::report::{Goal, Outcome, Row, Section, Summary, Target, thousands};

/// Calls/s with metrics and tracing on over calls/s with both off, many in
/// flight on one connection: at least this.
const THROUGHPUT_GOAL: f64 = 0.97;

/// The share of new traces the traced hosts sample (`--trace-sample`).
const SAMPLE: &str = "0.01";

/// A `math.add` system of the group: what its hosts observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Observed {
    /// No admin listener: no metrics, no spans.
    Off,
    /// An admin listener: metrics kept.
    Metrics,
    /// Metrics, and tracing: a trace per call, 1 % exported over OTLP.
    Traced,
    /// Metrics, and a span of every call exported over OTLP.
    EveryCall,
    /// Forwarded a → b, neither observed.
    ForwardedOff,
    /// Forwarded a → b, both with metrics and tracing as [`Observed::Traced`].
    ForwardedTraced,
}

impl Observed {
    const ALL: [Observed; 6] = [
        Observed::Off,
        Observed::Metrics,
        Observed::Traced,
        Observed::EveryCall,
        Observed::ForwardedOff,
        Observed::ForwardedTraced,
    ];

    fn name(self) -> &'static str {
        match self {
            Observed::Off => "`math.add`, no metrics, no tracing",
            Observed::Metrics => "`math.add`, metrics (admin listener)",
            Observed::Traced => "`math.add`, metrics and tracing (OTLP, 1 % sampled)",
            Observed::EveryCall => "`math.add`, metrics and a span of every call (OTLP)",
            Observed::ForwardedOff => "forwarded a → b `math.add`, no metrics, no tracing",
            Observed::ForwardedTraced => {
                "forwarded a → b `math.add`, metrics and tracing on both (1 % sampled)"
            }
        }
    }

    /// Its regions, the one called last; the first serves `math`.
    fn regions(self) -> &'static [&'static str] {
        match self {
            Observed::Off => &["obs-off"],
            Observed::Metrics => &["obs-metrics"],
            Observed::Traced => &["obs-traced"],
            Observed::EveryCall => &["obs-every"],
            Observed::ForwardedOff => &["obs-off-b", "obs-off-a"],
            Observed::ForwardedTraced => &["obs-traced-b", "obs-traced-a"],
        }
    }

    fn metrics(self) -> bool {
        !matches!(self, Observed::Off | Observed::ForwardedOff)
    }

    fn traced(self) -> bool {
        matches!(
            self,
            Observed::Traced | Observed::EveryCall | Observed::ForwardedTraced
        )
    }
}

/// The group's hosts, started, a client of each system, and the OTLP sink.
pub(super) struct ObservedHosts {
    systems: Vec<(Observed, Vec<Host>, Client)>,
    sink: Sink,
}

impl ObservedHosts {
    /// Starts the sink, every system's hosts, and connects a client to each.
    pub(super) async fn start(lab: &Lab) -> anyhow::Result<ObservedHosts> {
        let sink = Sink::start().await?;
        let endpoint = format!("http://{}", sink.addr);
        let mut systems = Vec::new();
        for observed in Observed::ALL {
            let regions = observed.regions();
            for (i, region) in regions.iter().enumerate() {
                let plugins: &[&str] = if i == 0 { &["math"] } else { &[] };
                lab.plugin_dir(region, plugins, &[])?;
            }
            let mut extra: Vec<&str> = Vec::new();
            if observed.metrics() {
                extra.extend(["--admin", "127.0.0.1:0"]);
            }
            if observed.traced() {
                extra.extend(["--otlp-endpoint", &endpoint]);
            }
            if matches!(observed, Observed::Traced | Observed::ForwardedTraced) {
                extra.extend(["--trace-sample", SAMPLE]);
            }
            let file = format!("{}.toml", regions[regions.len() - 1]);
            let hosts = lab
                .start_regions_with(&file, regions, Security::Plaintext, &extra)
                .await?;
            let called = hosts.last().expect("every system has a host");
            called.require("math.add").await?;
            let client = called.connect().await?;
            systems.push((observed, hosts, client));
        }
        Ok(ObservedHosts { systems, sink })
    }

    /// The `math.add` systems, to measure with every other system.
    pub(super) fn systems(&self) -> Vec<System> {
        self.systems
            .iter()
            .map(|(observed, hosts, client)| {
                let pids: Vec<_> = hosts.iter().map(Host::pid).collect();
                System::new(
                    Kind::Observed(*observed),
                    observed.name(),
                    add(client.clone(), *observed == Observed::EveryCall),
                    &pids,
                )
            })
            .collect()
    }

    /// Export requests the sink received.
    pub(super) fn exports(&self) -> u64 {
        self.sink.requests.load(Ordering::Relaxed)
    }
}

/// `math.add` with the lane's (a, b); with `traced`, the call carries a
/// sampled `traceparent` (one trace per lane).
fn add(client: Client, traced: bool) -> CallFn {
    Arc::new(move |lane: usize| {
        let client = client.clone();
        Box::pin(async move {
            let (a, b) = args(lane);
            let mut options = CallOptions::default();
            if traced {
                let mut metadata = BTreeMap::new();
                metadata.insert(
                    "traceparent".to_owned(),
                    format!(
                        "00-{:032x}-{:016x}-01",
                        0x5eed_0000_u128 + lane as u128,
                        1 + lane as u64
                    ),
                );
                options.metadata = metadata;
            }
            let value = client
                .call_value_with("math.add", vec![Value::from(a), Value::from(b)], options)
                .await?;
            micro::check_sum(&value, a, b)
        })
    })
}

/// An OTLP/HTTP receiver that counts export requests and drops them.
struct Sink {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start() -> anyhow::Result<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let counted = requests.clone();
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let counted = counted.clone();
            async move {
                drop(body);
                counted.fetch_add(1, Ordering::Relaxed);
                "{}"
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink {
            addr,
            requests,
            _task: task,
        })
    }
}

/// The group's rows and the figures its comparisons need.
#[derive(Default)]
pub(super) struct ObserveResults {
    rows: Vec<Row>,
    one: BTreeMap<Observed, Summary>,
    many: BTreeMap<Observed, Summary>,
    exports: Option<u64>,
}

impl ObserveResults {
    pub(super) fn failed(&mut self, error: &anyhow::Error) {
        self.rows.push(super::failed("observability group", error));
    }

    /// Files a system's rows at 1 and many in flight.
    pub(super) fn record(&mut self, observed: Observed, one: Option<Row>, many: Option<Row>) {
        for (row, figures) in [(&one, &mut self.one), (&many, &mut self.many)] {
            if let Some(Row {
                outcome: Outcome::Measured(summary),
                ..
            }) = row
            {
                figures.insert(observed, *summary);
            }
        }
        self.rows.extend([one, many].into_iter().flatten());
    }

    /// How many export requests the sink received in the run.
    pub(super) fn exported(&mut self, requests: u64) {
        self.exports = Some(requests);
    }

    /// The report's section: the comparisons, with the targets, then the rows.
    pub(super) fn section(self, plan: &Plan) -> Section {
        let us = |v: Option<f64>, what: &str| v.map(|v| (v, format!("{v:.1} µs {what}")));
        let per_s = |v: Option<f64>, what: &str| v.map(|v| (v, format!("{} {what}", thousands(v))));
        let p50 = |o: Observed| self.one.get(&o).map(|s| s.p50_us);
        let rate = |o: Observed| self.many.get(&o).map(|s| s.calls_per_sec);
        let host_cpu = |o: Observed| self.many.get(&o)?.cpu?.servers_us;
        let pipelined = format!("{} in flight on one connection", plan.in_flight);
        let targets = vec![
            Target::ratio(
                &format!("metrics and tracing (1 % sampled) / neither, calls/s, {pipelined}"),
                Goal::AtLeast(THROUGHPUT_GOAL),
                per_s(rate(Observed::Traced), "on"),
                per_s(rate(Observed::Off), "off"),
            ),
            Target::ratio(
                &format!("metrics alone / neither, calls/s, {pipelined}"),
                Goal::AtLeast(THROUGHPUT_GOAL),
                per_s(rate(Observed::Metrics), "metrics"),
                per_s(rate(Observed::Off), "off"),
            ),
            Target::ratio(
                &format!(
                    "host CPU per call, metrics and tracing (1 % sampled) / neither, {pipelined}"
                ),
                Goal::Reported,
                us(host_cpu(Observed::Traced), "on"),
                us(host_cpu(Observed::Off), "off"),
            ),
            Target::ratio(
                "p50, 1 in flight: metrics and tracing (1 % sampled) / neither",
                Goal::Reported,
                us(p50(Observed::Traced), "on"),
                us(p50(Observed::Off), "off"),
            ),
            Target::ratio(
                &format!("metrics and a span of every call / neither, calls/s, {pipelined}"),
                Goal::Reported,
                per_s(rate(Observed::EveryCall), "every call"),
                per_s(rate(Observed::Off), "off"),
            ),
            Target::ratio(
                &format!(
                    "host CPU per call, metrics and a span of every call / neither, {pipelined}"
                ),
                Goal::Reported,
                us(host_cpu(Observed::EveryCall), "every call"),
                us(host_cpu(Observed::Off), "off"),
            ),
            Target::ratio(
                "forwarded a → b p50, 1 in flight: observed on both / neither",
                Goal::Reported,
                us(p50(Observed::ForwardedTraced), "on"),
                us(p50(Observed::ForwardedOff), "off"),
            ),
            Target::ratio(
                &format!("forwarded a → b calls/s, {pipelined}: observed on both / neither"),
                Goal::Reported,
                per_s(rate(Observed::ForwardedTraced), "on"),
                per_s(rate(Observed::ForwardedOff), "off"),
            ),
        ];
        let exports = self
            .exports
            .map(|n| {
                format!(
                    " The sink received {} export requests.",
                    thousands(n as f64)
                )
            })
            .unwrap_or_default();
        Section {
            title: "Observability".into(),
            note: format!(
                "What metrics and traces cost. Each system is `math.add` on plaintext hosts \
                 of its own serving `math` alone, alike but for what they observe: no admin \
                 listener and no exporter (no metrics kept, trace contexts passed on \
                 unchanged); an admin listener (`--admin`, metrics kept, never scraped \
                 during the run); an admin listener and an OTLP exporter (`--otlp-endpoint`, \
                 `--trace-sample {SAMPLE}`: each call, sent without a `traceparent`, starts \
                 a trace, 1 % of them exported); the same exporting a span of every call \
                 (each carries a sampled `traceparent`). Spans go to a sink in the load \
                 generator's process, which drops them: its work takes CPU from the hosts \
                 on this 2-core machine, so the host CPU per call is the fairer measure of \
                 a span's cost.{exports} Their calls are measured in the same interleaved \
                 rounds as the other systems'."
            ),
            targets,
            rows: self.rows,
        }
    }
}
