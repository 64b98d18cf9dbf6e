//! The `host` command: its flags, each laid over the library's default only
//! when given, and the process that serves one region until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use super::{Signals, duration, show_default};
use crate::config::Topology;
use crate::host::{Host, HostOptions};
use crate::net::ServerConfig;
use crate::observe::OtlpConfig;
use crate::plugins::ReloadConfig;
use crate::region::keys::Keys;
use crate::region::{Identity, PeerConfig, RoutingConfig, peers_and_routes};
use crate::runtime::RuntimeConfig;

/// The flags of `host`. A tuning flag not given leaves the library's default
/// (`ServerConfig::new`, `RuntimeConfig::default()`, ...), which `--help`
/// shows (see [`show_defaults`]).
#[derive(Debug, clap::Args)]
pub(super) struct HostArgs {
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
    /// This host's TLS certificate chain (PEM), naming its region as
    /// `spiffe://<trust_domain>/wasmrpc/region/<region>`; default: the
    /// region's `<region>.crt` in the `[tls]` folder of the config file.
    /// Reloaded when it changes.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM); default: `<region>.key`
    /// beside the region's certificate.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The access file: callers' token digests and the functions each may
    /// call. Without it every caller may call every function. Reloaded when
    /// it changes; a token removed closes its connections.
    #[arg(long, env = "WASMRPC_ACCESS")]
    access: Option<PathBuf>,
    /// Serve an address other than loopback without TLS or without an
    /// access file. Anyone who reaches it can call every function, and
    /// without TLS read and alter every call; logged loudly at start.
    #[arg(long)]
    insecure: bool,
    /// The admin listener: Prometheus `/metrics`, `/healthz`, `/readyz`,
    /// `/status` (JSON) and a live dashboard at `/`. Default: this host's
    /// entry in the region's `admin` list, if any; without one, no admin
    /// listener and no metrics. Anyone who reaches it can read the host's
    /// state (never its calls' data or secrets): bind it to loopback or a
    /// management network.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Export one span per call (and per host it passes) to this OTLP/HTTP
    /// collector, e.g. `http://127.0.0.1:4318` (spans are POSTed as JSON
    /// to `/v1/traces`). Without it the host records no span and takes no
    /// part in traces: it passes trace contexts on unchanged and logs
    /// their trace ids.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// How long finished spans wait to be exported in one batch (default:
    /// `OTEL_BSP_SCHEDULE_DELAY` in milliseconds, else 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    otlp_flush_interval: Option<Duration>,
    /// With `--otlp-endpoint`: the share of calls arriving without a
    /// `traceparent` whose new trace is sampled (their spans exported here
    /// and by the hosts after it), from 0 to 1. Calls that carry one follow
    /// its sampled flag. Each exported span costs a few microseconds of
    /// CPU: at high call rates, sample.
    #[arg(long, value_parser = sample_ratio)]
    trace_sample: Option<f64>,
    /// How long shutdown waits for calls in flight (the process then exits
    /// 0; a second signal stops the wait: exit code 130).
    #[arg(long, value_parser = humantime::parse_duration)]
    drain_timeout: Option<Duration>,
    /// Deadline of calls that carry none.
    #[arg(long, value_parser = humantime::parse_duration)]
    default_deadline: Option<Duration>,
    /// Longest deadline a call may ask for; longer ones are clamped.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_deadline: Option<Duration>,
    /// Calls in flight per connection before new ones are refused.
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Linear memory per plugin instance, in MiB.
    #[arg(long)]
    memory_limit_mib: Option<usize>,
    /// The most linear memory a plugin's sidecar may give its instances
    /// (`memory_mib`), in MiB. Costs address space only: memory is committed
    /// as instances touch it.
    #[arg(long)]
    max_plugin_memory_mib: Option<usize>,
    /// The most table elements a plugin's sidecar may give its tables
    /// (`table_elements`).
    #[arg(long)]
    max_plugin_table_elements: Option<usize>,
    /// Where compiled plugins are kept, so that a restart or the reload of an
    /// unchanged file does not compile again (seconds for a plugin that
    /// embeds a language runtime). Entries are keyed by the file's SHA-256
    /// and the engine's settings; one that is corrupt or from another
    /// version is removed and compiled again. The folder must be writable by
    /// this user alone (it is created `0700`). Default:
    /// `$XDG_CACHE_HOME/wasmrpc/compiled`, else `~/.cache/wasmrpc/compiled`.
    #[arg(long, env = "WASMRPC_COMPILE_CACHE", value_name = "DIR")]
    compile_cache: Option<PathBuf>,
    /// Compile every plugin at each load, keeping nothing on disk (wins
    /// over `--compile-cache` and its environment variable).
    #[arg(long)]
    no_compile_cache: bool,
    /// MiB the compile cache may hold; past it, the entries used longest ago
    /// are removed.
    #[arg(long)]
    compile_cache_max_mib: Option<u64>,
    /// Plugin instances that may exist at once (the pool size); calls beyond
    /// get `resource_exhausted`.
    #[arg(long)]
    max_instances: Option<u32>,
    /// Wasm stack per call, in KiB; deeper recursion traps.
    #[arg(long)]
    max_wasm_stack_kib: Option<usize>,
    /// Data a guest may hand to the host in one call (its result, or one host
    /// import's arguments), in KiB.
    #[arg(long)]
    max_guest_output_kib: Option<usize>,
    /// Resource handles a guest may hold at once.
    #[arg(long)]
    max_component_handles: Option<usize>,
    /// How long a call's guest may run on the network thread that received
    /// it before it moves to the guest thread pool (`0s`: always on the
    /// pool). Short calls finish inline, without the two thread hand-overs
    /// of the pool; a long or spinning guest holds a network thread for at
    /// most this plus a millisecond.
    #[arg(long, value_parser = humantime::parse_duration)]
    inline_budget: Option<Duration>,
    /// Fresh instances made ahead of calls, per plugin that has been called
    /// (each holds a pool slot and its memory; all plugins together keep at
    /// most an eighth of `--max-instances`); `0` makes each call's instance
    /// on the call's path.
    #[arg(long)]
    spare_instances: Option<usize>,
    /// Largest frame accepted or sent, in KiB.
    #[arg(long)]
    max_frame_kib: Option<usize>,
    /// Open connections before new ones are refused.
    #[arg(long)]
    max_connections: Option<usize>,
    /// How long a new connection may take to start sending its `hello`
    /// (once started, the frame timeout applies).
    #[arg(long, value_parser = humantime::parse_duration)]
    hello_timeout: Option<Duration>,
    /// How long a frame may take to arrive once its first byte has.
    #[arg(long, value_parser = humantime::parse_duration)]
    frame_timeout: Option<Duration>,
    /// Close connections with nothing in flight for this long, counted from
    /// their last frame or their last call's answer.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// `cancel`s per connection allowed in 10 s before it is closed.
    #[arg(long)]
    max_cancels: Option<u32>,
    /// Replies queued for a caller that does not read them, in KiB, before
    /// its connection is closed.
    #[arg(long)]
    max_outbound_kib: Option<usize>,
    /// Plugin files larger than this are refused, in MiB.
    #[arg(long)]
    max_plugin_mib: Option<u64>,
    /// How often each peer link is pinged.
    #[arg(long, value_parser = humantime::parse_duration)]
    ping_interval: Option<Duration>,
    /// Ping intervals in a row with nothing received from a peer before it
    /// is declared dead: its calls in flight fail at once (`unavailable`,
    /// `processed: maybe`; idempotent ones fail over) and the link is
    /// redialled.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    missed_pings: Option<u32>,
    /// Attempts per forwarded call, the first and any hedge included.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: Option<u32>,
    /// Shortest hedge delay: an idempotent call forwarded to a peer that has
    /// not answered within the peer's usual latency (mean + 4 deviations)
    /// is also sent to the next host serving it, but never sooner than this.
    #[arg(long, value_parser = humantime::parse_duration)]
    hedge_min: Option<Duration>,
    /// Longest hedge delay (and the delay before the peer's latency is
    /// known); `0s` turns hedging off.
    #[arg(long, value_parser = humantime::parse_duration)]
    hedge_max: Option<Duration>,
}

