//! The `all` run: every system under the same loads, one after the other,
//! each server alone on the machine while it is measured.

mod languages;
mod observe;
mod python;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use ciborium::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::hosts::{Availability, Host, Lab, Security};
use futures::future::BoxFuture;

use crate::cpu::Usage;
use crate::load::{self, Load, Measurement};
use crate::micro;
use crate::prepare::Paths;
use crate::report::{
    CpuPerCall, Goal, Machine, Outcome, Report, Row, Section, Summary, Target, thousands,
};
use crate::{floor, grpc};

/// The example plugins loaded by the local host (all of them).
const ALL_PLUGINS: &[&str] = &[
    "math",
    "greeter",
    "inventory",
    "orders",
    "misbehave",
    "ledger",
    "relay",
];

/// Payload sizes of the echo sweep.
const PAYLOADS: &[(usize, &str)] = &[(1 << 10, "1 KiB"), (64 << 10, "64 KiB"), (1 << 20, "1 MiB")];

/// The forwarded call under a `[keys]` rule: what routing by key costs.
const KEYED: &str = "wasmrpc forwarded a → b `math.add`, routed by key (`[keys]`: args[0])";

/// The forwarded calls' target host reached through a byte relay instead of
/// the forwarding host: what the hop costs with no work in it.
const RELAYED: &str = "wasmrpc `math.add` on b through a raw TCP relay";

/// The forwarded calls' target host reached through a relay that decodes and
/// re-encodes every frame: what the hop costs with only the protocol's
/// codec in it.
const FRAME_RELAYED: &str = "wasmrpc `math.add` on b through a decoding frame relay";

/// The sidecar that turns on instance reuse for `math` (a host opt-in).
const REUSE_SIDECAR: &str = "reuse_instances = true\n";

/// The sidecar that lets `relay.add` make its nested call of `math.add`: a
/// plugin without a `calls` list may call nothing.
const RELAY_SIDECAR: &str = "calls = [\"math.add\"]\n";

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Calls per measurement at 1 in flight.
    pub calls: u64,
    /// Calls per measurement at `in_flight` in flight.
    pub pipelined_calls: u64,
    /// Calls in flight for the pipelined measurements.
    pub in_flight: usize,
    /// Calls per second of the open-loop measurements.
    pub rate: u32,
    /// Duration of the open-loop measurements.
    pub open_for: Duration,
    /// Calls made, unmeasured, before each measurement.
    pub warmup: u64,
    /// Bytes echoed per payload measurement: fewer calls for larger payloads.
    pub payload_bytes: u64,
    /// The closed-loop measurements are split into this many rounds, and
    /// the systems take turns round by round, so that a machine whose speed
    /// drifts (other tenants, frequency) treats every system alike.
    pub rounds: u64,
    /// New connections per kind in the TLS group (connect to `hello`).
    pub connections: u64,
    /// Seconds each Python client is measured per load in the Python group
    /// (split into the rounds), after a warm-up of a fifth of it.
    pub python_for: Duration,
    /// Only these groups (all when empty): for quick comparisons while
    /// working on one thing. A partial report leaves the other rows out.
    pub only: Vec<Group>,
}

/// The parts of a run, selectable with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    Floor,
    Grpc,
    /// `math.add` on the local host, and its memory.
    Local,
    Nested,
    Payload,
    Reuse,
    Forwarded,
    InProcess,
    /// `math.add` with and without TLS and a token, single and forwarded,
    /// and new connections with and without TLS.
    Tls,
    /// `math.add` with and without metrics and tracing, single and
    /// forwarded.
    Observe,
    /// The wasmrpc Python client against grpcio, at 1 and many in flight
    /// (needs python3 with venv, and pip's access to its package index on
    /// the first run).
    Python,
    /// `add` served by Rust, Python and JavaScript components, with fresh
    /// and reused instances, and the host's memory with each (the Python
    /// and JavaScript components' paths in `WASMRPC_BENCH_PYADD` and
    /// `WASMRPC_BENCH_JSADD`).
    Languages,
}

impl Plan {
    fn runs(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.contains(&group)
    }

    /// The labels of the three loads every add(a, b) system runs.
    fn standard_labels(&self) -> [String; 3] {
        [
            "1 in flight".into(),
            format!("{} in flight, 1 connection", self.in_flight),
            self.open_label(),
        ]
    }

    /// The Python group's warm-up per client and load.
    fn python_warmup(&self) -> Duration {
        self.python_for / 5
    }

    fn open_label(&self) -> String {
        format!(
            "open loop, {}/s for {} s",
            thousands(f64::from(self.rate)),
            self.open_for.as_secs_f64()
        )
    }

    fn one_in_flight(&self, calls: u64) -> Load {
        Load::Closed {
            calls,
            in_flight: 1,
        }
    }

    fn pipelined(&self, calls: u64) -> Load {
        Load::Closed {
            calls,
            in_flight: self.in_flight,
        }
    }

    /// Calls for one payload measurement of `size` bytes.
    fn payload_calls(&self, size: usize) -> u64 {
        (self.payload_bytes / size as u64).clamp(200.min(self.calls), self.calls)
    }

