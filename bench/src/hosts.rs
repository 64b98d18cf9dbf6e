//! wasmrpc as the system under test: real `wasmrpc host` processes (the
//! release binary), with plugin folders and a `regions.toml` in a temporary
//! directory, reached through [`wasmrpc::Client`].

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use wasmrpc::Client;

/// How long a host may take to start (it compiles its plugins first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A temporary directory of plugin folders, configs and host logs.
pub struct Lab {
    dir: tempfile::TempDir,
    bin: PathBuf,
    guests: PathBuf,
}

impl Lab {
    /// A lab running the host binary `bin` with plugins from `guests`
    /// (the directory holding `<plugin>.wasm`).
    pub fn new(bin: &Path, guests: &Path) -> anyhow::Result<Lab> {
        Ok(Lab {
            dir: tempfile::Builder::new()
                .prefix("wasmrpc-bench-")
                .tempdir()?,
            bin: bin.to_owned(),
            guests: guests.to_owned(),
        })
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
        let addr = free_port()?;
        let plugins = plugins.to_str().context("non-UTF-8 plugin path")?;
        let config = self.dir.path().join("no-such-regions.toml");
        let config = config.to_str().context("non-UTF-8 temporary path")?;
        let args = [
            "--listen",
            &addr.to_string(),
            "--plugins",
            plugins,
            "--config",
            config,
        ];
        self.start(region, addr, &args).await
    }

    /// Writes `regions.toml` with one host per region, each serving the
    /// plugin folder `plugins/<region>` (create them first with
    /// [`Lab::plugin_dir`]), and starts the hosts in order.
    pub async fn start_regions(&self, regions: &[&str]) -> anyhow::Result<Vec<Host>> {
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
        let config = self.dir.path().join("regions.toml");
        std::fs::write(&config, toml)?;
        let config = config.to_str().context("non-UTF-8 temporary path")?;
        let mut hosts = Vec::new();
        for (region, addr) in regions.iter().zip(addrs) {
            hosts.push(self.start(region, addr, &["--config", config]).await?);
        }
        Ok(hosts)
    }

    async fn start(&self, region: &str, addr: SocketAddr, args: &[&str]) -> anyhow::Result<Host> {
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
        let mut host = Host { child, addr, log };
        let began = Instant::now();
        loop {
            if Client::connect(addr).await.is_ok() {
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

    /// A new connection to the host.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(self.addr).await?)
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
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}
