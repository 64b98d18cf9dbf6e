//! The Python group: the wasmrpc Python client (`clients/python`) against
//! grpcio (`grpc.aio`), the same work over one connection each, in one run.
//!
//! The group starts a host serving `math` alone (plaintext, on loopback) and
//! the bench's tonic server, prepares a virtual environment under
//! `bench/target/python/` (created once and kept; every run pip-installs the
//! pinned `bench/python/requirements.txt` and the client from
//! `clients/python`, so that the client measured is the one in the working
//! tree), generates the Python stubs of `bench/proto/bench.proto` there with
//! grpcio-tools, and runs `bench/python/load.py`: both Python clients at 1
//! and at `--in-flight` calls in flight, for a fixed time in interleaved
//! rounds, every answer checked. The script prints its figures as JSON. The
//! Rust client and tonic's, against the same two servers, follow for scale.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use tokio::process::Command;

use super::{CallFn, Kind, Plan, ServerProcess, System, args, interleave, wasmrpc_add};
use crate::grpc;
use crate::hosts::{Host, Lab};
use crate::prepare::Paths;
use crate::report::{CpuPerCall, Goal, Outcome, Row, Section, Summary, Target, thousands};

/// How long `load.py` may take beyond the time it measures: the
/// interpreter's start, imports, connecting, sorting latencies.
const SCRIPT_SLACK: Duration = Duration::from_secs(120);

/// A system of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Client {
    /// The wasmrpc Python client calling `math.add`.
    WasmrpcPython,
    /// grpcio's asyncio API calling `Add` on one channel.
    Grpcio,
    /// The Rust `wasmrpc::Client` calling the same host, for scale.
    WasmrpcRust,
    /// tonic's client calling the same gRPC server, for scale.
    Tonic,
}

impl Client {
    /// The systems `load.py` measures, in report order.
    const SCRIPTED: [Client; 2] = [Client::WasmrpcPython, Client::Grpcio];

    fn name(self) -> &'static str {
        match self {
            Client::WasmrpcPython => "wasmrpc Python client, `math.add`",
            Client::Grpcio => "grpcio (`grpc.aio`), `Add`",
            Client::WasmrpcRust => "wasmrpc Rust client, `math.add`, same host (for scale)",
            Client::Tonic => "tonic client, `Add`, same server (for scale)",
        }
    }

    /// The name `load.py` reports the system under.
    fn script_name(self) -> &'static str {
        match self {
            Client::WasmrpcPython => "wasmrpc-python",
            Client::Grpcio => "grpcio",
            Client::WasmrpcRust | Client::Tonic => "",
        }
    }
}

/// The group's rows and the figures its comparisons need.
#[derive(Default)]
pub(super) struct PythonResults {
    rows: Vec<Row>,
    one: BTreeMap<Client, Summary>,
    many: BTreeMap<Client, Summary>,
    /// The interpreter, event loop and packages `load.py` ran with.
    versions: Option<String>,
}

/// Runs the group: its servers, the virtual environment, `load.py`, then
/// the Rust clients for scale. A failure before any figure gives the
/// group one failed row.
pub(super) async fn run(plan: &Plan, lab: &Lab, paths: &Paths) -> PythonResults {
    let mut results = PythonResults::default();
    if let Err(e) = results.measure(plan, lab, paths).await {
        results.rows.push(super::failed("Python group", &e));
    }
    results
}