    fn describe(&self) -> String {
        format!(
            "One run of `cargo run --release --manifest-path bench/Cargo.toml -- all`: \
             client and servers on this machine over loopback; {} calls at 1 in flight, \
             {} at {} in flight, open loop at {} calls/s for {} s; every measurement \
             follows a warm-up of up to {} calls at the same concurrency. The closed-loop \
             measurements of the systems are interleaved: {} rounds, each system in turn, \
             so that drifts in the machine's speed meet every system alike.",
            thousands(self.calls as f64),
            thousands(self.pipelined_calls as f64),
            self.in_flight,
            thousands(f64::from(self.rate)),
            self.open_for.as_secs_f64(),
            thousands(self.warmup as f64),
            self.rounds,
        )
    }
}

/// Runs every benchmark and gathers the report.
pub async fn run(plan: &Plan, paths: &Paths) -> anyhow::Result<Report> {
    let lab = Lab::new(&paths.wasmrpc, &paths.guests)?;
    let mut results = Results::default();

    // Every server first, so that the measurements behind each target can
    // take turns.
    progress("starting the servers");
    let started = Started::start(plan, &lab, &mut results).await;
    let systems = started.systems(plan);
    if !systems.is_empty() {
        progress("1 in flight, interleaved");
        let one = interleave(plan, &systems, 1, plan.calls, plan.warmup.min(plan.calls)).await;
        progress(&format!("{} in flight, interleaved", plan.in_flight));
        let sampler = started
            .local
            .as_ref()
            .and_then(|l| l.host.sample_rss().ok());
        let warmup = plan.warmup.min(plan.pipelined_calls);
        let many = interleave(plan, &systems, plan.in_flight, plan.pipelined_calls, warmup).await;
        if let Some(sampler) = sampler {
            results.memory.push((
                format!(
                    "wasmrpc host RSS, peak during its `math.add` rounds at {} in flight",
                    plan.in_flight
                ),
                mib(sampler.peak().await),
            ));
        }
        for ((system, one), many) in systems.iter().zip(one).zip(many) {
            if let Kind::Secured(secured) = system.kind {
                results.tls.record(secured, one, many);
                continue;
            }
            if let Kind::Observed(observed) = system.kind {
                results.observe.record(observed, one, many);
                continue;
            }
            progress(&format!("{}, open loop", system.name));
            let open = if system.open_loop {
                let load = Load::Open {
                    rate: plan.rate,
                    duration: plan.open_for,
                };
                let call = system.call.clone();
                let call = move |lane| call(lane);
                Some(measure(&system.name, &plan.open_label(), &call, load, plan.warmup).await)
            } else {
                None
            };
            results.record(system.kind, one, many, open);
        }
    }
    if let Some(secured) = &started.secured {
        progress("new connections, interleaved");
        let systems = secured.connections();
        let warmup = plan.warmup.min(plan.connections / 10);
        let rows = interleave(plan, &systems, 1, plan.connections, warmup).await;
        for (system, row) in systems.iter().zip(rows) {
            if let Kind::Connect(handshake) = system.kind {
                results.tls.record_connect(handshake, row);
            }
        }
    }
    if let Some(observed) = &started.observed {
        results.observe.exported(observed.exports());
    }
    if plan.runs(Group::Payload) {
        progress("payload sweep");
        payload_rows(plan, &started, &mut results).await;
    }
    drop(started);
    if plan.runs(Group::Python) {
        progress("the Python group");
        results.python = python::run(plan, &lab, paths).await;
    }
    if plan.runs(Group::Languages) {
        progress("the languages group");
        results.languages = languages::run(plan, &lab, paths).await;
    }
    if plan.runs(Group::InProcess) {
        progress("in-process fresh instantiation");
        if let Err(e) = in_process_rows(plan, paths, &mut results).await {
            results.in_process.push(failed("Runtime::call", &e));
        }
    }
    Ok(results.into_report(plan))
}

fn progress(what: &str) {
    eprintln!("bench: measuring {what}");
}

/// Rows as they are measured, and the figures the targets need.
#[derive(Default)]
struct Results {
    add: Vec<Row>,
    nested: Vec<Row>,
    payload: Vec<Row>,
    in_process: Vec<Row>,
    memory: Vec<(String, String)>,
    tls: tls::TlsResults,
    observe: observe::ObserveResults,
    python: python::PythonResults,
    languages: languages::LanguagesResults,
    floor_p50: Option<f64>,
    floor_relayed_p50: Option<f64>,
    grpc_pipelined: Option<f64>,
    local_p50: Option<f64>,
    local_pipelined: Option<f64>,
    reuse_p50: Option<f64>,
    reuse_pipelined: Option<f64>,
    forwarded_p50: Option<f64>,
    keyed_p50: Option<f64>,
    relayed_p50: Option<f64>,
    frame_relayed_p50: Option<f64>,
    fresh_median: Option<f64>,
    fresh_whole_median: Option<f64>,
}