/// The library's `trace_sample`.
fn default_trace_sample() -> f64 {
    HostOptions::new("", ([127, 0, 0, 1], 0).into(), "").trace_sample
}

/// A probability from 0 to 1.
fn sample_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("`{text}` is not a number from 0 to 1")),
    }
}

/// Shows in `--help` the default of each tuning flag of `host`: the
/// library's, in the flag's unit.
pub(super) fn show_defaults(host: clap::Command) -> clap::Command {
    let server = ServerConfig::new("", "");
    let runtime = RuntimeConfig::default();
    let reload = ReloadConfig::default();
    let peer = PeerConfig::default();
    let routing = RoutingConfig::default();
    [
        ("drain_timeout", duration(server.drain_timeout)),
        ("default_deadline", duration(server.default_deadline)),
        ("max_deadline", duration(server.max_deadline)),
        ("max_in_flight", server.max_in_flight.to_string()),
        ("memory_limit_mib", (runtime.memory_limit >> 20).to_string()),
        (
            "max_plugin_memory_mib",
            (runtime.memory_cap >> 20).to_string(),
        ),
        ("max_plugin_table_elements", runtime.table_cap.to_string()),
        (
            "compile_cache_max_mib",
            (runtime.compile_cache_max_bytes >> 20).to_string(),
        ),
        ("max_instances", runtime.max_instances.to_string()),
        (
            "max_wasm_stack_kib",
            (runtime.max_wasm_stack >> 10).to_string(),
        ),
        (
            "max_guest_output_kib",
            (runtime.max_guest_output >> 10).to_string(),
        ),
        (
            "max_component_handles",
            runtime.max_component_handles.to_string(),
        ),
        ("inline_budget", duration(runtime.inline_budget)),
        ("spare_instances", runtime.spare_instances.to_string()),
        ("max_frame_kib", (server.max_frame >> 10).to_string()),
        ("max_connections", server.max_connections.to_string()),
        ("hello_timeout", duration(server.hello_timeout)),
        ("frame_timeout", duration(server.frame_timeout)),
        ("idle_timeout", duration(server.idle_timeout)),
        ("max_cancels", server.max_cancels.to_string()),
        ("max_outbound_kib", (server.max_outbound >> 10).to_string()),
        ("max_plugin_mib", (reload.max_plugin_size >> 20).to_string()),
        ("ping_interval", duration(peer.ping_interval)),
        ("missed_pings", peer.missed_pings.to_string()),
        ("max_attempts", routing.retry.max_attempts.to_string()),
        ("hedge_min", duration(routing.hedge_min)),
        ("hedge_max", duration(routing.hedge_max)),
        ("trace_sample", default_trace_sample().to_string()),
    ]
    .into_iter()
    .fold(host, |host, (id, value)| show_default(host, id, &value))
}