impl PythonResults {
    async fn measure(&mut self, plan: &Plan, lab: &Lab, paths: &Paths) -> anyhow::Result<()> {
        let venv = Venv::prepare(paths).await?;
        let plugins = lab.plugin_dir("python", &["math"], &[])?;
        let host = lab.start_alone("python", &plugins).await?;
        host.require("math.add").await?;
        let server = ServerProcess::start("grpc").await?;

        super::progress("the Python clients (load.py)");
        let output = venv.load(plan, &host, &server).await?;
        self.versions = Some(output.versions());
        for client in Client::SCRIPTED {
            let measured = output
                .systems
                .iter()
                .find(|s| s.name == client.script_name())
                .with_context(|| format!("load.py reported no `{}`", client.script_name()))?;
            self.record_script(client, measured);
        }

        super::progress("the Rust clients of the Python group's servers");
        let systems = reference_systems(&host, &server).await?;
        let calls = (plan.calls / 2, plan.pipelined_calls / 4);
        let one = interleave(plan, &systems, 1, calls.0, plan.warmup.min(calls.0)).await;
        let many = interleave(
            plan,
            &systems,
            plan.in_flight,
            calls.1,
            plan.warmup.min(calls.1),
        )
        .await;
        for ((system, one), many) in systems.iter().zip(one).zip(many) {
            if let Kind::Python(client) = system.kind {
                self.record(client, one, many);
            }
        }
        Ok(())
    }

    /// Files what `load.py` measured of `client`.
    fn record_script(&mut self, client: Client, measured: &ScriptSystem) {
        if let Some(error) = &measured.error {
            self.rows.push(Row {
                system: client.name().into(),
                load: "–".into(),
                outcome: Outcome::Failed(error.clone()),
            });
            return;
        }
        let row = |load: &ScriptLoad| {
            let label = match load.in_flight {
                1 => "1 in flight".to_owned(),
                n => format!("{n} in flight, 1 connection"),
            };
            Row {
                system: client.name().into(),
                load: label,
                outcome: Outcome::Measured(load.summary()),
            }
        };
        let one = measured.loads.iter().find(|l| l.in_flight == 1).map(row);
        let many = measured.loads.iter().find(|l| l.in_flight > 1).map(row);
        self.record(client, one, many);
    }

    /// Files a system's rows at 1 and many in flight.
    fn record(&mut self, client: Client, one: Option<Row>, many: Option<Row>) {
        for (row, figures) in [(&one, &mut self.one), (&many, &mut self.many)] {
            if let Some(Row {
                outcome: Outcome::Measured(summary),
                ..
            }) = row
            {
                figures.insert(client, *summary);
            }
        }
        self.rows.extend([one, many].into_iter().flatten());
    }

