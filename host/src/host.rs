//! A running host: runtime, plugins, router and server wired together.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use ciborium::Value;
use tokio::sync::watch;

use crate::auth::AccessFile;
use crate::net::{Security, ServerConfig, serve};
use crate::observe::load::sample_cpu;
use crate::observe::{
    CallMeter, HostState, Metrics, OtlpConfig, SpanSink, Tracing, bind_admin, serve_admin,
};
use crate::plugins::{PluginSet, Registry, ReloadConfig, Reloader};
use crate::protocol::{CallError, FunctionInfo};
use crate::region::keys::Keys;
use crate::region::{
    Identity, Local, PeerConfig, Peers, Placement, Router, RoutingConfig, watch_topology,
};
use crate::runtime::{LocalCall, Runtime, RuntimeConfig};
use crate::service::{CallRequest, Service};
use crate::tls::{Tls, TlsFiles};
use crate::watch::watch_files;

/// Everything needed to start a host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The region this host serves.
    pub region: String,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The plugin folder.
    pub plugins: PathBuf,
    /// Server limits; `region` and `host_id` are filled in by [`Host::start`].
    pub server: ServerConfig,
    pub runtime: RuntimeConfig,
    /// Hop limit, failover, retry budget and hedging.
    pub routing: RoutingConfig,
    /// The other hosts: `(region, address)`, one link each.
    pub peers: Vec<(String, String)>,
    /// `[routes]` of `regions.toml`: (pattern, preferred regions).
    pub routes: Vec<(String, Vec<String>)>,
    /// `[keys]` of `regions.toml`: calls routed by a key taken from them.
    pub keys: Keys,
    pub peer_config: PeerConfig,
    pub reload: ReloadConfig,
    /// The `regions.toml` to follow: peers and routes change with it.
    pub topology_file: Option<PathBuf>,
    /// TLS for the listener and the peer links; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// The access file: the tokens callers must present, and what each may
    /// call. `None`: every caller may call every function.
    pub access: Option<PathBuf>,
    /// Serve on an address other than loopback without TLS or without an
    /// access file (logged loudly): anyone who reaches it can call every
    /// function, and without TLS read every call.
    pub insecure: bool,
    /// The admin listener (metrics, health, status, dashboard); `None`: no
    /// admin listener, and no metrics kept.
    pub admin: Option<SocketAddr>,
    /// Span export; `None`: trace contexts are passed on, no span recorded.
    pub otlp: Option<OtlpConfig>,
    /// The probability that a call starting a new trace is sampled (its
    /// spans recorded, here and by the hosts after it).
    pub trace_sample: f64,
}

impl HostOptions {
    /// Defaults for a host of `region` on `listen` serving `plugins`.
    pub fn new(region: impl Into<String>, listen: SocketAddr, plugins: impl Into<PathBuf>) -> Self {
        let region = region.into();
        HostOptions {
            server: ServerConfig::new(region.clone(), listen.to_string()),
            region,
            listen,
            plugins: plugins.into(),
            runtime: RuntimeConfig::default(),
            routing: RoutingConfig::default(),
            peers: Vec::new(),
            routes: Vec::new(),
            keys: Keys::default(),
            peer_config: PeerConfig::default(),
            reload: ReloadConfig::default(),
            topology_file: None,
            tls: None,
            access: None,
            insecure: false,
            admin: None,
            otlp: None,
            trace_sample: 1.0,
        }
    }
}

/// The plugins this host serves, run by its runtime: what the router calls
/// local.
struct Plugins {
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
}

impl Local for Plugins {
    fn run(
        &self,
        request: CallRequest,
        nested: Arc<dyn Service>,
        region: Arc<str>,
        meter: &mut CallMeter,
    ) -> Placement<impl Future<Output = Result<Value, CallError>> + Send> {
        match self.registry.snapshot().lookup(&request.function) {
            Some((loaded, function)) => Placement::Here(self.runtime.call(LocalCall {
                plugin: loaded.plugin.clone(),
                function,
                request,
                router: nested,
                region,
                calls: loaded.settings.calls.clone(),
                reuse: loaded.settings.reuse_instances,
                meter: {
                    if let Some(function) = loaded.meters.functions.get(function) {
                        meter.local(function);
                    }
                    loaded.meters.plugin.clone()
                },
            })),
            None => Placement::Elsewhere(request),
        }
    }

