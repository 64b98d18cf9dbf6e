//! `wasmrpc host` child processes: one builder starts them all, standalone
//! or as a host of a [`Cluster`](crate::Cluster), and a handle reads their
//! log, signals them, and looks at them through `/proc`.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use wasmrpc::Client;

use crate::{eventually, eventually_async, plugin_dir, wasmrpc_bin};

/// How long a host may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a host's plugins come from.
enum Plugins {
    /// The region's folder in `regions.toml`.
    FromConfig,
    /// A temporary folder holding copies of these example guests.
    Copies(Vec<String>),
    /// This folder.
    Folder(PathBuf),
}

/// A `wasmrpc host` to start, made by [`HostProcess::builder`] (a host of
/// region `test` serving alone on a free loopback port) or
/// [`Cluster::host`](crate::Cluster::host) (a host of a topology).
#[must_use]
pub struct HostBuilder {
    region: String,
    listen: String,
    bind: Option<String>,
    config: PathBuf,
    plugins: Plugins,
    args: Vec<String>,
    log_filter: String,
    netns: Option<String>,
    cwd: Option<PathBuf>,
    admin: Option<String>,
}

impl HostBuilder {
    /// A host of `region` listening on `listen`, reading `config`, with
    /// no plugins but the config's, logging at `info`.
    pub(crate) fn new(region: &str, listen: SocketAddr, config: &Path) -> HostBuilder {
        HostBuilder {
            region: region.to_owned(),
            listen: listen.to_string(),
            bind: None,
            config: config.to_owned(),
            plugins: Plugins::FromConfig,
            args: Vec::new(),
            log_filter: "info".to_owned(),
            netns: None,
            cwd: None,
            admin: None,
        }
    }

    /// Opens an admin listener on a free loopback port (see
    /// [`HostProcess::admin_get`]).
    pub fn admin(self) -> HostBuilder {
        self.admin_on("127.0.0.1:0".parse().expect("address"))
    }

    /// Opens the admin listener on `addr` (port 0: a free one).
    pub fn admin_on(mut self, addr: SocketAddr) -> HostBuilder {
        self.admin = Some(addr.to_string());
        self
    }

    /// Opens an admin listener on a free loopback port unless one is set.
    pub fn with_admin(self) -> HostBuilder {
        if self.admin.is_some() {
            self
        } else {
            self.admin()
        }
    }

    /// Listens on `addr` instead.
    pub fn listen(mut self, addr: SocketAddr) -> HostBuilder {
        self.listen = addr.to_string();
        self
    }

    /// Serves `region` instead (an impostor at another region's address).
    pub fn region(mut self, region: &str) -> HostBuilder {
        self.region = region.to_owned();
        self
    }

    /// Binds `addr` instead of the address it is listed under (`--bind`).
    pub(crate) fn bind(mut self, addr: SocketAddr) -> HostBuilder {
        self.bind = Some(addr.to_string());
        self
    }

    /// Serves copies of the named example guests from a temporary folder
    /// (see [`HostProcess::plugins`]).
    pub fn plugins(mut self, guests: &[&str]) -> HostBuilder {
        self.plugins = Plugins::Copies(guests.iter().map(|&g| g.to_owned()).collect());
        self
    }

    /// Serves the plugins in `folder`.
    pub fn plugin_dir(mut self, folder: &Path) -> HostBuilder {
        self.plugins = Plugins::Folder(folder.to_owned());
        self
    }

    /// Adds `wasmrpc host` arguments (limits, timeouts).
    pub fn args(mut self, args: &[&str]) -> HostBuilder {
        self.args.extend(args.iter().map(|&a| a.to_owned()));
        self
    }

    /// The host's `RUST_LOG` filter; `info` unless set.
    pub fn log_filter(mut self, filter: &str) -> HostBuilder {
        self.log_filter = filter.to_owned();
        self
    }

    /// Runs the host inside network namespace `netns` (see
    /// [`Network`](crate::Network)).
    pub fn netns(mut self, netns: &str) -> HostBuilder {
        self.netns = Some(netns.to_owned());
        self
    }