    /// The report's section: the comparisons, then the rows.
    pub(super) fn section(self, plan: &Plan) -> Section {
        let us = |v: Option<f64>, what: &str| v.map(|v| (v, format!("{v:.1} µs {what}")));
        let per_s = |v: Option<f64>, what: &str| v.map(|v| (v, format!("{} {what}", thousands(v))));
        let one_rate = |c: Client| self.one.get(&c).map(|s| s.calls_per_sec);
        let many_rate = |c: Client| self.many.get(&c).map(|s| s.calls_per_sec);
        let p50 = |c: Client| self.one.get(&c).map(|s| s.p50_us);
        let p99 = |c: Client| self.one.get(&c).map(|s| s.p99_us);
        let caller_cpu = |c: Client| self.many.get(&c)?.cpu?.client_us;
        let pipelined = format!("{} in flight on one connection", plan.in_flight);
        let reported = |name: &str, n, d| Target::ratio(name, Goal::Reported, n, d);
        let targets = vec![
            reported(
                "calls/s, 1 in flight: wasmrpc Python / grpcio",
                per_s(one_rate(Client::WasmrpcPython), "wasmrpc"),
                per_s(one_rate(Client::Grpcio), "grpcio"),
            ),
            reported(
                &format!("calls/s, {pipelined}: wasmrpc Python / grpcio"),
                per_s(many_rate(Client::WasmrpcPython), "wasmrpc"),
                per_s(many_rate(Client::Grpcio), "grpcio"),
            ),
            reported(
                "p50, 1 in flight: wasmrpc Python / grpcio",
                us(p50(Client::WasmrpcPython), "wasmrpc"),
                us(p50(Client::Grpcio), "grpcio"),
            ),
            reported(
                "p99, 1 in flight: wasmrpc Python / grpcio",
                us(p99(Client::WasmrpcPython), "wasmrpc"),
                us(p99(Client::Grpcio), "grpcio"),
            ),
            reported(
                &format!("caller CPU per call, {pipelined}: wasmrpc Python / grpcio"),
                us(caller_cpu(Client::WasmrpcPython), "wasmrpc"),
                us(caller_cpu(Client::Grpcio), "grpcio"),
            ),
            reported(
                &format!("calls/s, {pipelined}: wasmrpc Python / wasmrpc Rust client"),
                per_s(many_rate(Client::WasmrpcPython), "Python"),
                per_s(many_rate(Client::WasmrpcRust), "Rust"),
            ),
            reported(
                &format!("calls/s, {pipelined}: grpcio / tonic client"),
                per_s(many_rate(Client::Grpcio), "grpcio"),
                per_s(many_rate(Client::Tonic), "tonic"),
            ),
            reported(
                "p50, 1 in flight: wasmrpc Python / wasmrpc Rust client",
                us(p50(Client::WasmrpcPython), "Python"),
                us(p50(Client::WasmrpcRust), "Rust"),
            ),
        ];
        let versions = self.versions.map(|v| format!(" {v}.")).unwrap_or_default();
        let measured = plan.python_for.as_secs_f64();
        Section {
            title: "Python client".into(),
            note: format!(
                "The wasmrpc Python client (`clients/python`, asyncio) calling `math.add` on a \
                 plaintext host serving `math` alone, against grpcio's asyncio API \
                 (`grpc.aio`, one channel) calling the bench's tonic server's `Add`, both \
                 driven by `bench/python/load.py` in one Python process: at {n} in flight, \
                 {n} asyncio tasks share the one client or channel. Each load follows a \
                 warm-up of {warm} s per client; then each client is measured for {measured} s \
                 in {rounds} rounds, the two taking turns. Every answer is checked. The \
                 caller's CPU is the Python process's (event loop, client library, and \
                 grpcio's C core threads).{versions} The Rust clients' rows, against the same \
                 two servers and measured after the Python ones by the bench's own load \
                 generator ({one} calls at 1 in flight, {many} at {n}), are there for scale.",
                n = plan.in_flight,
                warm = plan.python_warmup().as_secs_f64(),
                rounds = plan.rounds,
                one = thousands((plan.calls / 2) as f64),
                many = thousands((plan.pipelined_calls / 4) as f64),
            ),
            targets,
            rows: self.rows,
        }
    }
}

/// The Rust `wasmrpc::Client` of `host` and tonic's client of `server`.
async fn reference_systems(host: &Host, server: &ServerProcess) -> anyhow::Result<Vec<System>> {
    let client = host.connect().await?;
    let tonic = grpc::Client::connect(server.addr).await?;
    let tonic_add: CallFn = Arc::new(move |lane: usize| {
        let tonic = tonic.clone();
        Box::pin(async move {
            let (a, b) = args(lane);
            let sum = tonic.add(a, b).await?;
            ensure!(sum == a.wrapping_add(b), "gRPC: wrong sum {sum}");
            Ok(())
        })
    });
    Ok(vec![
        System::new(
            Kind::Python(Client::WasmrpcRust),
            Client::WasmrpcRust.name(),
            wasmrpc_add(client, "math.add"),
            &[host.pid()],
        ),
        System::new(
            Kind::Python(Client::Tonic),
            Client::Tonic.name(),
            tonic_add,
            &[server.pid()],
        ),
    ])
}

/// The group's virtual environment and generated stubs.
struct Venv {
    python: PathBuf,
    stubs: PathBuf,
    script: PathBuf,
}