    fn catalog(&self, region: &str) -> Vec<FunctionInfo> {
        self.registry.snapshot().function_infos(region)
    }

    fn serves(&self, function: &str) -> bool {
        self.registry.snapshot().lookup(function).is_some()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.registry.changes()
    }
}

/// A host that is serving. Dropping it does not stop it; call [`Host::shutdown`].
pub struct Host {
    addr: SocketAddr,
    admin: Option<(SocketAddr, AbortOnDropHandle<()>)>,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<bool>,
    functions: usize,
    plugins: usize,
    spans: Option<Arc<SpanSink>>,
}

impl Host {
    /// Loads the plugins, binds the listener and starts serving.
    ///
    /// # Errors
    ///
    /// When the runtime cannot be built, the plugin folder cannot be read, or
    /// the address cannot be bound.
    pub async fn start(mut options: HostOptions) -> anyhow::Result<Host> {
        let tls = secure_transport(&options)?;
        if options.access.is_none() && !options.listen.ip().is_loopback() {
            if !options.insecure {
                anyhow::bail!(
                    "refusing to serve `{}`, which is not a loopback address, without an access \
                     file: give --access FILE (who may call what), or pass --insecure to let \
                     every caller call every function",
                    options.listen
                );
            }
            tracing::warn!(
                "INSECURE: no access file: every caller that reaches `{}` may call every function",
                options.listen
            );
        }
        let runtime = Arc::new(
            Runtime::new(options.runtime.clone()).context("cannot start the wasm runtime")?,
        );
        let registry = Arc::new(Registry::new(PluginSet::default()));
        let shutdown = CancellationToken::new();
        // The admin listener comes first: it answers `/healthz` (and
        // `/readyz`: not yet) while the plugins load.
        let metrics = if options.admin.is_some() {
            Metrics::on()
        } else {
            Metrics::off()
        };
        let state = HostState::new(
            &options.region,
            &options.server.host_id,
            registry.clone(),
            shutdown.clone(),
        );
        let admin = match options.admin {
            Some(addr) => {
                let listener = bind_admin(addr).await?;
                let addr = listener.local_addr()?;
                let task = tokio::spawn(serve_admin(listener, metrics.clone(), state.clone()));
                tracing::info!(%addr, "admin listener: /metrics /healthz /readyz /status, dashboard at /");
                Some((addr, AbortOnDropHandle::new(task)))
            }
            None => None,
        };
        let mut reloader = Reloader::new(
            options.plugins.clone(),
            runtime.clone(),
            registry.clone(),
            options.reload.clone(),
        )
        .with_metrics(metrics.clone());
        reloader.load_all().await?;
        let loaded = registry.snapshot();
        let (functions, plugin_count) = (loaded.len(), loaded.plugins().count());
        drop(loaded);
        if let Some(tls) = &tls {
            let files = tls.files().paths().map(Path::to_path_buf).to_vec();
            let reloaded = tls.clone();
            watch_files(files, shutdown.clone(), move || match reloaded.reload() {
                Ok(()) => {
                    tracing::info!("TLS certificate, key or CA changed: new connections use them")
                }
                Err(error) => tracing::error!("{error}; keeping the previous TLS material"),
            })
            .context("cannot watch the TLS files")?;
        }
        options.peer_config.tls = tls.clone();
        let mut regions: BTreeSet<String> = options
            .peers
            .iter()
            .map(|(region, _)| region.clone())
            .collect();
        regions.insert(options.region.clone());
        let access =
            match &options.access {
                Some(path) => {
                    let access = Arc::new(AccessFile::load(path)?);
                    let reloaded = access.clone();
                    watch_files(vec![path.clone()], shutdown.clone(), move || match reloaded
                        .reload()
                    {
                        Ok(tokens) => tracing::info!(
                            tokens,
                            "`{}` changed: new calls follow it, revoked tokens' connections close",
                            reloaded.path().display()
                        ),
                        Err(error) => tracing::error!("{error}; keeping the previous access file"),
                    })
                    .context("cannot watch the access file")?;
                    Some(access)
                }
                None => None,
            };
        let security = Security {
            tls,
            regions: Arc::new(RwLock::new(regions)),
            access,
        };
        reloader.watch(shutdown.clone()).with_context(|| {
            format!("cannot watch plugin folder `{}`", options.plugins.display())
        })?;
        // The peer links outlive the drain: calls forwarded before it began
        // still need them. They close once the server has drained.
        let links = CancellationToken::new();
        // The load this host reports to its peers in `pong`, until its
        // connections are gone.
        let load = metrics.load().clone();
        load.set_instances_max(u64::from(options.runtime.max_instances));
        tokio::spawn(sample_cpu(load, links.clone()));
        let peers = Peers::start(
            &options.region,
            &options.server.host_id,
            options.peers.clone(),
            options.peer_config.clone(),
            options.server.max_frame,
            links.clone(),
        );
        // Bound before the router is made, so that a host on port 0 knows
        // its address (its id in spans); it accepts once `serve` runs.
        let listener = TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("failed to bind `{}`", options.listen))?;
        let addr = listener.local_addr()?;
        if options.listen.port() == 0 {
            options.server.host_id = addr.to_string();
        }
        let spans = match &options.otlp {
            Some(otlp) => {
                let sink = SpanSink::start(
                    otlp,
                    &options.region,
                    &options.server.host_id,
                    tokio::runtime::Handle::current(),
                )?;
                tracing::info!(endpoint = %otlp.endpoint, sample = options.trace_sample, "exporting spans over OTLP");
                Some(Arc::new(sink))
            }
            None => None,
        };
        let traces = Tracing::new(spans.clone(), options.trace_sample, &options.region);
        let router = Arc::new(
            Router::new(
                &options.region,
                Plugins { runtime, registry },
                peers.clone(),
                options.routes.clone(),
                options.routing.clone(),
            )
            .with_keys(&options.server.host_id, options.keys.clone())
            .with_metrics(metrics.clone())
            .with_tracing(traces),
        );
        state.wire(peers, {
            let router = router.clone();
            move || (router.routes(), router.keys())
        });
        if let Some(path) = &options.topology_file {
            let me = Identity {
                region: options.region.clone(),
                addr: options.server.host_id.clone(),
            };
            watch_topology(
                path.clone(),
                me,
                router.clone(),
                security.regions.clone(),
                shutdown.clone(),
            )
            .with_context(|| format!("cannot watch `{}`", path.display()))?;
        }
        let router: Arc<dyn Service> = router;

