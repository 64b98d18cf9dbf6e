//! `wasmrpc-bench`: builds the host and plugins, runs every benchmark, prints
//! the markdown report and writes it to `BENCHMARKS.md`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use wasmrpc_bench::prepare::{self, Paths};
use wasmrpc_bench::suite::{self, Plan};
use wasmrpc_bench::{floor, frame_relay, grpc};

/// Side-by-side benchmarks of wasmrpc, a raw TCP floor and gRPC.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the host and the example plugins, run every benchmark, print
    /// the report and write it to BENCHMARKS.md.
    All(AllArgs),
    /// Only build the release host and the example plugins.
    Build,
    /// Serve a comparison server on a free port of 127.0.0.1, printing
    /// `listening on ADDR` (the `all` run starts these itself).
    #[command(hide = true)]
    Serve {
        system: Server,
        /// The server a `floor-relay` or `frame-relay` forwards to.
        upstream: Option<std::net::SocketAddr>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Server {
    Floor,
    /// A byte-for-byte TCP relay in front of a floor server.
    FloorRelay,
    /// A relay that decodes and re-encodes every wasmrpc frame, in front of
    /// a wasmrpc host.
    FrameRelay,
    Grpc,
}

#[derive(clap::Args)]
struct AllArgs {
    /// Calls per measurement at 1 in flight.
    #[arg(long, default_value_t = 20_000)]
    calls: u64,
    /// Calls per measurement with `--in-flight` calls in flight.
    #[arg(long, default_value_t = 200_000)]
    pipelined_calls: u64,
    /// Calls in flight for the pipelined measurements.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Calls per second of the open-loop measurements.
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// Seconds each open-loop measurement lasts.
    #[arg(long, default_value_t = 5.0)]
    open_secs: f64,
    /// Unmeasured calls before each measurement.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Rounds of the interleaved closed-loop measurements: the systems take
    /// turns, round by round.
    #[arg(long, default_value_t = 10)]
    rounds: u64,
    /// MiB echoed per payload measurement (fewer calls for larger payloads).
    #[arg(long, default_value_t = 256)]
    payload_mib: u64,
    /// New connections per kind (plaintext, TLS full handshake, TLS resumed)
    /// in the TLS group.
    #[arg(long, default_value_t = 500)]
    connections: u64,
    /// Seconds each Python client is measured per load in the Python group.
    #[arg(long, default_value_t = 5.0)]
    python_secs: f64,
    /// A tenth of the calls and a 1 s open loop: a smoke test, not a result.
    #[arg(long)]
    quick: bool,
    /// Use the binaries and plugins already built.
    #[arg(long)]
    no_build: bool,
    /// Where to write the report (default: BENCHMARKS.md at the repository root).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print the report without writing it.
    #[arg(long)]
    no_write: bool,
    /// Measure only these groups (comma-separated); the report is partial.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<suite::Group>,
}

impl AllArgs {
    fn plan(&self) -> Plan {
        let scale = if self.quick { 10 } else { 1 };
        Plan {
            calls: self.calls / scale,
            pipelined_calls: self.pipelined_calls / scale,
            in_flight: self.in_flight.max(1),
            rate: self.rate.max(1),
            open_for: Duration::from_secs_f64(if self.quick { 1.0 } else { self.open_secs }),
            warmup: self.warmup / scale,
            payload_bytes: (self.payload_mib << 20) / scale,
            connections: (self.connections / scale).max(1),
            python_for: Duration::from_secs_f64(self.python_secs.max(0.1) / scale as f64),
            only: self.only.clone(),
            rounds: self.rounds.max(1),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let paths = Paths::of_repository();
    match cli.command {
        Command::All(args) => runtime.block_on(all(&args, &paths)),
        Command::Build => prepare::build(&paths),
        Command::Serve { system, upstream } => runtime.block_on(serve(system, upstream)),
    }
}

async fn all(args: &AllArgs, paths: &Paths) -> anyhow::Result<()> {
    if !args.no_build {
        prepare::build(paths)?;
    }
    let began = std::time::Instant::now();
    let report = suite::run(&args.plan(), paths).await?;
    eprintln!("bench: done in {:.0} s", began.elapsed().as_secs_f64());
    let markdown = report.to_markdown();
    println!("{markdown}");
    if !args.no_write {
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| paths.root.join("BENCHMARKS.md"));
        std::fs::write(&output, &markdown)
            .with_context(|| format!("cannot write {}", output.display()))?;
        eprintln!("bench: wrote {}", output.display());
    }
    Ok(())
}

async fn serve(system: Server, upstream: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    match system {
        Server::Floor => floor::serve(listener).await?,
        Server::FloorRelay => {
            let upstream = upstream.context("`floor-relay` needs the upstream address")?;
            floor::relay(listener, upstream).await?
        }
        Server::FrameRelay => {
            let upstream = upstream.context("`frame-relay` needs the upstream address")?;
            frame_relay::serve(listener, upstream).await?
        }
        Server::Grpc => grpc::serve(listener).await?,
    }
    Ok(())
}