impl Venv {
    /// Creates the virtual environment unless it exists, installs the
    /// pinned requirements and the client from the working tree, and
    /// generates the gRPC stubs afresh.
    async fn prepare(paths: &Paths) -> anyhow::Result<Venv> {
        let bench = paths.root.join("bench");
        let dir = bench.join("target").join("python");
        let venv = dir.join("venv");
        let python = venv.join("bin").join("python");
        if !python.exists() {
            eprintln!("bench: creating a Python virtual environment");
            run_to_end(Command::new("python3").args(["-m", "venv"]).arg(&venv))
                .await
                .context("cannot create the Python virtual environment (python3 with venv)")?;
        }
        let client = paths.root.join("clients").join("python");
        ensure!(
            client.join("pyproject.toml").exists(),
            "no Python client in `clients/python` (no `pyproject.toml` there)"
        );
        eprintln!("bench: installing grpcio and the wasmrpc Python client");
        run_to_end(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("-r")
                .arg(bench.join("python").join("requirements.txt"))
                .arg(&client),
        )
        .await?;
        let stubs = dir.join("stubs");
        if stubs.exists() {
            std::fs::remove_dir_all(&stubs)?;
        }
        std::fs::create_dir_all(&stubs)?;
        let proto = bench.join("proto");
        run_to_end(
            Command::new(&python)
                .args(["-m", "grpc_tools.protoc"])
                .arg(format!("--proto_path={}", proto.display()))
                .arg(format!("--python_out={}", stubs.display()))
                .arg(format!("--grpc_python_out={}", stubs.display()))
                .arg(proto.join("bench.proto")),
        )
        .await
        .context("cannot generate the Python gRPC stubs")?;
        Ok(Venv {
            python,
            stubs,
            script: bench.join("python").join("load.py"),
        })
    }

    /// Runs `load.py` against `host` and the gRPC `server`; its figures.
    async fn load(
        &self,
        plan: &Plan,
        host: &Host,
        server: &ServerProcess,
    ) -> anyhow::Result<ScriptOutput> {
        let pid = |pid: Option<u32>, what: &str| {
            pid.map(|p| p.to_string())
                .with_context(|| format!("the {what} has exited"))
        };
        let mut command = Command::new(&self.python);
        command
            .arg(&self.script)
            .arg("--wasmrpc")
            .arg(host.addr().to_string())
            .arg("--wasmrpc-pid")
            .arg(pid(host.pid(), "host")?)
            .arg("--grpc")
            .arg(server.addr.to_string())
            .arg("--grpc-pid")
            .arg(pid(server.pid(), "gRPC server")?)
            .arg("--stubs")
            .arg(&self.stubs)
            .arg("--in-flight")
            .arg(plan.in_flight.to_string())
            .arg("--seconds")
            .arg(plan.python_for.as_secs_f64().to_string())
            .arg("--warmup-seconds")
            .arg(plan.python_warmup().as_secs_f64().to_string())
            .arg("--rounds")
            .arg(plan.rounds.to_string())
            .kill_on_drop(true);
        // Two loads of two clients, each warmed up and measured.
        let limit = (plan.python_for + plan.python_warmup()) * 4 + SCRIPT_SLACK;
        let stdout = tokio::time::timeout(limit, run_to_end(&mut command))
            .await
            .context("load.py did not finish in time")??;
        serde_json::from_slice(&stdout).with_context(|| {
            format!(
                "load.py printed no figures: {}",
                String::from_utf8_lossy(&stdout)
            )
        })
    }
}

/// Runs `command` to its end; its standard output, or an error with the
/// end of its standard error.
async fn run_to_end(command: &mut Command) -> anyhow::Result<Vec<u8>> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", program(command)))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        bail!(
            "{} failed ({}):\n{}",
            program(command),
            output.status,
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
    }
    Ok(output.stdout)
}

/// A command by its program and script or module (`python -m pip`), by
/// file name: no machine paths in the report.
fn program(command: &Command) -> String {
    let std = command.as_std();
    let name = |s: &std::ffi::OsStr| {
        let path = Path::new(s);
        path.file_name().unwrap_or(s).to_string_lossy().into_owned()
    };
    let mut words = vec![name(std.get_program())];
    let mut args = std.get_args();
    if let Some(first) = args.next() {
        words.push(name(first));
        if first == "-m" {
            words.extend(args.next().map(name));
        }
    }
    format!("`{}`", words.join(" "))
}

/// What `load.py` prints.
#[derive(Debug, Deserialize)]
struct ScriptOutput {
    python: String,
    event_loop: String,
    /// Versions of the packages measured, by name; `None` if not installed.
    packages: BTreeMap<String, Option<String>>,
    systems: Vec<ScriptSystem>,
}