        let mut server = options.server.clone();
        server.region = options.region.clone();
        server.metrics = metrics;
        state.set_listening(&server.host_id);
        let served = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let drained = serve(listener, router, server, security, shutdown).await;
                links.cancel();
                drained
            }
        });
        Ok(Host {
            addr,
            admin,
            shutdown,
            served,
            functions,
            plugins: plugin_count,
            spans,
        })
    }

    /// The address the host listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the admin listener, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// Functions and plugins loaded at start.
    pub fn loaded(&self) -> (usize, usize) {
        (self.functions, self.plugins)
    }

    /// Starts a graceful shutdown (stop accepting, drain calls in flight).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the server has stopped, then exports the spans still
    /// queued; `true` if it drained in time.
    pub async fn wait(self) -> bool {
        let drained = self.served.await.unwrap_or(false);
        if let Some(spans) = self.spans {
            // The batch processor's shutdown blocks until its last export,
            // which runs on this runtime.
            let _ = tokio::task::spawn_blocking(move || spans.shutdown()).await;
        }
        drained
    }
}

/// Loads the TLS material, or checks that plaintext is allowed: on a
/// loopback address, or when asked for with `insecure` (and then logged
/// loudly).
fn secure_transport(options: &HostOptions) -> anyhow::Result<Option<Arc<Tls>>> {
    let Some(files) = &options.tls else {
        if options.listen.ip().is_loopback() {
            return Ok(None);
        }
        if !options.insecure {
            anyhow::bail!(
                "refusing to serve plaintext on `{}`, which is not a loopback address: \
                 give the cluster CA and this host's certificate (`[tls]` in regions.toml, \
                 or --tls-cert and --tls-key), or pass --insecure to accept the risk",
                options.listen
            );
        }
        tracing::warn!(
            "INSECURE: serving plaintext on `{}`: anyone who can reach it can read and alter \
             every call and pose as any caller or peer",
            options.listen
        );
        return Ok(None);
    };
    Ok(Some(Arc::new(Tls::load(files.clone(), &options.region)?)))
}
