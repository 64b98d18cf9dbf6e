//! wasmrpc as the system under test: real `wasmrpc host` processes (the
//! release binary), with plugin folders, topology files, certificates and an
//! access file in a temporary directory, reached through [`wasmrpc::Client`].

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use wasmrpc::certs::{DevCa, Leaf};
use wasmrpc::net::ClientTls;
use wasmrpc::pattern::Pattern;
use wasmrpc::protocol::Secret;
use wasmrpc::{Client, ClientOptions};

/// How long a host may take to start (it compiles its plugins first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The SPIFFE trust domain of the lab's host certificates.
const TRUST_DOMAIN: &str = "wasmrpc.bench";

/// The functions the access file's one token may call.
const TOKEN_FUNCTIONS: &str = "math.*";

/// How the hosts of a topology secure the connections they accept and make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plaintext and no tokens, as hosts allow on loopback.
    Plaintext,
    /// TLS 1.3 on every connection, callers' and peers': a `[tls]` table in
    /// the topology file and a certificate per region from the lab's CA.
    Tls,
    /// TLS, and an access file (`--access`) whose one token callers present.
    TlsWithToken,
}

/// A temporary directory of plugin folders, configs, certificates and host
/// logs.
pub struct Lab {
    dir: tempfile::TempDir,
    bin: PathBuf,
    guests: PathBuf,
    /// The CA of every TLS host of the lab (`certs/ca.crt`), issuing each
    /// region's certificate into `certs/` when a host of it first starts.
    ca: DevCa,
    /// What callers of TLS hosts trust: the CA.
    client_tls: ClientTls,
    /// The token granted [`TOKEN_FUNCTIONS`] by `access.toml`.
    token: String,
}