impl ScriptOutput {
    /// "Python 3.11.7, asyncio's `_UnixSelectorEventLoop`; grpcio 1.85.1, ...".
    fn versions(&self) -> String {
        let packages: Vec<String> = self
            .packages
            .iter()
            .map(|(name, version)| format!("{name} {}", version.as_deref().unwrap_or("?")))
            .collect();
        format!(
            "Python {}, asyncio's `{}`; {}",
            self.python,
            self.event_loop,
            packages.join(", ")
        )
    }
}

/// One client's figures, or why it has none.
#[derive(Debug, Deserialize)]
struct ScriptSystem {
    name: String,
    error: Option<String>,
    loads: Vec<ScriptLoad>,
}

/// One client under one load, summed over the rounds.
#[derive(Debug, Deserialize)]
struct ScriptLoad {
    in_flight: usize,
    calls: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    calls_per_sec: f64,
    caller_cpu_us: Option<f64>,
    server_cpu_us: Option<f64>,
}

impl ScriptLoad {
    fn summary(&self) -> Summary {
        Summary {
            calls: self.calls,
            p50_us: self.p50_us,
            p99_us: self.p99_us,
            p999_us: self.p999_us,
            calls_per_sec: self.calls_per_sec,
            cpu: Some(CpuPerCall {
                servers_us: self.server_cpu_us,
                client_us: self.caller_cpu_us,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_named_by_its_program_and_module_without_paths() {
        let mut pip = Command::new("/some/venv/bin/python");
        pip.args(["-m", "pip", "install", "-r", "/some/requirements.txt"]);
        assert_eq!(program(&pip), "`python -m pip`");
        let mut script = Command::new("/some/venv/bin/python");
        script.arg("/repo/bench/python/load.py").arg("--wasmrpc");
        assert_eq!(program(&script), "`python load.py`");
        assert_eq!(program(&Command::new("python3")), "`python3`");
    }

    #[test]
    fn reads_the_figures_load_py_prints() {
        let json = r#"{"python": "3.11.7", "event_loop": "_UnixSelectorEventLoop",
            "packages": {"wasmrpc": "0.1.0", "grpcio": "1.85.1", "protobuf": null},
            "systems": [
              {"name": "wasmrpc-python", "error": null, "loads": [
                {"in_flight": 1, "calls": 1000, "elapsed_s": 0.5, "p50_us": 400.5,
                 "p99_us": 900.0, "p999_us": 1500.0, "calls_per_sec": 2000.0,
                 "caller_cpu_us": 300.0, "server_cpu_us": null}]},
              {"name": "grpcio", "error": "AssertionError: Add(2, 3) returned 6, not 5",
               "loads": []}]}"#;
        let output: ScriptOutput = serde_json::from_str(json).unwrap();
        assert_eq!(
            output.versions(),
            "Python 3.11.7, asyncio's `_UnixSelectorEventLoop`; \
             grpcio 1.85.1, protobuf ?, wasmrpc 0.1.0"
        );
        let mut results = PythonResults::default();
        results.record_script(Client::WasmrpcPython, &output.systems[0]);
        results.record_script(Client::Grpcio, &output.systems[1]);
        assert_eq!(results.rows.len(), 2);
        assert_eq!(results.rows[0].load, "1 in flight");
        let Outcome::Measured(summary) = results.rows[0].outcome else {
            panic!("{:?}", results.rows[0]);
        };
        assert_eq!(summary.calls, 1000);
        assert_eq!(summary.p50_us, 400.5);
        assert_eq!(summary.calls_per_sec, 2000.0);
        let cpu = summary.cpu.unwrap();
        assert_eq!((cpu.client_us, cpu.servers_us), (Some(300.0), None));
        assert!(
            matches!(&results.rows[1].outcome, Outcome::Failed(e) if e == "AssertionError: Add(2, 3) returned 6, not 5"),
            "{:?}",
            results.rows[1]
        );
        assert_eq!(results.one.len(), 1);
        assert!(results.many.is_empty());
    }
}