/// The compile cache of a host given no `--compile-cache`: in the user's
/// cache folder, `$XDG_CACHE_HOME` or `~/.cache`.
fn default_compile_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("wasmrpc").join("compiled"))
}

impl HostArgs {
    /// Lays the flags given over `options`, one config struct at a time.
    fn apply(&self, options: &mut HostOptions) {
        self.apply_server(&mut options.server);
        self.apply_runtime(&mut options.runtime);
        self.apply_reload(&mut options.reload);
        self.apply_peer(&mut options.peer_config);
        self.apply_routing(&mut options.routing);
        self.apply_traces(options);
    }

    fn apply_traces(&self, options: &mut HostOptions) {
        options.trace_sample = self.trace_sample.unwrap_or(options.trace_sample);
        options.otlp = self.otlp_endpoint.as_ref().map(|endpoint| OtlpConfig {
            endpoint: endpoint.clone(),
            flush_interval: self.otlp_flush_interval,
        });
    }

    fn apply_server(&self, server: &mut ServerConfig) {
        server.drain_timeout = self.drain_timeout.unwrap_or(server.drain_timeout);
        server.default_deadline = self.default_deadline.unwrap_or(server.default_deadline);
        server.max_deadline = self.max_deadline.unwrap_or(server.max_deadline);
        server.max_in_flight = self.max_in_flight.unwrap_or(server.max_in_flight);
        server.max_frame = self.max_frame_kib.map_or(server.max_frame, |kib| kib << 10);
        server.max_connections = self.max_connections.unwrap_or(server.max_connections);
        server.hello_timeout = self.hello_timeout.unwrap_or(server.hello_timeout);
        server.frame_timeout = self.frame_timeout.unwrap_or(server.frame_timeout);
        server.idle_timeout = self.idle_timeout.unwrap_or(server.idle_timeout);
        server.max_cancels = self.max_cancels.unwrap_or(server.max_cancels);
        let max_outbound = self
            .max_outbound_kib
            .map_or(server.max_outbound, |kib| kib << 10);
        // Room for at least one reply of the largest frame: a smaller queue
        // would close the connection of a caller that reads promptly.
        server.max_outbound = max_outbound.max(server.max_frame);
    }