impl Lab {
    /// A lab running the host binary `bin` with plugins from `guests`
    /// (the directory holding `<plugin>.wasm`).
    pub fn new(bin: &Path, guests: &Path) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("wasmrpc-bench-")
            .tempdir()?;
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 60 * 60);
        // Valid for longer than the hosts' certificates (30 days from when
        // each is issued), which may not outlive it.
        let ca = DevCa::new("wasmrpc bench CA", now - day, now + 365 * day)?;
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs)?;
        std::fs::write(certs.join("ca.crt"), ca.cert_pem())?;
        let client_tls = ClientTls::from_ca_pem(ca.cert_pem().as_bytes(), "the bench CA")?;
        let token = wasmrpc::auth::new_token();
        let functions = [Pattern::parse(TOKEN_FUNCTIONS)?];
        let entry = wasmrpc::auth::access::entry("bench", &token, &functions);
        std::fs::write(dir.path().join("access.toml"), entry)?;
        Ok(Lab {
            dir,
            bin: bin.to_owned(),
            guests: guests.to_owned(),
            ca,
            client_tls,
            token,
        })
    }

    /// How a caller connects to a host secured as `security` says: trusting
    /// the lab's CA, presenting the access file's token.
    pub fn client_options(&self, security: Security) -> ClientOptions {
        let tls = match security {
            Security::Plaintext => None,
            Security::Tls | Security::TlsWithToken => Some(self.client_tls.clone()),
        };
        let token = match security {
            Security::TlsWithToken => Some(Secret::new(self.token.clone())),
            Security::Plaintext | Security::Tls => None,
        };
        ClientOptions {
            tls,
            token,
            ..ClientOptions::default()
        }
    }

    /// Writes `certs/<region>.crt` and `.key`, a host certificate of
    /// `region` for loopback, unless they exist (a running host watches
    /// them).
    fn region_cert(&self, region: &str) -> anyhow::Result<()> {
        let certs = self.dir.path().join("certs");
        let (cert, key) = (
            certs.join(format!("{region}.crt")),
            certs.join(format!("{region}.key")),
        );
        if cert.exists() {
            return Ok(());
        }
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let issued = self
            .ca
            .issue(&Leaf::host(TRUST_DOMAIN, region, &loopback, 30))?;
        std::fs::write(key, issued.key_pem)?;
        std::fs::write(cert, issued.cert_pem)?;
        Ok(())
    }

    /// A path inside the lab's temporary folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Creates the plugin folder `plugins/<name>` holding `plugins` and the
    /// `sidecars` given as (file name, contents).
    pub fn plugin_dir(
        &self,
        name: &str,
        plugins: &[&str],
        sidecars: &[(&str, &str)],
    ) -> anyhow::Result<PathBuf> {
        let dir = self.dir.path().join("plugins").join(name);
        std::fs::create_dir_all(&dir)?;
        for plugin in plugins {
            let file = format!("{plugin}.wasm");
            std::fs::copy(self.guests.join(&file), dir.join(&file))
                .with_context(|| format!("cannot copy {file} from {}", self.guests.display()))?;
        }
        for (file, text) in sidecars {
            std::fs::write(dir.join(file), text)?;
        }
        Ok(dir)
    }

    /// Starts one host serving region `region` alone from `plugins`.
    pub async fn start_alone(&self, region: &str, plugins: &Path) -> anyhow::Result<Host> {
        self.start_alone_with(region, plugins, &[]).await
    }

    /// [`Lab::start_alone`], the host also given `extra` arguments.
    pub async fn start_alone_with(
        &self,
        region: &str,
        plugins: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Host> {
        let addr = free_port()?;
        let plugins = plugins.to_str().context("non-UTF-8 plugin path")?;
        let config = self.dir.path().join("no-such-regions.toml");
        let config = config.to_str().context("non-UTF-8 temporary path")?;
        let addr_text = addr.to_string();
        let mut args = vec![
            "--listen",
            &addr_text,
            "--plugins",
            plugins,
            "--config",
            config,
        ];
        args.extend(extra);
        let options = self.client_options(Security::Plaintext);
        self.start(region, addr, &args, options).await
    }

    /// Writes the topology file `file` with one host per region, each
    /// serving the plugin folder `plugins/<region>` (create them first with
    /// [`Lab::plugin_dir`]) and secured as `security` says, and starts the
    /// hosts in order. Region names must differ between the files of a lab:
    /// a region's certificate is `certs/<region>.crt`.
    pub async fn start_regions(
        &self,
        file: &str,
        regions: &[&str],
        security: Security,
    ) -> anyhow::Result<Vec<Host>> {
        self.start_regions_with(file, regions, security, &[]).await
    }

    /// [`Lab::start_regions`], each host also given `extra` arguments.
    pub async fn start_regions_with(
        &self,
        file: &str,
        regions: &[&str],
        security: Security,
        extra: &[&str],
    ) -> anyhow::Result<Vec<Host>> {
        self.start_topology(file, regions, security, extra, "")
            .await
    }

    /// [`Lab::start_regions`] (plaintext), with `tables` (TOML text, a
    /// `[keys]` table, say) added to the file.
    pub async fn start_regions_with_tables(
        &self,
        file: &str,
        regions: &[&str],
        tables: &str,
    ) -> anyhow::Result<Vec<Host>> {
        self.start_topology(file, regions, Security::Plaintext, &[], tables)
            .await
    }

    async fn start_topology(
        &self,
        file: &str,
        regions: &[&str],
        security: Security,
        extra: &[&str],
        tables: &str,
    ) -> anyhow::Result<Vec<Host>> {
        let addrs = regions
            .iter()
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut toml = String::new();
        for (region, addr) in regions.iter().zip(&addrs) {
            writeln!(
                toml,
                "[[region]]\nname = \"{region}\"\nhosts = [\"{addr}\"]\nplugins = \"plugins/{region}\"\n"
            )?;
        }
        if security != Security::Plaintext {
            writeln!(
                toml,
                "[tls]\nca = \"certs/ca.crt\"\ntrust_domain = \"{TRUST_DOMAIN}\"\ncerts = \"certs\""
            )?;
            for region in regions {
                self.region_cert(region)?;
            }
        }
        toml.push_str(tables);
        let config = self.dir.path().join(file);
        std::fs::write(&config, toml)?;
        let config = config.to_str().context("non-UTF-8 temporary path")?;
        let access = self.dir.path().join("access.toml");
        let access = access.to_str().context("non-UTF-8 temporary path")?;
        let mut args = vec!["--config", config];
        if security == Security::TlsWithToken {
            args.extend(["--access", access]);
        }
        args.extend(extra);
        let mut hosts = Vec::new();
        for (region, addr) in regions.iter().zip(addrs) {
            let options = self.client_options(security);
            hosts.push(self.start(region, addr, &args, options).await?);
        }
        Ok(hosts)
    }

    /// Starts a host and waits until it answers `hello` from a caller
    /// connecting with `options`, which the host keeps for
    /// [`Host::connect`].
    async fn start(
        &self,
        region: &str,
        addr: SocketAddr,
        args: &[&str],
        options: ClientOptions,
    ) -> anyhow::Result<Host> {
        let log = self.dir.path().join(format!("host-{region}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&self.bin)
            .args(["host", "--region", region])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let mut host = Host {
            child,
            addr,
            log,
            options,
        };
        let began = Instant::now();
        loop {
            if host.connect().await.is_ok() {
                return Ok(host);
            }
            if let Some(status) = host.child.try_wait()? {
                bail!("host `{region}` exited ({status}):\n{}", host.log_tail());
            }
            if began.elapsed() > START_TIMEOUT {
                bail!(
                    "host `{region}` did not start listening:\n{}",
                    host.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A running `wasmrpc host`, killed when dropped.
pub struct Host {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// How its callers connect: TLS settings and token, as it requires.
    options: ClientOptions,
}

/// Whether a host serves a function.
pub enum Availability {
    Served,
    /// The host refused the function's plugin; the log line saying why.
    Refused(String),
}

impl Host {
    /// The host's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The address the host listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How a caller connects to the host: with TLS and a token when the
    /// host requires them.
    pub fn client_options(&self) -> &ClientOptions {
        &self.options
    }

    /// A new connection to the host.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect_with(self.addr, self.options.clone()).await?)
    }

    /// Waits until the host's catalog lists `function`, or its log shows
    /// that it refused the function's plugin.
    pub async fn wait_for(&self, function: &str) -> anyhow::Result<Availability> {
        let plugin = function.split('.').next().unwrap_or(function);
        let refused = format!("{plugin}.wasm");
        let client = self.connect().await?;
        let began = Instant::now();
        loop {
            let catalog = client.list().await?;
            if catalog.iter().any(|f| f.name == function) {
                return Ok(Availability::Served);
            }
            let log = self.log();
            if let Some(line) = log
                .lines()
                .find(|line| line.contains("refused") && line.contains(&refused))
            {
                return Ok(Availability::Refused(line.to_owned()));
            }
            if began.elapsed() > START_TIMEOUT {
                bail!(
                    "the host at {} never listed `{function}`:\n{}",
                    self.addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the host serves `function`, failing if it refused it.
    pub async fn require(&self, function: &str) -> anyhow::Result<()> {
        match self.wait_for(function).await? {
            Availability::Served => Ok(()),
            Availability::Refused(why) => bail!("the host refused `{function}`: {why}"),
        }
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The host's resident set size (`VmRSS`), in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss(self.child.id().context("the host has exited")?)
    }

    /// Samples the host's RSS every 20 ms until [`RssSampler::peak`].
    pub fn sample_rss(&self) -> anyhow::Result<RssSampler> {
        let pid = self.child.id().context("the host has exited")?;
        let peak = Arc::new(AtomicU64::new(rss(pid)?));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(now) = rss(pid) {
                        peak.fetch_max(now, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Ok(RssSampler { peak, stop, task })
    }
}

/// A running RSS sampler of one process.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Stops sampling; the largest RSS seen, in bytes.
    pub async fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// `VmRSS` of process `pid`, in bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    proc_bytes(&status, "VmRSS:").context("no VmRSS in /proc/PID/status")
}

/// The figure of the line starting with `key` (`VmRSS:`, `Pss:`) in a
/// `/proc/PID/status` or `smaps_rollup` text, given in kB, in bytes.
pub fn proc_bytes(text: &str, key: &str) -> Option<u64> {
    let kib = text
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}