impl Results {
    /// Files a system's rows (1 in flight, `in_flight` on one connection,
    /// open loop) and the figures its targets need.
    fn record(&mut self, kind: Kind, one: Option<Row>, many: Option<Row>, open: Option<Row>) {
        let (one_p50, many_rate) = (
            one.as_ref().and_then(p50),
            many.as_ref().and_then(calls_per_sec),
        );
        match kind {
            Kind::Floor => self.floor_p50 = one_p50,
            Kind::FloorRelayed => self.floor_relayed_p50 = one_p50,
            Kind::Grpc => self.grpc_pipelined = many_rate,
            Kind::Local => {
                self.local_p50 = one_p50;
                self.local_pipelined = many_rate;
            }
            Kind::Reuse => {
                self.reuse_p50 = one_p50;
                self.reuse_pipelined = many_rate;
            }
            Kind::Forwarded => self.forwarded_p50 = one_p50,
            Kind::Keyed => self.keyed_p50 = one_p50,
            Kind::Relayed => self.relayed_p50 = one_p50,
            Kind::FrameRelayed => self.frame_relayed_p50 = one_p50,
            Kind::FloorConnections
            | Kind::Nested
            | Kind::Secured(_)
            | Kind::Connect(_)
            | Kind::Observed(_)
            | Kind::Python(_)
            | Kind::Language(_) => {}
        }
        let rows = [one, many, open].into_iter().flatten();
        if kind == Kind::Nested {
            self.nested.extend(rows);
        } else {
            self.add.extend(rows);
        }
    }

    fn into_report(self, plan: &Plan) -> Report {
        let us = |v: Option<f64>, what: &str| v.map(|v| (v, format!("{v:.1} µs {what}")));
        let per_s = |v: Option<f64>, what: &str| v.map(|v| (v, format!("{} {what}", thousands(v))));
        let pipelined = format!("{} in flight on one connection", plan.in_flight);
        let mut targets = vec![
            Target::ratio(
                "wasmrpc local p50 / floor p50, 1 in flight",
                Goal::AtMost(1.6),
                us(self.local_p50, "wasmrpc"),
                us(self.floor_p50, "floor"),
            ),
            Target::ratio(
                &format!("wasmrpc calls/s / gRPC calls/s, {pipelined}"),
                Goal::AtLeast(2.0),
                per_s(self.local_pipelined, "wasmrpc"),
                per_s(self.grpc_pipelined, "gRPC"),
            ),
            Target::ratio(
                "forwarded by key p50 / forwarded p50, 1 in flight",
                Goal::AtMost(1.1),
                us(self.keyed_p50, "by key"),
                us(self.forwarded_p50, "forwarded"),
            ),
            Target::ratio(
                "forwarded p50 / local p50, 1 in flight",
                Goal::AtMost(2.0),
                us(self.forwarded_p50, "forwarded"),
                us(self.local_p50, "local"),
            )
            .noting({
                // What one more hop costs with no work in it, for scale: b
                // behind a byte relay in a's place, b behind a relay that
                // only decodes and re-encodes frames, and the floor relayed.
                let behind = |relay: &str, relayed: Option<f64>| match (relayed, self.local_p50) {
                    (Some(relayed), Some(local)) if local > 0.0 => Some(format!(
                        "b behind {relay} instead of a: {:.2} ({relayed:.1} µs / {local:.1} µs local)",
                        relayed / local
                    )),
                    _ => None,
                };
                let behind_relay = behind("a raw TCP relay", self.relayed_p50);
                let behind_frame_relay = behind("a decoding frame relay", self.frame_relayed_p50);
                let floor_hop = match (self.floor_relayed_p50, self.floor_p50) {
                    (Some(relayed), Some(floor)) if floor > 0.0 => Some(format!(
                        "a raw TCP relay hop: {:.2} ({relayed:.1} µs relayed floor / {floor:.1} µs floor)",
                        relayed / floor
                    )),
                    _ => None,
                };
                let notes: Vec<String> = [behind_relay, behind_frame_relay, floor_hop]
                    .into_iter()
                    .flatten()
                    .collect();
                (!notes.is_empty()).then(|| notes.join("; "))
            }),
            Target {
                name: "fresh instantiation + call, median (µs)".into(),
                goal: Goal::AtMost(10.0),
                measured: self.fresh_median.map(|v| {
                    let teardown = self
                        .fresh_whole_median
                        .map(|whole| format!("; {:.1} µs with the teardown after it", whole))
                        .unwrap_or_default();
                    (
                        v,
                        format!(
                            "in-process `Runtime::call` of `math.add`, instance made on the \
                             call's path{teardown}"
                        ),
                    )
                }),
            },
        ];
        // The same ratios with the opt-in instance reuse, when the host has it.
        if self.reuse_p50.is_some() {
            targets.extend([
                Target::ratio(
                    "with instance reuse: wasmrpc local p50 / floor p50, 1 in flight",
                    Goal::AtMost(1.6),
                    us(self.reuse_p50, "wasmrpc"),
                    us(self.floor_p50, "floor"),
                ),
                Target::ratio(
                    &format!("with instance reuse: wasmrpc calls/s / gRPC calls/s, {pipelined}"),
                    Goal::AtLeast(2.0),
                    per_s(self.reuse_pipelined, "wasmrpc"),
                    per_s(self.grpc_pipelined, "gRPC"),
                ),
            ]);
        }
        let latency_note = "Latency from a call's start to its reply, in µs; calls/s is \
            completed calls per second of wall time (for the open loop, the achieved rate). \
            p999 is left out below 1,000 calls.";
        let mut add = self.add;
        add.extend(self.nested);
        let tls = plan.runs(Group::Tls).then(|| self.tls.section(plan));
        let observe = plan
            .runs(Group::Observe)
            .then(|| self.observe.section(plan));
        let python = plan.runs(Group::Python).then(|| self.python.section(plan));
        let languages = plan
            .runs(Group::Languages)
            .then(|| self.languages.section(plan));
        let mut report = Report {
            machine: Machine::describe(),
            parameters: plan.describe(),
            targets,
            sections: vec![
                Section {
                    title: "add(a, b)".into(),
                    note: latency_note.into(),
                    targets: Vec::new(),
                    rows: add,
                },
                Section {
                    title: "Payload echo".into(),
                    note: "`list<u8>` echo (`greeter.echo.echo-bytes`, CBOR byte strings) \
                        against a gRPC `bytes` echo; fewer calls for larger payloads."
                        .into(),
                    targets: Vec::new(),
                    rows: self.payload,
                },
                Section {
                    title: "In process".into(),
                    note: "What a host does per call, without the network, one call at a \
                        time on one thread: CBOR arguments to component values, an instance, \
                        the call, the result back to CBOR. A host makes a fresh instance \
                        ahead of its call and tears it down after the reply; \"the call and \
                        the work it leaves behind\" times each call with that work (run \
                        between calls, as a host does after writing a reply). With the \
                        instance made on the call's path (`--spare-instances 0`), the call's \
                        latency is instantiation + call. The three are measured in the same \
                        interleaved rounds as the closed-loop loads."
                        .into(),
                    targets: Vec::new(),
                    rows: self.in_process,
                },
            ],
            facts: self.memory,
        };
        report.sections.extend(tls);
        report.sections.extend(observe);
        report.sections.extend(python);
        report.sections.extend(languages);
        report
    }
}

