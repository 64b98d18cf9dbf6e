//! The `wasmrpc` command line: `host`, `call`, `list`, `status`, `up`, `certs`,
//! `token`.

mod certs;
mod host;
mod status;
mod token;
mod up;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::net::{CallOptions, Client, ClientOptions};
use crate::protocol::json::{cbor_to_json, json_to_cbor, to_json_text};
use crate::protocol::{CallError, ErrorCode, Processed};
use host::HostArgs;
use wasmrpc_client::ClientTls;

/// Multi-region RPC whose handlers are WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "wasmrpc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object per line, with fields such as `trace_id` and `plugin`) for
    /// log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The form of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Show every host's state, read from its admin listener.
    ///
    /// Asks each host of the config file whose region has an `admin` list
    /// (or only the `--host`s given) for its `/status`, all at once, and
    /// prints them by region: each host ready, draining or unreachable (and
    /// why), its uptime and plugins (functions, SHA-256, last file refused),
    /// and its view of each peer: health (up, ejected, down), ping RTT,
    /// calls in flight, host-level failures in a row, time left ejected,
    /// ejections and links lost.
    ///
    /// Exit code: 0 when every host answered; 1 when any did not (the others
    /// are still printed); 2 when there is no host to ask (the config file
    /// cannot be read or names no admin listener).
    Status(status::StatusArgs),
    /// Start every host of the config file, each as its own process.
    ///
    /// First makes what a first run lacks: the development certificates of
    /// the file's `[tls]` table, and the default access file with a token
    /// for every function. Output lines are prefixed with the host's region
    /// and address; once every host listens, a summary says where each one
    /// does and how to call them. Ctrl-C (or SIGTERM) stops them all
    /// gracefully; a second one stops them at once.
    Up(up::UpArgs),
    /// Make bearer tokens for callers.
    Token(token::TokenArgs),
    /// Make development TLS certificates for the regions of the config file.
    ///
    /// Creates the cluster CA named by the file's `[tls]` table when it does
    /// not exist, and reuses it otherwise; then issues each region's host
    /// certificate (or only the `--region`s named), or callers'
    /// certificates with `--client`. Prints one line per file written.
    Certs(certs::CertsArgs),
}

/// How `call` and `list` reach the hosts: their addresses, TLS and token.
#[derive(Debug, clap::Args)]
struct Connect {
    /// Host to connect to; repeat for several: calls go to the one with the
    /// shortest round trip, and to another when it fails or drains.
    /// Default: 127.0.0.1:7101.
    #[arg(
        long = "host",
        value_name = "ADDR",
        env = "WASMRPC_HOST",
        value_delimiter = ',',
        conflicts_with = "config"
    )]
    hosts: Vec<String>,
    /// Connect to the hosts of this regions file instead (those of
    /// `--region` first); its `[tls]` CA is trusted unless `--ca` is given.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// With `--config`: the region whose hosts to prefer; the others take
    /// calls only while none of it can.
    #[arg(long, requires = "config")]
    region: Option<String>,
    /// Connect with TLS, trusting this CA certificate (PEM): the cluster CA
    /// of the hosts' `[tls]` table. Without it (and without a `--config`
    /// with a `[tls]` table) the connection is plaintext, which hosts accept
    /// on loopback only.
    #[arg(long, env = "WASMRPC_CA")]
    ca: Option<PathBuf>,
    /// The name the hosts' certificates must carry; default: each host's IP
    /// address.
    #[arg(long, requires = "ca")]
    tls_server_name: Option<String>,
    /// The bearer token to present, for hosts with an access file. Prefer
    /// the environment variable: a flag shows in the process list.
    #[arg(long, env = "WASMRPC_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Connect {
    async fn client(&self) -> Result<Client, CallError> {
        let mut options = ClientOptions {
            token: self.token.clone().map(crate::protocol::Secret::new),
            ..ClientOptions::default()
        };
        if let Some(ca) = &self.ca {
            let bad = |e: wasmrpc_client::tls::TlsError| {
                CallError::new(ErrorCode::InvalidArgs, Processed::No, format!("--ca: {e}"))
            };
            let mut tls = ClientTls::from_ca_file(ca).map_err(bad)?;
            if let Some(name) = &self.tls_server_name {
                tls = tls.with_server_name(name).map_err(bad)?;
            }
            options.tls = Some(tls);
        }
        if let Some(config) = &self.config {
            return Client::connect_region(config, self.region.as_deref(), options).await;
        }
        if self.hosts.is_empty() {
            return Client::connect_with("127.0.0.1:7101", options).await;
        }
        Client::connect_any(&self.hosts, options).await
    }
}

