//! The `all` run: every system under the same loads, one after the other,
//! each server alone on the machine while it is measured.

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

use crate::hosts::{Availability, Host, Lab};
use crate::load::{self, Load};
use crate::micro;
use crate::prepare::Paths;
use crate::report::{Goal, Machine, Outcome, Report, Row, Section, Summary, Target, thousands};
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

/// The sidecar that turns on instance reuse for `math` (a host opt-in).
const REUSE_SIDECAR: &str = "reuse_instances = true\n";

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
}

impl Plan {
    fn runs(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.contains(&group)
    }

    /// The three loads every add(a, b) system runs, with their labels.
    fn standard_loads(&self) -> [(String, Load); 3] {
        [
            ("1 in flight".into(), self.one_in_flight(self.calls)),
            (
                format!("{} in flight, 1 connection", self.in_flight),
                self.pipelined(self.pipelined_calls),
            ),
            (
                format!(
                    "open loop, {}/s for {} s",
                    thousands(f64::from(self.rate)),
                    self.open_for.as_secs_f64()
                ),
                Load::Open {
                    rate: self.rate,
                    duration: self.open_for,
                },
            ),
        ]
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
             follows a warm-up of up to {} calls at the same concurrency.",
            thousands(self.calls as f64),
            thousands(self.pipelined_calls as f64),
            self.in_flight,
            thousands(f64::from(self.rate)),
            self.open_for.as_secs_f64(),
            thousands(self.warmup as f64),
        )
    }
}