fn failed(system: &str, error: &anyhow::Error) -> Row {
    Row {
        system: system.into(),
        load: "–".into(),
        outcome: Outcome::Failed(format!("{error:#}")),
    }
}

/// Measures `call` under `load` after a warm-up at the same concurrency.
async fn measure<F, Fut>(system: &str, label: &str, call: &F, load: Load, warmup: u64) -> Row
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (calls, in_flight) = match load {
        Load::Closed { calls, in_flight } => (calls, in_flight),
        Load::Open { .. } => (warmup, 1),
    };
    let warm = Load::Closed {
        calls: warmup.min(calls),
        in_flight,
    };
    let outcome = match load::run(call, warm).await {
        Ok(_) => match load::run(call, load).await {
            Ok(m) => Outcome::Measured(Summary::from(&m)),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        },
        Err(e) => Outcome::Failed(format!("warm-up: {e:#}")),
    };
    Row {
        system: system.into(),
        load: label.into(),
        outcome,
    }
}

/// The echo sweep: `echo(payload)` builds a call closure echoing `payload`.
async fn payload_sweep<E, F, Fut>(plan: &Plan, system: &str, echo: E) -> Vec<Row>
where
    E: Fn(Bytes) -> F,
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut rows = Vec::new();
    for &(size, name) in PAYLOADS {
        let payload: Bytes = (0..size).map(|i| (i % 251) as u8).collect();
        let call = echo(payload);
        let calls = plan.payload_calls(size);
        let warmup = plan.warmup.min(calls / 10);
        let system = format!("{system}, {name}");
        rows.push(
            measure(
                &system,
                "1 in flight",
                &call,
                plan.one_in_flight(calls),
                warmup,
            )
            .await,
        );
        if size == PAYLOADS[0].0 {
            let label = format!("{} in flight, 1 connection", plan.in_flight);
            let load = plan.pipelined(calls);
            rows.push(measure(&system, &label, &call, load, warmup).await);
        }
    }
    rows
}

/// The p50 of a row, if it was measured.
fn p50(row: &Row) -> Option<f64> {
    match &row.outcome {
        Outcome::Measured(s) => Some(s.p50_us),
        _ => None,
    }
}

fn calls_per_sec(row: &Row) -> Option<f64> {
    match &row.outcome {
        Outcome::Measured(s) => Some(s.calls_per_sec),
        _ => None,
    }
}

/// A comparison server (`floor` or `grpc`) in a child process of this binary.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    async fn start(kind: &str) -> anyhow::Result<ServerProcess> {
        ServerProcess::start_with(kind, &[]).await
    }

    async fn start_with(kind: &str, args: &[&str]) -> anyhow::Result<ServerProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", kind])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(10),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .context("the server did not start")??
        .context("the server exited")?;
        let addr = line
            .strip_prefix("listening on ")
            .context("unexpected server output")?
            .parse()?;
        Ok(ServerProcess { child, addr })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Arguments of add(a, b) for a lane.
fn args(lane: usize) -> (i64, i64) {
    (1_000_000 + lane as i64, 2)
}

/// A call of `function` with the lane's (a, b), checking the sum.
fn wasmrpc_add(client: wasmrpc::Client, function: &'static str) -> CallFn {
    Arc::new(move |lane: usize| {
        let client = client.clone();
        Box::pin(async move {
            let (a, b) = args(lane);
            let value = client
                .call_value(function, vec![Value::from(a), Value::from(b)])
                .await?;
            micro::check_sum(&value, a, b)
        })
    })
}