#[derive(Debug, clap::Args)]
struct CallArgs {
    #[command(flatten)]
    connect: Connect,
    /// The call's deadline, e.g. `200ms`, `5s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// The function is safe to run more than once: a call lost with its
    /// host's connection is tried again on another host. Without it, such a
    /// call fails with `processed: maybe` (unless the hosts' catalog marks
    /// the function idempotent).
    #[arg(long)]
    idempotent: bool,
    /// A metadata entry of the call, `NAME=VALUE` (repeat for more): passed
    /// to every host the call reaches, and a key `[keys]` rules may route by
    /// (`metadata.NAME`).
    #[arg(long = "meta", value_name = "NAME=VALUE", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// `plugin.function` or `plugin.interface.function`.
    function: String,
    /// Arguments, one JSON value each.
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    connect: Connect,
    /// Print the catalog as JSON.
    #[arg(long)]
    json: bool,
    /// Only functions of this plugin (`math`), interface (`inventory.stock`),
    /// or matching a prefix ending in `*` (`greeter.echo.echo-s*`).
    pattern: Option<String>,
}

/// `--meta NAME=VALUE`.
fn parse_meta(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// The command line. A flag whose default the library defines has no clap
/// default: not given, it leaves the library's value, which its help shows.
fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("host", host::show_defaults)
        .mut_subcommand("call", |call| {
            let timeout = ClientOptions::default().default_timeout;
            show_default(call, "timeout", &duration(timeout))
        })
}

/// Shows `value` as the default of flag `id` of `command`, in the words and
/// place clap gives a `default_value`, without making it one.
fn show_default(command: clap::Command, id: &str, value: &str) -> clap::Command {
    command.mut_arg(id, |arg| {
        let mut help = arg.get_help().cloned().unwrap_or_default();
        let mut long_help = arg.get_long_help().cloned().unwrap_or_else(|| help.clone());
        help.push_str(&format!(" [default: {value}]"));
        long_help.push_str(&format!("\n\n[default: {value}]"));
        arg.help(help).long_help(long_help)
    })
}

/// `d` as the duration flags take it, in its largest whole unit: `300s`,
/// `500ms`.
fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let (count, unit) = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")]
        .into_iter()
        .find(|(per_unit, _)| nanos.is_multiple_of(*per_unit))
        .map_or((nanos, "ns"), |(per_unit, unit)| (nanos / per_unit, unit));
    format!("{count}{unit}")
}

/// Runs the command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|error| error.exit());
    let default_log = match cli.command {
        Command::Host(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_log));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // Fields at the top level of each object, beside `message`.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
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
            Command::Host(args) => host::run(args).await,
            Command::Call(args) => run_call(args).await,
            Command::List(args) => run_list(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Up(args) => up::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Certs(args) => certs::run(args),
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

/// SIGTERM and SIGINT, listened for from its creation on: create it before
/// saying the process is ready, so that a signal sent right after is not
/// lost to the default action (exiting without draining).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    Signals::new()?.next().await;
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
        let client = args.connect.client().await?;
        let options = CallOptions {
            timeout: args.timeout,
            idempotent: args.idempotent,
            metadata: args.meta.iter().cloned().collect(),
            ..CallOptions::default()
        };
        client
            .call_value_with(&args.function, values, options)
            .await
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
    let result = async { args.connect.client().await?.list().await }.await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_in_their_largest_whole_unit() {
        for (d, shown) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(300), "300s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1), "1ms"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_nanos(7), "7ns"),
        ] {
            assert_eq!(duration(d), shown);
            assert_eq!(humantime::parse_duration(shown).unwrap(), d);
        }
    }

    #[test]
    fn the_call_timeout_help_shows_is_the_clients_default() {
        let mut command = command();
        let call = command.find_subcommand_mut("call").unwrap();
        let timeout = call
            .get_arguments()
            .find(|arg| arg.get_id() == "timeout")
            .unwrap();
        let help = timeout.get_help().unwrap().to_string();
        assert!(help.ends_with(" [default: 5s]"), "{help}");
        assert_eq!(
            ClientOptions::default().default_timeout,
            Duration::from_secs(5)
        );
    }
}