/// Runs every benchmark and gathers the report.
pub async fn run(plan: &Plan, paths: &Paths) -> anyhow::Result<Report> {
    let lab = Lab::new(&paths.wasmrpc, &paths.guests)?;
    let mut results = Results::default();

    if plan.runs(Group::Floor) {
        progress("raw TCP floor");
        if let Err(e) = floor_rows(plan, &mut results).await {
            results.add.push(failed("raw TCP floor", &e));
        }
    }
    if plan.runs(Group::Grpc) {
        progress("gRPC");
        if let Err(e) = grpc_rows(plan, &mut results).await {
            results.add.push(failed("gRPC (tonic)", &e));
        }
    }
    if [Group::Local, Group::Nested, Group::Payload]
        .into_iter()
        .any(|g| plan.runs(g))
    {
        progress("wasmrpc, local host");
        if let Err(e) = local_rows(plan, &lab, &mut results).await {
            results.add.push(failed("wasmrpc local", &e));
        }
    }
    if plan.runs(Group::Reuse) {
        progress("wasmrpc, instance reuse");
        if let Err(e) = reuse_rows(plan, &lab, &mut results).await {
            results
                .add
                .push(failed("wasmrpc local, instance reuse", &e));
        }
    }
    if plan.runs(Group::Forwarded) {
        progress("wasmrpc, forwarded one hop");
        if let Err(e) = forwarded_rows(plan, &lab, &mut results).await {
            results.add.push(failed("wasmrpc forwarded", &e));
        }
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
    floor_p50: Option<f64>,
    grpc_pipelined: Option<f64>,
    local_p50: Option<f64>,
    local_pipelined: Option<f64>,
    reuse_p50: Option<f64>,
    reuse_pipelined: Option<f64>,
    forwarded_p50: Option<f64>,
    fresh_median: Option<f64>,
}

impl Results {
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
                "forwarded p50 / local p50, 1 in flight",
                Goal::AtMost(2.0),
                us(self.forwarded_p50, "forwarded"),
                us(self.local_p50, "local"),
            ),
            Target {
                name: "fresh instantiation + call, median (µs)".into(),
                goal: Goal::AtMost(10.0),
                measured: self.fresh_median.map(|v| {
                    (
                        v,
                        "in-process `Runtime::call` of `math.add`: instantiation, call and teardown"
                            .into(),
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
        Report {
            machine: Machine::describe(),
            parameters: plan.describe(),
            targets,
            sections: vec![
                Section {
                    title: "add(a, b)".into(),
                    note: latency_note.into(),
                    rows: add,
                },
                Section {
                    title: "Payload echo".into(),
                    note: "`list<u8>` echo (`greeter.echo.echo-bytes`, CBOR byte strings) \
                        against a gRPC `bytes` echo; fewer calls for larger payloads."
                        .into(),
                    rows: self.payload,
                },
                Section {
                    title: "In process".into(),
                    note: "What a host does per call, without the network, one call at a \
                        time on one thread: CBOR arguments to component values, an instance \
                        (fresh, or a warm one with reuse), the call, the result back to CBOR. \
                        A fresh instance is made ahead of its call and torn down after it; \
                        the \"whole cost\" rows time each call with that work (run between \
                        calls, as a host does after writing a reply), the \"as its caller \
                        waits\" rows the call alone."
                        .into(),
                    rows: self.in_process,
                },
            ],
            facts: self.memory,
        }
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

/// Measures `call` under the plan's three standard loads.
async fn measure_standard<F, Fut>(plan: &Plan, system: &str, call: &F) -> Vec<Row>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut rows = Vec::new();
    for (label, load) in plan.standard_loads() {
        rows.push(measure(system, &label, call, load, plan.warmup).await);
    }
    rows
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
    _child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    async fn start(kind: &str) -> anyhow::Result<ServerProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", kind])
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
        Ok(ServerProcess {
            _child: child,
            addr,
        })
    }
}

/// The floor on one connection under the standard loads, and on
/// `in_flight` connections with one call in flight each.
async fn floor_rows(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    const SYSTEM: &str = "raw TCP floor";
    let server = ServerProcess::start("floor").await?;
    let client = floor::Client::connect(server.addr).await?;
    let add = move |lane: usize| {
        let client = client.clone();
        async move {
            let (a, b) = args(lane);
            let sum = client.add(a, b).await?;
            ensure!(sum == a.wrapping_add(b), "floor: wrong sum {sum}");
            Ok(())
        }
    };
    let rows = measure_standard(plan, SYSTEM, &add).await;
    results.floor_p50 = p50(&rows[0]);
    results.add.extend(rows);

    let mut clients = Vec::new();
    for _ in 0..plan.in_flight {
        clients.push(floor::Client::connect(server.addr).await?);
    }
    let clients = Arc::new(clients);
    let add = move |lane: usize| {
        let clients = clients.clone();
        async move {
            let (a, b) = args(lane);
            let sum = clients[lane].add(a, b).await?;
            ensure!(sum == a.wrapping_add(b), "floor: wrong sum {sum}");
            Ok(())
        }
    };
    let label = format!("{0} in flight, {0} connections", plan.in_flight);
    let load = plan.pipelined(plan.pipelined_calls);
    results
        .add
        .push(measure(SYSTEM, &label, &add, load, plan.warmup).await);
    Ok(())
}

/// gRPC add(a, b) under the standard loads, and its payload sweep.
async fn grpc_rows(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    let server = ServerProcess::start("grpc").await?;
    let client = grpc::Client::connect(server.addr).await?;
    let add = {
        let client = client.clone();
        move |lane: usize| {
            let client = client.clone();
            async move {
                let (a, b) = args(lane);
                let sum = client.add(a, b).await?;
                ensure!(sum == a.wrapping_add(b), "gRPC: wrong sum {sum}");
                Ok(())
            }
        }
    };
    let rows = measure_standard(plan, "gRPC (tonic)", &add).await;
    results.grpc_pipelined = calls_per_sec(&rows[1]);
    results.add.extend(rows);

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
    Ok(())
}

/// Arguments of add(a, b) for a lane.
fn args(lane: usize) -> (i64, i64) {
    (1_000_000 + lane as i64, 2)
}

/// A call closure for `function` with the lane's (a, b), checking the sum.
fn wasmrpc_add(
    client: wasmrpc::Client,
    function: &'static str,
) -> impl Fn(usize) -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Clone + Send + Sync
{
    move |lane: usize| {
        let client = client.clone();
        Box::pin(async move {
            let (a, b) = args(lane);
            let value = client
                .call(function, vec![Value::from(a), Value::from(b)])
                .await?;
            micro::check_sum(&value, a, b)
        })
    }
}

/// The local host with every example plugin: `math.add`, the nested
/// `relay.add`, the payload sweep, and the host's memory.
async fn local_rows(plan: &Plan, lab: &Lab, results: &mut Results) -> anyhow::Result<()> {
    const SYSTEM: &str = "wasmrpc local `math.add`";
    let plugins = lab.plugin_dir("local", ALL_PLUGINS, &[])?;
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
    if plan.runs(Group::Local) {
        let add = wasmrpc_add(client.clone(), "math.add");
        let [c1, pipelined, open] = plan.standard_loads();
        let first = measure(SYSTEM, &c1.0, &add, c1.1, plan.warmup).await;
        let sampler = host.sample_rss()?;
        let second = measure(SYSTEM, &pipelined.0, &add, pipelined.1, plan.warmup).await;
        results.memory.push((
            format!(
                "wasmrpc host RSS, peak during `math.add` at {} in flight",
                plan.in_flight
            ),
            mib(sampler.peak().await),
        ));
        let third = measure(SYSTEM, &open.0, &add, open.1, plan.warmup).await;
        results.local_p50 = p50(&first);
        results.local_pipelined = calls_per_sec(&second);
        results.add.extend([first, second, third]);
    }

    if plan.runs(Group::Nested) {
        let relay = wasmrpc_add(client.clone(), "relay.add");
        results.nested.extend(
            measure_standard(plan, "wasmrpc nested `relay.add` → `math.add`", &relay).await,
        );
    }
    if !plan.runs(Group::Payload) {
        return Ok(());
    }

    let echo = |payload: Bytes| {
        let client = client.clone();
        move |_lane: usize| {
            let (client, payload) = (client.clone(), payload.clone());
            async move {
                let args = vec![Value::Bytes(payload.to_vec())];
                let reply = client.call("greeter.echo.echo-bytes", args).await?;
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
    Ok(())
}

/// `math.add` with the `reuse_instances` sidecar, or n/a rows when the host
/// refuses the setting.
async fn reuse_rows(plan: &Plan, lab: &Lab, results: &mut Results) -> anyhow::Result<()> {
    const SYSTEM: &str = "wasmrpc local `math.add`, instance reuse";
    let plugins = lab.plugin_dir("reuse", &["math"], &[("math.toml", REUSE_SIDECAR)])?;
    let host = lab.start_alone("bench", &plugins).await?;
    match host.wait_for("math.add").await? {
        Availability::Served => {
            let add = wasmrpc_add(host.connect().await?, "math.add");
            let rows = measure_standard(plan, SYSTEM, &add).await;
            results.reuse_p50 = p50(&rows[0]);
            results.reuse_pipelined = calls_per_sec(&rows[1]);
            results.add.extend(rows);
        }
        Availability::Refused(line) if line.contains("unknown field `reuse_instances`") => {
            results
                .add
                .extend(plan.standard_loads().map(|(label, _)| Row {
                    system: SYSTEM.into(),
                    load: label,
                    outcome: Outcome::NotApplicable("host lacks reuse mode".into()),
                }));
        }
        Availability::Refused(line) => bail!("the host refused math.wasm: {line}"),
    }
    Ok(())
}

/// Client → host of region `a` (no plugins) → host of region `b` (math).
async fn forwarded_rows(plan: &Plan, lab: &Lab, results: &mut Results) -> anyhow::Result<()> {
    lab.plugin_dir("a", &[], &[])?;
    lab.plugin_dir("b", &["math"], &[])?;
    // `b` first, so that `a` links to it at once.
    let hosts = lab.start_regions(&["b", "a"]).await?;
    let entry: &Host = &hosts[1];
    entry.require("math.add").await?;
    let add = wasmrpc_add(entry.connect().await?, "math.add");
    let rows = measure_standard(plan, "wasmrpc forwarded a → b `math.add`", &add).await;
    results.forwarded_p50 = p50(&rows[0]);
    results.add.extend(rows);
    Ok(())
}

/// `Runtime::call` of `math.add` in this process, one call at a time on one
/// thread ([`micro::sequential`]), in a fresh instance per call and then
/// with instance reuse: each call with the work it leaves behind (the whole
/// cost of a call), and the call alone (what its caller waits for).
async fn in_process_rows(plan: &Plan, paths: &Paths, results: &mut Results) -> anyhow::Result<()> {
    let math = paths.guest("math")?;
    for (reuse, instance) in [(false, "fresh instance"), (true, "warm instance (reuse)")] {
        let (calls, warmup, math) = (plan.calls, plan.warmup, math.clone());
        let measured =
            tokio::task::spawn_blocking(move || micro::sequential(&math, reuse, calls, warmup))
                .await
                .context("the in-process measurement panicked")??;
        let whole = Row {
            system: format!(
                "{instance} + call + teardown (`Runtime::call`, `math.add`), the whole cost"
            ),
            load: "1 at a time, 1 thread".into(),
            outcome: Outcome::Measured(Summary::from(&measured.whole)),
        };
        let call = Row {
            system: format!("{instance} + call (`Runtime::call`, `math.add`), as its caller waits"),
            load: "1 at a time, 1 thread".into(),
            outcome: Outcome::Measured(Summary::from(&measured.call)),
        };
        if !reuse {
            results.fresh_median = p50(&whole);
        }
        results.in_process.extend([whole, call]);
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