    /// Runs the host in `dir`.
    pub fn cwd(mut self, dir: &Path) -> HostBuilder {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// Starts the host and waits for its "listening on" line.
    ///
    /// # Panics
    ///
    /// When the host does not print its address within two minutes; the
    /// panic shows its log.
    pub fn start(self) -> HostProcess {
        let (plugins, copies) = match self.plugins {
            Plugins::FromConfig => (None, None),
            Plugins::Copies(guests) => {
                let guests: Vec<&str> = guests.iter().map(String::as_str).collect();
                let dir = plugin_dir(&guests);
                (Some(dir.path().to_owned()), Some(dir))
            }
            Plugins::Folder(folder) => (Some(folder), None),
        };
        let mut args: Vec<&str> = vec![
            "host",
            "--region",
            &self.region,
            "--listen",
            &self.listen,
            "--config",
            self.config.to_str().expect("utf-8 path"),
        ];
        if let Some(bind) = &self.bind {
            args.extend(["--bind", bind]);
        }
        if let Some(plugins) = &plugins {
            args.extend(["--plugins", plugins.to_str().expect("utf-8 path")]);
        }
        if let Some(admin) = &self.admin {
            args.extend(["--admin", admin]);
        }
        args.extend(self.args.iter().map(String::as_str));

        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("host.log");
        let log = File::create(&log_path).expect("log file");
        // `ip netns exec` enters the namespace and executes the host in its
        // place: the child's pid is the host's.
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(wasmrpc_bin());
                command
            }
            None => Command::new(wasmrpc_bin()),
        };
        command
            .args(&args)
            .env("RUST_LOG", &self.log_filter)
            .env("WASMRPC_COMPILE_CACHE", crate::compile_cache_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        // Make sure the host dies with the test even if the test is killed.
        // SAFETY: the closure runs in the forked child before exec, where
        // only async-signal-safe calls are allowed; it makes one, prctl(2),
        // which takes integer arguments and touches no memory of ours.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn wasmrpc host");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // The first line has the address; with an admin listener, the
        // second has its address.
        let wanted = if self.admin.is_some() { 2 } else { 1 };
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..wanted {
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
            }
            // Keep draining so the host never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("host did not report its address; log:\n{log}");
            }
        };
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from host: {line}"));
        let admin = self.admin.as_ref().map(|_| {
            let line = rx
                .recv_timeout(START_TIMEOUT)
                .expect("the admin listener's line");
            line.strip_prefix("admin listener on http://")
                .and_then(|rest| rest.split('/').next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("unexpected second line from host: {line}"))
        });
        HostProcess {
            child,
            addr,
            admin,
            log_path,
            plugins,
            _dir: dir,
            _copies: copies,
        }
    }
}

/// A `wasmrpc host` child process, killed when dropped.
pub struct HostProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its admin listener, when started with one.
    pub admin: Option<SocketAddr>,
    log_path: PathBuf,
    plugins: Option<PathBuf>,
    _dir: TempDir,
    _copies: Option<TempDir>,
}

impl HostProcess {
    /// A host of region `test` on a free loopback port, with no
    /// `regions.toml` and an empty plugin folder until told otherwise.
    pub fn builder() -> HostBuilder {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        HostBuilder::new("test", listen, Path::new("/nonexistent/regions.toml")).plugins(&[])
    }

    /// Starts a host of region `test` serving copies of the named guests.
    pub fn start(guests: &[&str]) -> HostProcess {
        HostProcess::builder().plugins(guests).start()
    }

    /// The plugin folder the host was started with.
    ///
    /// # Panics
    ///
    /// For a host of a cluster, which serves its region's folder.
    pub fn plugins(&self) -> &Path {
        self.plugins
            .as_deref()
            .expect("started with a plugin folder")
    }

    /// GETs `path` from the host's admin listener.
    ///
    /// # Panics
    ///
    /// Without an admin listener, or when it does not answer within 10 s.
    pub async fn admin_get(&self, path: &str) -> wasmrpc::observe::http::Response {
        let admin = self
            .admin
            .expect("started with an admin listener")
            .to_string();
        wasmrpc::observe::http::get(&admin, path, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("GET {path} from {admin}: {e:#}"))
    }

    /// The host's `/metrics`, parsed.
    pub async fn metrics(&self) -> crate::Metrics {
        let response = self.admin_get("/metrics").await;
        assert_eq!(response.status, 200, "{}", response.body);
        crate::Metrics::parse(&response.body)
    }