    fn apply_runtime(&self, runtime: &mut RuntimeConfig) {
        runtime.memory_limit = self
            .memory_limit_mib
            .map_or(runtime.memory_limit, |mib| mib << 20);
        runtime.memory_cap = self
            .max_plugin_memory_mib
            .map_or(runtime.memory_cap, |mib| mib << 20);
        runtime.table_cap = self.max_plugin_table_elements.unwrap_or(runtime.table_cap);
        runtime.compile_cache = if self.no_compile_cache {
            None
        } else {
            self.compile_cache.clone().or_else(default_compile_cache)
        };
        runtime.compile_cache_max_bytes = self
            .compile_cache_max_mib
            .map_or(runtime.compile_cache_max_bytes, |mib| mib << 20);
        runtime.max_instances = self.max_instances.unwrap_or(runtime.max_instances);
        runtime.max_wasm_stack = self
            .max_wasm_stack_kib
            .map_or(runtime.max_wasm_stack, |kib| kib << 10);
        runtime.max_guest_output = self
            .max_guest_output_kib
            .map_or(runtime.max_guest_output, |kib| kib << 10);
        runtime.max_component_handles = self
            .max_component_handles
            .unwrap_or(runtime.max_component_handles);
        runtime.inline_budget = self.inline_budget.unwrap_or(runtime.inline_budget);
        runtime.spare_instances = self.spare_instances.unwrap_or(runtime.spare_instances);
    }

    fn apply_reload(&self, reload: &mut ReloadConfig) {
        reload.max_plugin_size = self
            .max_plugin_mib
            .map_or(reload.max_plugin_size, |mib| mib << 20);
    }

    fn apply_peer(&self, peer: &mut PeerConfig) {
        peer.ping_interval = self.ping_interval.unwrap_or(peer.ping_interval);
        peer.missed_pings = self.missed_pings.unwrap_or(peer.missed_pings);
    }

    fn apply_routing(&self, routing: &mut RoutingConfig) {
        routing.retry.max_attempts = self.max_attempts.unwrap_or(routing.retry.max_attempts);
        routing.hedge_min = self.hedge_min.unwrap_or(routing.hedge_min);
        routing.hedge_max = self.hedge_max.unwrap_or(routing.hedge_max);
    }
}