/// A call of one system under test, for a lane (`0..in_flight`).
type CallFn = Arc<dyn Fn(usize) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Which rows and targets a system's measurements fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Floor,
    /// The floor with one connection per call in flight.
    FloorConnections,
    /// The floor behind a byte-for-byte TCP relay.
    FloorRelayed,
    Grpc,
    Local,
    Reuse,
    Forwarded,
    /// The same forwarded call under a `[keys]` rule (routed by its first
    /// argument).
    Keyed,
    /// The forwarded call's target host behind a byte-for-byte TCP relay,
    /// in place of the forwarding host.
    Relayed,
    /// The same host behind a relay that decodes and re-encodes frames.
    FrameRelayed,
    Nested,
    /// `math.add` in the TLS group.
    Secured(tls::Secured),
    /// New connections in the TLS group.
    Connect(tls::Handshake),
    /// `math.add` in the observability group.
    Observed(observe::Observed),
    /// The Rust clients of the Python group's servers.
    Python(python::Client),
    /// A host of the languages group.
    Language(usize),
}

/// A system under test.
struct System {
    kind: Kind,
    name: String,
    call: CallFn,
    /// Also measured open loop.
    open_loop: bool,
    /// The processes serving its calls, whose CPU time the calls cost.
    servers: Vec<u32>,
}

impl System {
    fn new(kind: Kind, name: &str, call: CallFn, servers: &[Option<u32>]) -> System {
        // A server that has exited has no CPU time to read: leave the
        // system's CPU unmeasured rather than undercounted.
        let servers = if servers.iter().all(Option::is_some) {
            servers.iter().flatten().copied().collect()
        } else {
            Vec::new()
        };
        System {
            kind,
            name: name.into(),
            call,
            open_loop: !matches!(
                kind,
                Kind::FloorConnections
                    | Kind::FloorRelayed
                    | Kind::Relayed
                    | Kind::FrameRelayed
                    | Kind::Secured(_)
                    | Kind::Connect(_)
                    | Kind::Observed(_)
                    | Kind::Python(_)
                    | Kind::Language(_)
            ),
            servers,
        }
    }
}

/// The local host with every example plugin, and a client of it.
struct LocalHost {
    host: Host,
    client: wasmrpc::Client,
}

/// The servers of a run and a client of each, started before anything is
/// measured.
#[derive(Default)]
struct Started {
    floor: Option<Floor>,
    grpc: Option<(ServerProcess, grpc::Client)>,
    local: Option<LocalHost>,
    reuse: Option<(Host, wasmrpc::Client)>,
    forwarded: Option<(Vec<Host>, wasmrpc::Client)>,
    /// The same pair of hosts with a `[keys]` rule for `math.*`.
    keyed: Option<(Vec<Host>, wasmrpc::Client)>,
    /// A relay in front of the forwarded calls' target host, and a client
    /// of it.
    relayed: Option<(ServerProcess, wasmrpc::Client)>,
    /// A decoding frame relay in front of the same host, and a client of it.
    frame_relayed: Option<(ServerProcess, wasmrpc::Client)>,
    /// The TLS group's hosts.
    secured: Option<tls::SecuredHosts>,
    /// The observability group's hosts.
    observed: Option<observe::ObservedHosts>,
}

