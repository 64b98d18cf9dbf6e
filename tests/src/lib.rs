//! Test support: builds the example guests and the `wasmrpc` binary once per
//! test run, starts hosts as real processes on loopback, and talks to them
//! through the real client, the real CLI, or raw frames.

mod browser;
mod cluster;
mod files;
mod host;
mod metrics;
mod netns;
mod otlp;
mod pki;
mod proxy;
mod wait;

pub use browser::{Browser, chromium};
pub use cluster::{Cluster, RegionSpec, free_addr};
pub use files::{WriteStyle, component_returning, large_component};
pub use host::{HostBuilder, HostProcess};
pub use metrics::{Metrics, Sample};
pub use netns::Network;
pub use otlp::{OtlpReceiver, Span};
pub use pki::{Pki, TRUST_DOMAIN};
pub use proxy::Proxy;
pub use wait::{call_in_flight, eventually, eventually_async, eventually_some};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ciborium::Value;
use tempfile::TempDir;
use wasmrpc::protocol::{
    ErrorReply, Hello, Message, PROTOCOL_VERSION, Role, decode_message, encode_message,
};
use wasmrpc::{CallError, Client, ErrorCode, Processed};

/// The repository root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// Cargo, without the variables cargo set for this test binary
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...): some build scripts (ring's)
/// rebuild when those change, so a build run from here and one run from a
/// shell would each rebuild them and everything above them.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_this_binary = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_BIN_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
            );
        if set_for_this_binary {
            command.env_remove(name);
        }
    }
    command
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

/// How many times each entry ran, by the `ledger` plugin's log lines in
/// `logs` for `verb`: `recorded <entry> in <region>` (`ledger.record`) or
/// `located ...` (`ledger.locate`).
pub fn ledger_runs(logs: &[String], verb: &str) -> std::collections::HashMap<String, usize> {
    let mut runs = std::collections::HashMap::new();
    let marker = format!("{verb} ");
    for line in logs.iter().flat_map(|log| log.lines()) {
        if let Some(rest) = line.split(&marker).nth(1) {
            let entry = rest.split(' ').next().unwrap_or_default().to_owned();
            *runs.entry(entry).or_default() += 1;
        }
    }
    runs
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

/// The compile cache the tests' hosts share (`WASMRPC_COMPILE_CACHE`), in
/// the target folder: each example plugin is compiled once per build of the
/// host rather than by every host that loads it. Tests of the cache itself
/// give their hosts folders of their own.
pub fn compile_cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let bin = wasmrpc_bin();
        let target = bin
            .parent()
            .and_then(Path::parent)
            .expect("the binary lives in <target>/<profile>/");
        target.join("e2e-compile-cache")
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

/// Asserts that `math.add(a, b)` answers `a + b` through `client`: the host
/// still serves healthy calls.
pub async fn assert_adds(client: &Client, a: i64, b: i64) {
    let sum = client
        .call_value("math.add", vec![Value::from(a), Value::from(b)])
        .await;
    assert_eq!(sum.unwrap(), Value::from(a + b));
}

/// A call's failure as a test meets it: the client's [`CallError`], an
/// error frame read off a raw connection, or the result of a call that
/// must have failed.
pub trait Failure {
    /// The error, as the client would report it (an error frame's call id
    /// is dropped).
    ///
    /// # Panics
    ///
    /// For a result that is not an error.
    fn into_call_error(self) -> CallError;
}

impl Failure for CallError {
    fn into_call_error(self) -> CallError {
        self
    }
}

impl Failure for &CallError {
    fn into_call_error(self) -> CallError {
        self.clone()
    }
}

impl Failure for ErrorReply {
    fn into_call_error(self) -> CallError {
        ErrorReply::into_call_error(self)
    }
}

impl Failure for &ErrorReply {
    fn into_call_error(self) -> CallError {
        self.clone().into_call_error()
    }
}

impl<T: std::fmt::Debug> Failure for Result<T, CallError> {
    #[track_caller]
    fn into_call_error(self) -> CallError {
        match self {
            Ok(value) => panic!("expected the call to fail, it answered {value:?}"),
            Err(error) => error,
        }
    }
}

/// Asserts that `failure` has exactly this code, `processed` flag and
/// message; returns the error for checks of its region or detail.
#[track_caller]
pub fn assert_call_error(
    failure: impl Failure,
    code: ErrorCode,
    processed: Processed,
    message: &str,
) -> CallError {
    let error = failure.into_call_error();
    assert_eq!(
        (error.code, error.processed, error.message.as_str()),
        (code, processed, message),
        "{error:?}"
    );
    error
}

/// [`assert_call_error`] for a message that starts with `prefix` (the rest
/// names addresses or timings that vary from run to run).
#[track_caller]
pub fn assert_call_error_prefix(
    failure: impl Failure,
    code: ErrorCode,
    processed: Processed,
    prefix: &str,
) -> CallError {
    let error = failure.into_call_error();
    assert_eq!(
        (error.code, error.processed),
        (code, processed),
        "{error:?}"
    );
    assert!(
        error.message.starts_with(prefix),
        "expected a message starting with `{prefix}`: {error:?}"
    );
    error
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
    stream: RawStream,
    buf: Vec<u8>,
}

/// The bytes of a [`RawConn`]: TCP, or TLS over it (rustls's blocking
/// stream), carrying the same frames.
enum RawStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl RawStream {
    fn socket(&self) -> &TcpStream {
        match self {
            RawStream::Plain(tcp) => tcp,
            RawStream::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for RawStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(tcp) => tcp.read(buf),
            RawStream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for RawStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(tcp) => tcp.write(buf),
            RawStream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RawStream::Plain(tcp) => tcp.flush(),
            RawStream::Tls(tls) => tls.flush(),
        }
    }
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
            stream: RawStream::Plain(stream),
            buf: Vec::new(),
        }
    }

    /// Connects with TLS (`tls`: trusted CAs; the host's IP is the name
    /// checked) and completes the TLS handshake, not the `hello`.
    pub fn connect_tls(addr: SocketAddr, tls: &wasmrpc::net::ClientTls) -> RawConn {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let mut connection =
            rustls::ClientConnection::new(tls.config.clone(), addr.ip().into()).expect("tls");
        while connection.is_handshaking() {
            connection.complete_io(&mut tcp).expect("TLS handshake");
        }
        RawConn {
            stream: RawStream::Tls(Box::new(rustls::StreamOwned::new(connection, tcp))),
            buf: Vec::new(),
        }
    }

    /// [`RawConn::handshake`] over [`RawConn::connect_tls`].
    pub fn handshake_tls(addr: SocketAddr, tls: &wasmrpc::net::ClientTls) -> RawConn {
        let conn = RawConn::connect_tls(addr, tls);
        conn.hello()
    }

    /// Connects and completes the `hello` exchange.
    pub fn handshake(addr: SocketAddr) -> RawConn {
        RawConn::connect(addr).hello()
    }

    fn hello(self) -> RawConn {
        let mut conn = self;
        conn.send_message(&Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            region: None,
            host_id: None,
            max_in_flight: None,
            token: None,
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

    /// Shuts down the writing half (after TLS's `close_notify`).
    pub fn finish_writing(&mut self) {
        if let RawStream::Tls(tls) = &mut self.stream {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        let _ = self.stream.socket().shutdown(std::net::Shutdown::Write);
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
            self.stream
                .socket()
                .set_read_timeout(Some(left))
                .expect("timeout");
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