/// Serves the region until SIGINT or SIGTERM, then drains.
pub(super) async fn run(args: HostArgs) -> anyhow::Result<ExitCode> {
    let mut peers = Vec::new();
    let mut routes = Vec::new();
    let mut keys = Keys::default();
    let mut topology_file = None;
    let mut tls = None;
    let mut admin = args.admin;
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
            keys = Keys::new(topology.key_rules()?);
            topology_file = Some(args.config.clone());
            tls = topology.tls_files(&args.region, args.tls_cert.clone(), args.tls_key.clone());
            admin = admin.or_else(|| region.admin_of(&listen.to_string()));
            let plugins = args
                .plugins
                .clone()
                .unwrap_or_else(|| topology.plugin_dir(region));
            (listen, plugins)
        }
        Err(error) => match (args.listen, args.plugins.clone()) {
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
    options.keys = keys;
    options.topology_file = topology_file;
    if tls.is_none() && args.tls_cert.is_some() {
        bail!(
            "--tls-cert needs the cluster CA and trust domain: add a `[tls]` table to `{}`",
            args.config.display()
        );
    }
    options.tls = tls;
    options.access = args.access.clone();
    options.insecure = args.insecure;
    options.admin = admin;
    args.apply(&mut options);
    let mut signals = Signals::new()?;
    let host = Host::start(options).await?;
    let (functions, plugin_count) = host.loaded();
    println!(
        "wasmrpc host of region `{}` listening on {} ({functions} functions from {plugin_count} plugins)",
        args.region,
        host.local_addr()
    );
    if let Some(addr) = host.admin_addr() {
        println!("admin listener on http://{addr}/ (metrics at /metrics)");
    }

    signals.next().await;
    tracing::info!("shutting down; send the signal again to exit at once");
    host.shutdown();
    let drained = tokio::select! {
        drained = host.wait() => drained,
        () = signals.next() => {
            tracing::warn!("second signal: exiting without draining");
            return Ok(ExitCode::from(130));
        }
    };
    if !drained {
        tracing::warn!("exiting with calls still in flight after the drain timeout");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;
    use crate::cli::{Cli, Command, command};

    /// Defaults of a host, as `run` starts from them.
    /// The library's defaults, but for the compile cache: the command's
    /// is in the user's cache folder, where the library keeps none.
    fn defaults() -> HostOptions {
        let mut options = HostOptions::new("r", "127.0.0.1:7101".parse().unwrap(), "plugins");
        options.runtime.compile_cache = default_compile_cache();
        options
    }

    /// The options of `wasmrpc host --region r <flags>`, or clap's error.
    fn parse(flags: &[&str]) -> Result<HostOptions, clap::Error> {
        let argv = ["wasmrpc", "host", "--region", "r"].iter().chain(flags);
        let matches = command().try_get_matches_from(argv)?;
        let Command::Host(args) = Cli::from_arg_matches(&matches)?.command else {
            unreachable!("the command line was `host`");
        };
        let mut options = defaults();
        args.apply(&mut options);
        Ok(options)
    }

    /// Each flag of `host` with the default its help shows, if any.
    fn shown_defaults() -> Vec<(String, Option<String>)> {
        let mut command = command();
        let host = command.find_subcommand_mut("host").unwrap();
        host.get_arguments()
            .filter(|arg| arg.get_long() != Some("help"))
            .map(|arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                let shown = match arg.get_default_values() {
                    [value] => Some(value.to_string_lossy().into_owned()),
                    _ => help
                        .rsplit_once(" [default: ")
                        .map(|(_, value)| value.trim_end_matches(']').to_owned()),
                };
                (format!("--{}", arg.get_long().unwrap()), shown)
            })
            .collect()
    }

    fn debug(options: &HostOptions) -> String {
        format!("{options:?}")
    }

    #[test]
    fn every_tuning_flag_shows_a_default_and_the_others_none() {
        command().debug_assert();
        let without: Vec<String> = shown_defaults()
            .into_iter()
            .filter(|(_, shown)| shown.is_none())
            .map(|(flag, _)| flag)
            .collect();
        assert_eq!(
            without,
            [
                "--region",
                "--listen",
                "--bind",
                "--plugins",
                "--tls-cert",
                "--tls-key",
                "--access",
                "--insecure",
                "--admin",
                "--otlp-endpoint",
                "--otlp-flush-interval",
                "--compile-cache",
                "--no-compile-cache"
            ]
        );
    }

    #[test]
    fn no_flag_given_leaves_the_library_defaults() {
        assert_eq!(debug(&parse(&[]).unwrap()), debug(&defaults()));
    }

    #[test]
    fn giving_each_flag_the_default_help_shows_changes_nothing() {
        let mut flags = Vec::new();
        for (flag, shown) in shown_defaults() {
            if let Some(shown) = shown
                && flag != "--config"
            {
                flags.extend([flag, shown]);
            }
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        assert_eq!(flags.len(), 2 * 28, "{flags:?}");
        assert_eq!(debug(&parse(&flags).unwrap()), debug(&defaults()));
    }

    #[test]
    fn every_tuning_flag_given_changes_the_options() {
        for (flag, shown) in shown_defaults() {
            let Some(shown) = shown else { continue };
            if flag == "--config" {
                continue;
            }
            let value = if flag == "--trace-sample" {
                "0.5"
            } else if shown.parse::<u64>().is_ok() {
                "7"
            } else {
                "7ms"
            };
            let options = parse(&[&flag, value]).unwrap();
            assert_ne!(debug(&options), debug(&defaults()), "{flag} {value}");
        }
    }

    #[test]
    fn the_compile_cache_is_the_users_unless_given_or_turned_off() {
        let given = parse(&["--compile-cache", "/var/cache/w"]).unwrap();
        assert_eq!(
            given.runtime.compile_cache.as_deref(),
            Some(std::path::Path::new("/var/cache/w"))
        );
        let off = parse(&["--compile-cache", "/var/cache/w", "--no-compile-cache"]).unwrap();
        assert_eq!(off.runtime.compile_cache, None);
        let mib = parse(&["--compile-cache-max-mib", "10"]).unwrap();
        assert_eq!(mib.runtime.compile_cache_max_bytes, 10 << 20);
        let caps = parse(&[
            "--max-plugin-memory-mib",
            "300",
            "--max-plugin-table-elements",
            "9",
        ])
        .unwrap();
        assert_eq!(
            (caps.runtime.memory_cap, caps.runtime.table_cap),
            (300 << 20, 9)
        );
    }

    #[test]
    fn the_reply_queue_holds_at_least_one_frame() {
        let options = parse(&["--max-frame-kib", "100000"]).unwrap();
        assert_eq!(options.server.max_frame, 100_000 << 10);
        assert_eq!(options.server.max_outbound, 100_000 << 10);
        let options = parse(&["--max-outbound-kib", "1"]).unwrap();
        assert_eq!(options.server.max_outbound, options.server.max_frame);
    }

    #[test]
    fn flags_keep_their_units_and_bounds() {
        let options = parse(&[
            "--memory-limit-mib",
            "3",
            "--max-wasm-stack-kib",
            "3",
            "--max-plugin-mib",
            "3",
            "--idle-timeout",
            "2m",
        ])
        .unwrap();
        assert_eq!(options.runtime.memory_limit, 3 << 20);
        assert_eq!(options.runtime.max_wasm_stack, 3 << 10);
        assert_eq!(options.reload.max_plugin_size, 3 << 20);
        assert_eq!(options.server.idle_timeout, Duration::from_secs(120));
        for flag in ["--missed-pings", "--max-attempts"] {
            let error = parse(&[flag, "0"]).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        }
    }
}
