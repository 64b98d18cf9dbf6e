//! Test support: builds the example guests and the `wasmrpc` binary once per
//! test run, starts hosts as real processes on loopback, and talks to them
//! through the real client, the real CLI, or raw frames.

mod cluster;
mod files;
mod netns;
mod proxy;

pub use cluster::{Cluster, RegionSpec, free_addr};
pub use files::{WriteStyle, component_returning, large_component};
pub use netns::Network;
pub use proxy::Proxy;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ciborium::Value;
use tempfile::TempDir;
use wasmrpc::Client;
use wasmrpc::protocol::{Hello, Message, PROTOCOL_VERSION, Role, decode_message, encode_message};

/// The repository root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(mut command: Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(status.success(), "{what} failed with {status}");
}

/// The folder holding the built example plugins (`<name>.wasm`).
///
/// Builds `guest-examples/` for `wasm32-wasip2` on first use, adding the
/// target with rustup when it is missing.
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        xtask::guests::build().unwrap_or_else(|e| panic!("cannot build the example guests: {e:#}"))
    })
}

/// The path of the built example plugin `name`.
pub fn guest(name: &str) -> PathBuf {
    let path = guests_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "guest `{name}` was not built at {}",
        path.display()
    );
    path
}

/// The `wasmrpc` binary, built from this workspace on first use.
pub fn wasmrpc_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut build = cargo();
        build.current_dir(workspace_root()).args([
            "build",
            "--package",
            "wasmrpc",
            "--bin",
            "wasmrpc",
        ]);
        run(build, "building the wasmrpc binary");
        // This test binary lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target layout");
        let bin = profile_dir.join("wasmrpc");
        assert!(
            bin.is_file(),
            "wasmrpc binary not found at {}",
            bin.display()
        );
        bin
    })
}

/// Runs the CLI with `args` to completion.
pub fn cli(args: &[&str]) -> Output {
    Command::new(wasmrpc_bin())
        .args(args)
        .env_remove("WASMRPC_HOST")
        .output()
        .expect("run wasmrpc")
}

/// Copies example guest `name` (and its sidecar `<name>.toml`, if it has
/// one) into `folder`.
pub fn install_guest(name: &str, folder: &Path) {
    std::fs::copy(guest(name), folder.join(format!("{name}.wasm"))).expect("copy guest");
    let sidecar = workspace_root().join(format!("guest-examples/{name}/{name}.toml"));
    if sidecar.is_file() {
        std::fs::copy(&sidecar, folder.join(format!("{name}.toml"))).expect("copy sidecar");
    }
}

/// A temporary plugin folder holding copies of the named example guests.
pub fn plugin_dir(guests: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in guests {
        install_guest(name, dir.path());
    }
    dir
}

/// A `wasmrpc host` child process, killed when dropped.
pub struct HostProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    log_path: PathBuf,
    _dir: TempDir,
    _plugins: Option<TempDir>,
}

impl HostProcess {
    /// Starts a host of region `test` serving copies of the named guests.
    pub fn start(guests: &[&str]) -> HostProcess {
        HostProcess::start_with(guests, &[])
    }

    /// [`HostProcess::start`] with extra `wasmrpc host` arguments.
    pub fn start_with(guests: &[&str], extra: &[&str]) -> HostProcess {
        let plugins = plugin_dir(guests);
        let path = plugins.path().to_owned();
        let mut host = HostProcess::start_in("test", &path, extra);
        host._plugins = Some(plugins);
        host
    }

    /// Starts a host of `region` on a free port serving `plugins`, with extra
    /// command-line arguments.
    pub fn start_in(region: &str, plugins: &Path, extra: &[&str]) -> HostProcess {
        let mut args = vec![
            "host",
            "--region",
            region,
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/nonexistent/regions.toml",
            "--plugins",
        ];
        let plugins = plugins.to_str().expect("utf-8 path");
        args.push(plugins);
        args.extend_from_slice(extra);
        HostProcess::spawn(&args, None)
    }