    /// The host's `/status`.
    pub async fn status(&self) -> wasmrpc::observe::Status {
        let response = self.admin_get("/status").await;
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("/status is not a status ({e}): {}", response.body))
    }

    /// [`HostProcess::status`] for code that does not await: asked from a
    /// thread of its own, so it works inside and outside a runtime.
    pub fn status_now(&self) -> wasmrpc::observe::Status {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for one request")
                        .block_on(self.status())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// What the host's `/status` says of its peer listed at `addr`, if it
    /// has one there.
    pub async fn peer(&self, addr: SocketAddr) -> Option<wasmrpc::observe::status::PeerStatus> {
        let addr = addr.to_string();
        self.status()
            .await
            .peers
            .into_iter()
            .find(|p| p.address == addr)
    }

    /// Waits until the host's `/status` shows at least `peers` peers up
    /// (linked, not ejected); needs an admin listener.
    ///
    /// # Panics
    ///
    /// When that does not happen within `timeout`; the panic shows the
    /// last status.
    pub fn wait_until_linked(&self, peers: usize, timeout: Duration) {
        let up = |s: &wasmrpc::observe::Status| s.peers.iter().filter(|p| p.health == "up").count();
        let linked = eventually(timeout, || up(&self.status_now()) >= peers);
        assert!(
            linked,
            "{peers} peers not up within {timeout:?}; status: {:?}",
            self.status_now()
        );
    }

    /// Waits until the host's `/status` says of its peer at `addr` what
    /// `check` wants, and returns that view; needs an admin listener.
    ///
    /// # Panics
    ///
    /// When that does not happen within `timeout`.
    pub async fn wait_for_peer(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        check: impl Fn(&wasmrpc::observe::status::PeerStatus) -> bool,
    ) -> wasmrpc::observe::status::PeerStatus {
        let seen = crate::eventually_some(timeout, || async {
            self.peer(addr).await.filter(|p| check(p))
        })
        .await;
        seen.unwrap_or_else(|| {
            panic!(
                "the peer at {addr} never reached the state wanted; now: {:?}",
                self.status_now().peers
            )
        })
    }

    /// Waits until the host's `/readyz` says it is draining (503 `not
    /// ready: draining`): it has taken a shutdown signal.
    ///
    /// # Panics
    ///
    /// When that does not happen within `timeout`.
    pub async fn wait_until_draining(&self, timeout: Duration) {
        let draining = eventually_async(timeout, || async {
            let ready = self.admin_get("/readyz").await;
            (ready.status, ready.body.as_str()) == (503, "not ready: draining\n")
        })
        .await;
        assert!(
            draining,
            "not draining after {timeout:?}; log:\n{}",
            self.log()
        );
    }

    /// The address as `ip:port` text, for the CLI's `--host`.
    pub fn host_arg(&self) -> String {
        self.addr.to_string()
    }

    /// A client connected to this host.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await.expect("connect to host")
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log holds `pattern` at least `count` times.
    pub fn wait_for_log(&self, pattern: &str, count: usize, timeout: Duration) {
        let found = eventually(timeout, || self.log().matches(pattern).count() >= count);
        assert!(
            found,
            "`{pattern}` not logged {count} times; log:\n{}",
            self.log()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the host.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes plain integers and touches no memory, so
        // the call is sound for any pid. This one is our child's, and until
        // `wait_exit` has seen it exit it is not reaped, so it names the
        // host and no other process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits up to `timeout` for the host to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        eventually(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status
    }

    /// Resident memory of the host process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// CPU time used so far by the host's threads whose name passes `keep`,
    /// from the kernel's per-thread accounting.
    fn cpu_time_of(&self, keep: impl Fn(&str) -> bool) -> Duration {
        let nanos = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .expect("read /proc/<pid>/task")
            .filter_map(|task| {
                let task = task.ok()?.path();
                let name = std::fs::read_to_string(task.join("comm")).ok()?;
                if !keep(name.trim_end()) {
                    return None;
                }
                let schedstat = std::fs::read_to_string(task.join("schedstat")).ok()?;
                schedstat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        Duration::from_nanos(nanos)
    }

    /// CPU time all the host's threads have used so far.
    pub fn cpu_time(&self) -> Duration {
        self.cpu_time_of(|_| true)
    }

    /// CPU time the guest pool's threads (`wasm-guest`) have used so far:
    /// it grows only while a guest runs on the pool.
    pub fn guest_pool_cpu(&self) -> Duration {
        self.cpu_time_of(|name| name == "wasm-guest")
    }

    /// Waits until the host has gone quiet: 100 ms in which all its threads
    /// together used less than 1 ms of CPU time. Work it does in the
    /// background after an answer (tearing an instance down, making spares,
    /// running what a hung host received) is then done.
    ///
    /// # Panics
    ///
    /// When the host stays busy for `timeout`.
    pub async fn wait_until_idle(&self, timeout: Duration) {
        const QUIET: Duration = Duration::from_millis(100);
        let window = Cell::new((Instant::now(), self.cpu_time()));
        let idle = eventually_async(timeout, || async {
            let (since, used) = window.get();
            let now = self.cpu_time();
            if now - used >= Duration::from_millis(1) {
                window.set((Instant::now(), now));
                return false;
            }
            since.elapsed() >= QUIET
        })
        .await;
        assert!(idle, "the host stayed busy for {timeout:?}");
    }

    /// Waits until guests have run on the guest pool for 20 ms more than
    /// `since` (a reading of [`HostProcess::guest_pool_cpu`] taken before
    /// the call): a long call handed to the pool is running there, on its
    /// instance. A call moves to the pool after 1 ms inline at most.
    ///
    /// # Panics
    ///
    /// When no guest runs on the pool within 10 s.
    pub async fn wait_for_pool_work(&self, since: Duration) {
        let ran = eventually_async(Duration::from_secs(10), || async {
            self.guest_pool_cpu() >= since + Duration::from_millis(20)
        })
        .await;
        assert!(ran, "no guest ran on the guest pool");
    }

    /// The sockets the host holds open: its listener, its connections,
    /// and its links to peers.
    pub fn open_sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/<pid>/fd")
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// The descriptors the host holds open, of any kind.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/<pid>/fd")
            .count()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