impl Started {
    /// Starts the servers of the plan's groups; a server that fails gets a
    /// failed row (or, for a host without reuse mode, "n/a" rows).
    async fn start(plan: &Plan, lab: &Lab, results: &mut Results) -> Started {
        let mut started = Started::default();
        if plan.runs(Group::Floor) {
            match start_floor(plan).await {
                Ok(floor) => started.floor = Some(floor),
                Err(e) => results.add.push(failed("raw TCP floor", &e)),
            }
        }
        if plan.runs(Group::Grpc) || plan.runs(Group::Payload) {
            let grpc = async {
                let server = ServerProcess::start("grpc").await?;
                let client = grpc::Client::connect(server.addr).await?;
                anyhow::Ok((server, client))
            };
            match grpc.await {
                Ok(grpc) => started.grpc = Some(grpc),
                Err(e) => results.add.push(failed("gRPC (tonic)", &e)),
            }
        }
        if [Group::Local, Group::Nested, Group::Payload]
            .into_iter()
            .any(|g| plan.runs(g))
        {
            match start_local(lab, results).await {
                Ok(local) => started.local = Some(local),
                Err(e) => results.add.push(failed("wasmrpc local", &e)),
            }
        }
        if plan.runs(Group::Reuse) {
            match start_reuse(plan, lab, results).await {
                Ok(reuse) => started.reuse = reuse,
                Err(e) => results
                    .add
                    .push(failed("wasmrpc local, instance reuse", &e)),
            }
        }
        if plan.runs(Group::Forwarded) {
            let forwarded = async {
                lab.plugin_dir("a", &[], &[])?;
                lab.plugin_dir("b", &["math"], &[])?;
                // `b` first, so that `a` links to it at once.
                let hosts = lab
                    .start_regions("regions.toml", &["b", "a"], Security::Plaintext)
                    .await?;
                hosts[1].require("math.add").await?;
                let client = hosts[1].connect().await?;
                anyhow::Ok((hosts, client))
            };
            match forwarded.await {
                Ok(forwarded) => started.forwarded = Some(forwarded),
                Err(e) => results.add.push(failed("wasmrpc forwarded", &e)),
            }
            let keyed = async {
                lab.plugin_dir("ka", &[], &[])?;
                lab.plugin_dir("kb", &["math"], &[])?;
                let hosts = lab
                    .start_regions_with_tables(
                        "regions-keyed.toml",
                        &["kb", "ka"],
                        "[keys]\n\"math.*\" = \"args[0]\"\n",
                    )
                    .await?;
                hosts[1].require("math.add").await?;
                let client = hosts[1].connect().await?;
                anyhow::Ok((hosts, client))
            };
            match keyed.await {
                Ok(keyed) => started.keyed = Some(keyed),
                Err(e) => results.add.push(failed(KEYED, &e)),
            }
            if let Some((hosts, _)) = &started.forwarded {
                let target = hosts[0].addr().to_string();
                let relayed = |system: &'static str| {
                    let target = target.clone();
                    async move {
                        let relay = ServerProcess::start_with(system, &[&target]).await?;
                        let client = wasmrpc::Client::connect(relay.addr).await?;
                        anyhow::Ok((relay, client))
                    }
                };
                match relayed("floor-relay").await {
                    Ok(relayed) => started.relayed = Some(relayed),
                    Err(e) => results.add.push(failed(RELAYED, &e)),
                }
                match relayed("frame-relay").await {
                    Ok(relayed) => started.frame_relayed = Some(relayed),
                    Err(e) => results.add.push(failed(FRAME_RELAYED, &e)),
                }
            }
        }
        if plan.runs(Group::Tls) {
            match tls::SecuredHosts::start(lab).await {
                Ok(secured) => started.secured = Some(secured),
                Err(e) => results.tls.failed(&e),
            }
        }
        if plan.runs(Group::Observe) {
            match observe::ObservedHosts::start(lab).await {
                Ok(observed) => started.observed = Some(observed),
                Err(e) => results.observe.failed(&e),
            }
        }
        started
    }

    /// The systems to measure, in report order.
    fn systems(&self, plan: &Plan) -> Vec<System> {
        let mut systems = Vec::new();
        if let Some(floor) = &self.floor {
            systems.push(System::new(
                Kind::Floor,
                "raw TCP floor",
                floor_call(floor.client.clone()),
                &[floor.server.pid()],
            ));
            let clients = floor.clients.clone();
            systems.push(System::new(
                Kind::FloorConnections,
                "raw TCP floor",
                Arc::new(move |lane| {
                    let clients = clients.clone();
                    Box::pin(async move { floor_add(&clients[lane % clients.len()], lane).await })
                }),
                &[floor.server.pid()],
            ));
            systems.push(System::new(
                Kind::FloorRelayed,
                "raw TCP floor relayed one hop",
                floor_call(floor.relayed.clone()),
                &[floor.relay.pid(), floor.server.pid()],
            ));
        }
        if let (Some((server, client)), true) = (&self.grpc, plan.runs(Group::Grpc)) {
            let client = client.clone();
            systems.push(System::new(
                Kind::Grpc,
                "gRPC (tonic)",
                Arc::new(move |lane| {
                    let client = client.clone();
                    Box::pin(async move {
                        let (a, b) = args(lane);
                        let sum = client.add(a, b).await?;
                        ensure!(sum == a.wrapping_add(b), "gRPC: wrong sum {sum}");
                        Ok(())
                    })
                }),
                &[server.pid()],
            ));
        }
        if let (Some(local), true) = (&self.local, plan.runs(Group::Local)) {
            systems.push(System::new(
                Kind::Local,
                "wasmrpc local `math.add`",
                wasmrpc_add(local.client.clone(), "math.add"),
                &[local.host.pid()],
            ));
        }
        if let Some((host, client)) = &self.reuse {
            systems.push(System::new(
                Kind::Reuse,
                "wasmrpc local `math.add`, instance reuse",
                wasmrpc_add(client.clone(), "math.add"),
                &[host.pid()],
            ));
        }
        if let Some((hosts, client)) = &self.forwarded {
            let pids: Vec<_> = hosts.iter().map(Host::pid).collect();
            systems.push(System::new(
                Kind::Forwarded,
                "wasmrpc forwarded a → b `math.add`",
                wasmrpc_add(client.clone(), "math.add"),
                &pids,
            ));
        }
        if let Some((hosts, client)) = &self.keyed {
            let pids: Vec<_> = hosts.iter().map(Host::pid).collect();
            systems.push(System::new(
                Kind::Keyed,
                KEYED,
                wasmrpc_add(client.clone(), "math.add"),
                &pids,
            ));
        }
        if let Some((hosts, _)) = &self.forwarded {
            let relays = [
                (Kind::Relayed, RELAYED, &self.relayed),
                (Kind::FrameRelayed, FRAME_RELAYED, &self.frame_relayed),
            ];
            for (kind, name, relayed) in relays {
                if let Some((relay, client)) = relayed {
                    systems.push(System::new(
                        kind,
                        name,
                        wasmrpc_add(client.clone(), "math.add"),
                        &[relay.pid(), hosts[0].pid()],
                    ));
                }
            }
        }
        if let (Some(local), true) = (&self.local, plan.runs(Group::Nested)) {
            systems.push(System::new(
                Kind::Nested,
                "wasmrpc nested `relay.add` → `math.add`",
                wasmrpc_add(local.client.clone(), "relay.add"),
                &[local.host.pid()],
            ));
        }
        if let Some(secured) = &self.secured {
            systems.extend(secured.systems());
        }
        if let Some(observed) = &self.observed {
            systems.extend(observed.systems());
        }
        systems
    }
}

