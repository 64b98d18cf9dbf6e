//! The `wasmrpc` command line: `host`, `call`, `list`, `up`.

mod up;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::Topology;
use crate::host::{Host, HostOptions};
use crate::net::{CallOptions, Client};
use crate::protocol::CallError;
use crate::protocol::json::{cbor_to_json, json_to_cbor, to_json_text};
use crate::region::{Identity, peers_and_routes};

/// Multi-region RPC whose handlers are WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "wasmrpc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the `host` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the plugins of one region.
    ///
    /// Loads every `<name>.wasm` component in the region's plugin folder and
    /// serves its exported functions. Stops gracefully on SIGINT or SIGTERM:
    /// new calls are refused, calls in flight finish within the drain timeout,
    /// then the process exits 0. A second signal exits at once, with exit
    /// code 130, leaving calls in flight unanswered.
    Host(HostArgs),
    /// Call a function and print its result as JSON.
    ///
    /// Each ARG is one JSON value, in parameter order: strings need quotes
    /// (`'"sku-1"'`), records are objects, `list<u8>` is an array of numbers.
    /// On failure the error code and message go to stderr and the exit code
    /// is 1.
    Call(CallArgs),
    /// List every callable function with its WIT signature and regions.
    List(ListArgs),
    /// Start every host of the config file, each as its own process.
    ///
    /// Output lines are prefixed with the host's region and address; once
    /// every host listens, a summary says where each one does. Ctrl-C (or
    /// SIGTERM) stops them all gracefully; a second one stops them at once.
    Up(UpArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// The topology file.
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct HostArgs {
    /// The region to serve, as named in the config file.
    #[arg(long)]
    region: String,
    /// The topology file. Without it, `--listen` and `--plugins` must both be
    /// given and the host serves its region alone.
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
    /// This host's address: one of the region's `hosts` (default: the
    /// first). An address not in the file serves the region without being
    /// known to peers; port 0 picks a free port (printed on stdout).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Bind this socket address instead of `--listen` (when peers reach this
    /// host through a proxy or NAT at the `--listen` address).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Plugin folder; defaults to the region's `plugins` entry.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// How long shutdown waits for calls in flight (the process then exits
    /// 0; a second signal stops the wait: exit code 130).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Deadline of calls that carry none.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    default_deadline: Duration,
    /// Longest deadline a call may ask for; longer ones are clamped.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_deadline: Duration,
    /// Calls in flight per connection before new ones are refused.
    #[arg(long, default_value_t = crate::protocol::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Linear memory per plugin instance, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_limit_mib: usize,
    /// Plugin instances that may exist at once (the pool size); calls beyond
    /// get `resource_exhausted`.
    #[arg(long, default_value_t = 256)]
    max_instances: u32,
    /// Wasm stack per call, in KiB; deeper recursion traps.
    #[arg(long, default_value_t = 512)]
    max_wasm_stack_kib: usize,
    /// Data a guest may hand to the host in one call (its result, or one host
    /// import's arguments), in KiB.
    #[arg(long, default_value_t = 4096)]
    max_guest_output_kib: usize,
    /// Resource handles a guest may hold at once.
    #[arg(long, default_value_t = 1000)]
    max_component_handles: usize,
    /// How long a call's guest may run on the network thread that received
    /// it before it moves to the guest thread pool (`0s`: always on the
    /// pool). Short calls finish inline, without the two thread hand-overs
    /// of the pool; a long or spinning guest holds a network thread for at
    /// most this plus a millisecond.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    inline_budget: Duration,
    /// Fresh instances made ahead of calls, per plugin that has been called
    /// (each holds a pool slot and its memory; all plugins together keep at
    /// most an eighth of `--max-instances`); `0` makes each call's instance
    /// on the call's path.
    #[arg(long, default_value_t = 2)]
    spare_instances: usize,
    /// Largest frame accepted or sent, in KiB.
    #[arg(long, default_value_t = 4096)]
    max_frame_kib: usize,
    /// Open connections before new ones are refused.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// How long a new connection may take to start sending its `hello`
    /// (once started, the frame timeout applies).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hello_timeout: Duration,
    /// How long a frame may take to arrive once its first byte has.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    frame_timeout: Duration,
    /// Close connections with nothing in flight for this long, counted from
    /// their last frame or their last call's answer.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// `cancel`s per connection allowed in 10 s before it is closed.
    #[arg(long, default_value_t = 100)]
    max_cancels: u32,
    /// Replies queued for a caller that does not read them, in KiB, before
    /// its connection is closed.
    #[arg(long, default_value_t = 65_536)]
    max_outbound_kib: usize,
    /// Plugin files larger than this are refused, in MiB.
    #[arg(long, default_value_t = 50)]
    max_plugin_mib: u64,
    /// How often each peer link is pinged.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    ping_interval: Duration,
    /// Ping intervals in a row with nothing received from a peer before it
    /// is declared dead: its calls in flight fail at once (`unavailable`,
    /// `processed: maybe`; idempotent ones fail over) and the link is
    /// redialled.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    missed_pings: u32,
    /// Attempts per forwarded call, the first and any hedge included.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// Shortest hedge delay: an idempotent call forwarded to a peer that has
    /// not answered within the peer's usual latency (mean + 4 deviations)
    /// is also sent to the next host serving it, but never sooner than this.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    hedge_min: Duration,
    /// Longest hedge delay (and the delay before the peer's latency is
    /// known); `0s` turns hedging off.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    hedge_max: Duration,
}

#[derive(Debug, clap::Args)]
struct CallArgs {
    /// Host to connect to.
    #[arg(long, env = "WASMRPC_HOST", default_value = "127.0.0.1:7101")]
    host: String,
    /// The call's deadline, e.g. `200ms`, `5s`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// `plugin.function` or `plugin.interface.function`.
    function: String,
    /// Arguments, one JSON value each.
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Host to connect to.
    #[arg(long, env = "WASMRPC_HOST", default_value = "127.0.0.1:7101")]
    host: String,
    /// Print the catalog as JSON.
    #[arg(long)]
    json: bool,
    /// Only functions of this plugin (`math`), interface (`inventory.stock`),
    /// or matching a prefix ending in `*` (`greeter.echo.echo-s*`).
    pattern: Option<String>,
}

/// Runs the command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Host(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Host(args) => run_host(args).await,
            Command::Call(args) => run_call(args).await,
            Command::List(args) => run_list(args).await,
            Command::Up(args) => crate::cli::up::run(args.config).await,
        }
    });
    // Guest threads may still be unwinding an aborted call; don't wait for them.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_host(args: HostArgs) -> anyhow::Result<ExitCode> {
    let mut peers = Vec::new();
    let mut routes = Vec::new();
    let mut topology_file = None;
    let (listen, plugins) = match Topology::from_file(&args.config) {
        Ok(topology) => {
            topology.validate()?;
            let region = topology.region(&args.region)?;
            let listen = match args.listen {
                Some(listen) => listen,
                None => region.hosts[0]
                    .parse()
                    .expect("validated host addresses parse"),
            };
            let me = Identity {
                region: args.region.clone(),
                addr: listen.to_string(),
            };
            (peers, routes) = peers_and_routes(&topology, &me);
            topology_file = Some(args.config.clone());
            let plugins = args.plugins.unwrap_or_else(|| topology.plugin_dir(region));
            (listen, plugins)
        }
        Err(error) => match (args.listen, args.plugins) {
            (Some(listen), Some(plugins)) if !args.config.exists() => {
                tracing::info!(
                    "no `{}`: serving region `{}` alone",
                    args.config.display(),
                    args.region
                );
                (listen, plugins)
            }
            _ => return Err(error.into()),
        },
    };
    if !plugins.is_dir() {
        bail!("plugin folder `{}` does not exist", plugins.display());
    }

    let mut options = HostOptions::new(&args.region, args.bind.unwrap_or(listen), plugins);
    options.server.host_id = listen.to_string();
    options.peers = peers;
    options.routes = routes;
    options.topology_file = topology_file;
    options.server.drain_timeout = args.drain_timeout;
    options.server.default_deadline = args.default_deadline;
    options.server.max_deadline = args.max_deadline;
    options.server.max_in_flight = args.max_in_flight;
    options.runtime.memory_limit = args.memory_limit_mib << 20;
    options.runtime.max_instances = args.max_instances;
    options.runtime.max_wasm_stack = args.max_wasm_stack_kib << 10;
    options.runtime.max_guest_output = args.max_guest_output_kib << 10;
    options.runtime.max_component_handles = args.max_component_handles;
    options.runtime.inline_budget = args.inline_budget;
    options.runtime.spare_instances = args.spare_instances;
    options.server.max_frame = args.max_frame_kib << 10;
    options.server.max_connections = args.max_connections;
    options.server.hello_timeout = args.hello_timeout;
    options.server.frame_timeout = args.frame_timeout;
    options.server.idle_timeout = args.idle_timeout;
    options.server.max_cancels = args.max_cancels;
    options.server.max_outbound = (args.max_outbound_kib << 10).max(options.server.max_frame);
    options.reload.max_plugin_size = args.max_plugin_mib << 20;
    options.peer_config.ping_interval = args.ping_interval;
    options.peer_config.missed_pings = args.missed_pings;
    options.routing.retry.max_attempts = args.max_attempts;
    options.routing.hedge_min = args.hedge_min;
    options.routing.hedge_max = args.hedge_max;
    let host = Host::start(options).await?;
    let (functions, plugin_count) = host.loaded();
    println!(
        "wasmrpc host of region `{}` listening on {} ({functions} functions from {plugin_count} plugins)",
        args.region,
        host.local_addr()
    );

    wait_for_signal().await?;
    tracing::info!("shutting down; send the signal again to exit at once");
    host.shutdown();
    let drained = tokio::select! {
        drained = host.wait() => drained,
        result = wait_for_signal() => {
            result?;
            tracing::warn!("second signal: exiting without draining");
            return Ok(ExitCode::from(130));
        }
    };
    if !drained {
        tracing::warn!("exiting with calls still in flight after the drain timeout");
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

async fn run_call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let mut values = Vec::with_capacity(args.args.len());
    for (i, text) in args.args.iter().enumerate() {
        let json: serde_json::Value = match serde_json::from_str(text) {
            Ok(json) => json,
            Err(error) => {
                eprintln!(
                    "error: argument {} `{text}` is not JSON ({error}); strings need quotes, e.g. '\"{text}\"'",
                    i + 1
                );
                return Ok(ExitCode::from(2));
            }
        };
        values.push(json_to_cbor(json));
    }
    let result = async {
        let client = Client::connect(args.host.as_str()).await?;
        let options = CallOptions {
            timeout: Some(args.timeout),
            ..CallOptions::default()
        };
        client.call_with(&args.function, values, options).await
    }
    .await;
    match result {
        Ok(value) => {
            println!("{}", to_json_text(&value));
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            print_call_error(&error);
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn run_list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let result = async { Client::connect(args.host.as_str()).await?.list().await }.await;
    let mut functions = match result {
        Ok(functions) => functions,
        Err(error) => {
            print_call_error(&error);
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(pattern) = &args.pattern {
        functions.retain(|f| match pattern.strip_suffix('*') {
            Some(prefix) => f.name.starts_with(prefix),
            None => f.name == *pattern || f.name.starts_with(&format!("{pattern}.")),
        });
    }
    if args.json {
        let json = serde_json::to_string_pretty(&functions).context("cannot encode the catalog")?;
        println!("{json}");
    } else {
        for function in &functions {
            println!(
                "{}: {}  [{}]",
                function.name,
                function.signature,
                function.regions.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `error[code]: message` and the details that help decide what to do next.
fn print_call_error(error: &CallError) {
    eprintln!("error[{}]: {}", error.code, error.message);
    let mut facts = vec![format!("processed: {}", error.processed)];
    if let Some(region) = &error.region {
        facts.insert(0, format!("region: {region}"));
    }
    eprintln!("  {}", facts.join(", "));
    if let Some(detail) = &error.detail {
        eprintln!("  detail: {}", cbor_to_json(detail));
    }
}