    /// Runs `wasmrpc` with `args` (a `host` command) in `cwd` and waits for
    /// its "listening on" line.
    pub fn spawn(args: &[&str], cwd: Option<&Path>) -> HostProcess {
        HostProcess::spawn_with_log(args, cwd, "info")
    }

    /// [`HostProcess::spawn`] with a `RUST_LOG` filter.
    pub fn spawn_with_log(args: &[&str], cwd: Option<&Path>, log_filter: &str) -> HostProcess {
        HostProcess::spawn_in(args, cwd, log_filter, None)
    }

    /// [`HostProcess::spawn_with_log`], inside network namespace `netns`
    /// when one is given (see [`Network`]).
    pub fn spawn_in(
        args: &[&str],
        cwd: Option<&Path>,
        log_filter: &str,
        netns: Option<&str>,
    ) -> HostProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("host.log");
        let log = File::create(&log_path).expect("log file");
        // `ip netns exec` enters the namespace and executes the host in its
        // place: the child's pid is the host's.
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(wasmrpc_bin());
                command
            }
            None => Command::new(wasmrpc_bin()),
        };
        command
            .args(args)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        // Make sure the host dies with the test even if the test is killed.
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
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the host never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
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
        HostProcess {
            child,
            addr,
            log_path,
            _dir: dir,
            _plugins: None,
        }
    }

    /// The plugin folder of a host made by [`HostProcess::start`].
    pub fn plugins(&self) -> &Path {
        self._plugins
            .as_ref()
            .expect("started with HostProcess::start")
            .path()
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
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits up to `timeout` for the host to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
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
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, polling every 10 ms, for at most `timeout`.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that `math.add(a, b)` answers `a + b` through `client`: the host
/// still serves healthy calls.
pub async fn assert_adds(client: &Client, a: i64, b: i64) {
    let sum = client
        .call("math.add", vec![Value::from(a), Value::from(b)])
        .await;
    assert_eq!(sum.unwrap(), Value::from(a + b));
}

/// JSON text → CBOR value, for writing arguments the way the CLI takes them.
pub fn cbor(json: &str) -> Value {
    wasmrpc::protocol::json::json_to_cbor(serde_json::from_str(json).expect("valid JSON"))
}

/// CBOR value → compact JSON text, for comparing results.
pub fn json(value: &Value) -> String {
    wasmrpc::protocol::json::to_json_text(value)
}

/// A raw protocol connection for feeding a host arbitrary bytes.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What reading from a raw connection produced.
#[derive(Debug)]
pub enum Read2 {
    Message(Message),
    Closed,
    TimedOut,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes the `hello` exchange.
    pub fn handshake(addr: SocketAddr) -> RawConn {
        let mut conn = RawConn::connect(addr);
        conn.send_message(&Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            region: None,
            host_id: None,
            max_in_flight: None,
        }));
        match conn.read(Duration::from_secs(5)) {
            Read2::Message(Message::Hello(_)) => conn,
            other => panic!("expected hello, got {other:?}"),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends bytes, ignoring failures (the host may already have closed).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn send_message(&mut self, message: &Message) {
        let frame = encode_message(message, 64 << 20).expect("encode");
        self.send(&frame);
    }

    /// Shuts down the writing half.
    pub fn finish_writing(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Reads the next whole message, or reports a close or a timeout.
    pub fn read(&mut self, timeout: Duration) -> Read2 {
        let deadline = Instant::now() + timeout;
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + len {
                    let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    return Read2::Message(decode_message(&body).expect("host sent a valid frame"));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Read2::TimedOut;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Read2::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Read2::TimedOut;
                }
                Err(_) => return Read2::Closed,
            }
        }
    }

    /// Reads messages until the host closes the connection (returning them),
    /// or panics if it stays open past `timeout`.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        loop {
            match self.read(deadline.saturating_duration_since(Instant::now())) {
                Read2::Message(m) => messages.push(m),
                Read2::Closed => return messages,
                Read2::TimedOut => panic!("host kept the connection open; got {messages:?}"),
            }
        }
    }
}