/// The floor server, a relay in front of it, and their clients.
struct Floor {
    server: ServerProcess,
    relay: ServerProcess,
    client: floor::Client,
    /// One per call in flight.
    clients: Arc<Vec<floor::Client>>,
    /// Through the relay.
    relayed: floor::Client,
}

async fn start_floor(plan: &Plan) -> anyhow::Result<Floor> {
    let server = ServerProcess::start("floor").await?;
    let relay = ServerProcess::start_with("floor-relay", &[&server.addr.to_string()]).await?;
    let client = floor::Client::connect(server.addr).await?;
    let mut clients = Vec::new();
    for _ in 0..plan.in_flight {
        clients.push(floor::Client::connect(server.addr).await?);
    }
    let relayed = floor::Client::connect(relay.addr).await?;
    Ok(Floor {
        server,
        relay,
        client,
        clients: Arc::new(clients),
        relayed,
    })
}

/// The floor's add(a, b) on `client`, for any lane.
fn floor_call(client: floor::Client) -> CallFn {
    Arc::new(move |lane| {
        let client = client.clone();
        Box::pin(async move { floor_add(&client, lane).await })
    })
}

/// The floor's add(a, b) for a lane, checking the sum.
async fn floor_add(client: &floor::Client, lane: usize) -> anyhow::Result<()> {
    let (a, b) = args(lane);
    let sum = client.add(a, b).await?;
    ensure!(sum == a.wrapping_add(b), "floor: wrong sum {sum}");
    Ok(())
}

/// The local host with every example plugin; notes its idle memory.
async fn start_local(lab: &Lab, results: &mut Results) -> anyhow::Result<LocalHost> {
    let plugins = lab.plugin_dir("local", ALL_PLUGINS, &[("relay.toml", RELAY_SIDECAR)])?;
    let host = lab.start_alone("bench", &plugins).await?;
    for function in ["math.add", "relay.add", "greeter.echo.echo-bytes"] {
        host.require(function).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    results.memory.push((
        format!(
            "wasmrpc host RSS, idle, {} example plugins loaded",
            ALL_PLUGINS.len()
        ),
        mib(host.rss()?),
    ));
    let client = host.connect().await?;
    Ok(LocalHost { host, client })
}

/// A host serving `math` with the `reuse_instances` sidecar; `None` (and
/// "n/a" rows) when the host refuses the setting.
async fn start_reuse(
    plan: &Plan,
    lab: &Lab,
    results: &mut Results,
) -> anyhow::Result<Option<(Host, wasmrpc::Client)>> {
    const SYSTEM: &str = "wasmrpc local `math.add`, instance reuse";
    let plugins = lab.plugin_dir("reuse", &["math"], &[("math.toml", REUSE_SIDECAR)])?;
    let host = lab.start_alone("bench", &plugins).await?;
    match host.wait_for("math.add").await? {
        Availability::Served => {
            let client = host.connect().await?;
            Ok(Some((host, client)))
        }
        Availability::Refused(line) if line.contains("unknown field `reuse_instances`") => {
            results.add.extend(plan.standard_labels().map(|label| Row {
                system: SYSTEM.into(),
                load: label,
                outcome: Outcome::NotApplicable("host lacks reuse mode".into()),
            }));
            Ok(None)
        }
        Availability::Refused(line) => bail!("the host refused math.wasm: {line}"),
    }
}

/// Measures every system with `in_flight` calls in flight (one connection
/// each, but for the floor's many-connections row): after a warm-up of
/// `warmup` calls, in [`Plan::rounds`] rounds of `calls / rounds` calls, the
/// systems taking turns. The systems' rows, in order; `None` for a system
/// not measured at this concurrency.
async fn interleave(
    plan: &Plan,
    systems: &[System],
    in_flight: usize,
    calls: u64,
    warmup: u64,
) -> Vec<Option<Row>> {
    let measured = |system: &System| in_flight > 1 || system.kind != Kind::FloorConnections;
    let per_round = (calls / plan.rounds.max(1)).max(1);
    let mut merged: Vec<Result<Option<Measurement>, String>> =
        systems.iter().map(|_| Ok(None)).collect();
    let nothing = Usage {
        servers: Some(Duration::ZERO),
        client: Some(Duration::ZERO),
    };
    let mut used = vec![nothing; systems.len()];
    let closed = |calls| Load::Closed { calls, in_flight };
    for (system, merged) in systems.iter().zip(&mut merged) {
        if measured(system) {
            let call = system.call.clone();
            let call = move |lane| call(lane);
            if let Err(e) = load::run(&call, closed(warmup)).await {
                *merged = Err(format!("warm-up: {e:#}"));
            }
        }
    }
    for _ in 0..plan.rounds.max(1) {
        for ((system, merged), used) in systems.iter().zip(&mut merged).zip(&mut used) {
            let Ok(so_far) = merged else { continue };
            if !measured(system) {
                continue;
            }
            let call = system.call.clone();
            let call = move |lane| call(lane);
            let before = Usage::now(&system.servers);
            let outcome = load::run(&call, closed(per_round)).await;
            used.add(Usage::now(&system.servers).since(before));
            match outcome {
                Ok(m) => match so_far {
                    Some(so_far) => so_far.merge(m),
                    None => *so_far = Some(m),
                },
                Err(e) => *merged = Err(format!("{e:#}")),
            }
        }
    }
    systems
        .iter()
        .zip(merged)
        .zip(used)
        .map(|((system, merged), used)| {
            let load = match (in_flight, system.kind) {
                (_, Kind::Connect(_)) => "one at a time".to_owned(),
                (1, _) => "1 in flight".to_owned(),
                (n, Kind::FloorConnections) => format!("{n} in flight, {n} connections"),
                (n, _) => format!("{n} in flight, 1 connection"),
            };
            let outcome = match merged {
                Ok(Some(m)) => {
                    let per_call = |d: Option<Duration>| {
                        d.map(|d| d.as_secs_f64() * 1e6 / m.calls.max(1) as f64)
                    };
                    let mut summary = Summary::from(&m);
                    summary.cpu = Some(CpuPerCall {
                        servers_us: per_call(used.servers),
                        client_us: per_call(used.client),
                    });
                    Outcome::Measured(summary)
                }
                Ok(None) => return None,
                Err(e) => Outcome::Failed(e),
            };
            Some(Row {
                system: system.name.clone(),
                load,
                outcome,
            })
        })
        .collect()
}

/// The `list<u8>` echo sweep: gRPC `Echo` and wasmrpc `echo-bytes`.
async fn payload_rows(plan: &Plan, started: &Started, results: &mut Results) {
    if let Some((_, client)) = &started.grpc {
        let echo = |payload: Bytes| {
            let client = client.clone();
            move |_lane: usize| {
                let (client, payload) = (client.clone(), payload.clone());
                async move {
                    let reply = client.echo(payload.clone()).await?;
                    ensure!(reply == payload, "gRPC: echo returned other bytes");
                    Ok(())
                }
            }
        };
        results
            .payload
            .extend(payload_sweep(plan, "gRPC bytes echo", echo).await);
    }
    if let Some(local) = &started.local {
        let echo = |payload: Bytes| {
            let client = local.client.clone();
            move |_lane: usize| {
                let (client, payload) = (client.clone(), payload.clone());
                async move {
                    let args = vec![Value::Bytes(payload.to_vec())];
                    let reply = client.call_value("greeter.echo.echo-bytes", args).await?;
                    ensure!(
                        matches!(&reply, Value::Bytes(b) if b[..] == payload[..]),
                        "echo-bytes returned other bytes"
                    );
                    Ok(())
                }
            }
        };
        results
            .payload
            .extend(payload_sweep(plan, "wasmrpc `echo-bytes`", echo).await);
    }
}

/// `Runtime::call` of `math.add` in this process, one call at a time on one
/// thread ([`micro::interleaved`], in [`Plan::rounds`] rounds): with a fresh
/// instance made on the call's path (its latency is instantiation + call,
/// the target's figure), made ahead of the call (the default), and with
/// instance reuse. Each as its caller waits, and with the work it leaves
/// behind (the whole cost).
async fn in_process_rows(plan: &Plan, paths: &Paths, results: &mut Results) -> anyhow::Result<()> {
    let math = paths.guest("math")?;
    let modes = [
        (
            micro::Instances::OnThePath,
            "fresh instance made on the call's path",
        ),
        (
            micro::Instances::Spare,
            "fresh instance made ahead (default)",
        ),
        (micro::Instances::Reuse, "warm instance (reuse)"),
    ];
    let (calls, warmup, rounds) = (plan.calls, plan.warmup, plan.rounds);
    let instances: Vec<_> = modes.iter().map(|(instances, _)| *instances).collect();
    let measured = tokio::task::spawn_blocking(move || {
        micro::interleaved(&math, &instances, calls, warmup, rounds)
    })
    .await
    .context("the in-process measurement panicked")??;
    for ((instances, name), measured) in modes.into_iter().zip(measured) {
        let call = Row {
            system: format!("{name}: the call, as its caller waits"),
            load: "1 at a time, 1 thread".into(),
            outcome: Outcome::Measured(Summary::from(&measured.call)),
        };
        let whole = Row {
            system: format!("{name}: the call and the work it leaves behind"),
            load: "1 at a time, 1 thread".into(),
            outcome: Outcome::Measured(Summary::from(&measured.whole)),
        };
        if instances == micro::Instances::OnThePath {
            results.fresh_median = p50(&call);
            results.fresh_whole_median = p50(&whole);
        }
        results.in_process.extend([call, whole]);
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
