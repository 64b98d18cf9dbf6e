//! One multiplexed connection to a host: many concurrent calls, each
//! attempted once. [`crate::Client`] builds failover over several of them;
//! a forwarding host uses them directly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ciborium::Value;
use futures::StreamExt;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::context::CallContext;
use crate::outbound::Outbound;
use crate::stream::{ReadHalf, Stream};
use crate::tls::{ClientTls, describe_handshake_error};
use wasmrpc_protocol::{
    Call, CallError, Cancel, DEFAULT_MAX_FRAME, DEFAULT_MAX_IN_FLIGHT, ErrorCode, FunctionInfo,
    Hello, ListFunctions, Load, Message, PROTOCOL_VERSION, Ping, Processed, RetryPolicy, Role,
    Secret, decode_message, encode_message,
};

/// How a client introduces itself and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub role: Role,
    pub region: Option<String>,
    pub host_id: Option<String>,
    /// Time allowed for TCP connect plus the `hello` exchange.
    pub connect_timeout: Duration,
    /// Deadline of calls made without one.
    pub default_timeout: Duration,
    pub max_frame: usize,
    /// How often a call that failed safely is tried again (on another host
    /// when there is one), and the backoff before trying one that may have
    /// run (see [`crate::Client`]).
    pub retry: RetryPolicy,
    /// Functions the caller declares safe to run more than once, by name
    /// (`inventory.stock.reserve`) or by prefix (`math.*`), in addition to
    /// those the hosts' catalog marks `idempotent`: a call of one of them
    /// that was lost with its connection is tried again elsewhere.
    pub idempotent: Vec<String>,
    /// How often [`crate::Client`] pings each host it is connected to, to
    /// measure the round trip it ranks hosts by and to notice silence.
    pub probe_interval: Duration,
    /// Backoff between reconnection attempts to a host: from `min`,
    /// doubling up to `max`, each wait drawn at random from half to all of
    /// it, so that clients do not reconnect in step.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Connect with TLS, trusting these settings; `None`: plaintext (which
    /// hosts accept only on loopback, or when started `--insecure`).
    pub tls: Option<ClientTls>,
    /// The bearer token sent in `hello`, for hosts with an access file.
    /// Sent in plaintext only to a loopback address: elsewhere a client
    /// with a token and no TLS refuses to connect.
    pub token: Option<Secret>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            role: Role::Client,
            region: None,
            host_id: None,
            connect_timeout: Duration::from_secs(5),
            default_timeout: Duration::from_secs(5),
            max_frame: DEFAULT_MAX_FRAME,
            retry: RetryPolicy::default(),
            idempotent: Vec::new(),
            probe_interval: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            tls: None,
            token: None,
        }
    }
}

/// A connection to a host. Cheap to clone; clones share the connection, and
/// any number of tasks may call through it at once. It never reconnects:
/// once it has ended (or the host drains), calls fail with `unavailable`.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

enum Response {
    Value(Value),
    Error(CallError),
    Catalog(Vec<FunctionInfo>),
    Pong(Option<Load>),
}

/// What one `ping` measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// The round trip, from sending the `ping` to reading its `pong`.
    pub rtt: Duration,
    /// The host's own load as it answered, from hosts that speak protocol
    /// version 3 or later (see [`wasmrpc_protocol::Load`]).
    pub load: Option<Load>,
}

/// State the reader task shares with callers.
struct Inbound {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Response>>>,
    /// Set when the connection ended or the host is draining: why new calls fail.
    closed: Mutex<Option<CallError>>,
    /// Cancelled when the connection has ended.
    ended: CancellationToken,
    /// Cancelled when the connection takes no new calls: the host is
    /// draining, or the connection has ended.
    stopped: CancellationToken,
    /// The latest `catalog_update` pushed by the host (peer connections).
    catalog: watch::Sender<Option<Arc<Vec<FunctionInfo>>>>,
    /// Frames read from the host so far: a sign of life.
    received: AtomicU64,
}

struct Shared {
    tx: Arc<Outbound>,
    /// Permits for calls in flight, as many as the host accepts.
    slots: Semaphore,
    inbound: Arc<Inbound>,
    next_id: AtomicU64,
    options: ClientOptions,
    hello: Hello,
    reader: tokio::task::AbortHandle,
    addr: String,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.reader.abort();
        self.tx.close();
    }
}

impl Connection {
    /// Connects with default options.
    ///
    /// # Errors
    ///
    /// `unavailable` (`processed: no`) when the host cannot be reached or
    /// refuses the handshake.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Connection, CallError> {
        Connection::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects, exchanges `hello`, and starts the connection's tasks.
    ///
    /// The `hello` says [`PROTOCOL_VERSION`]. A host that refuses it as
    /// unsupported (a host built before it) is dialled once more with
    /// [`FALLBACK_PROTOCOL_VERSION`], all within the connect timeout; the
    /// version spoken is the one in [`Connection::host_hello`].
    ///
    /// # Errors
    ///
    /// As [`Connection::connect`]; `protocol_error` when the host refuses
    /// the fallback version too, and the host's own code when it refuses
    /// the connection for another reason (`unauthenticated`, say).
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        options: ClientOptions,
    ) -> Result<Connection, CallError> {
        let name = addr.to_string();
        let unavailable = |why: String| {
            CallError::new(
                ErrorCode::Unavailable,
                Processed::No,
                format!("cannot connect to `{name}`: {why}"),
            )
        };
        let connect = async {
            // Resolved once: a host that refuses our version is dialled again.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
                .await
                .map_err(|e| unavailable(e.to_string()))?
                .collect();
            match handshake(&name, &addrs, &options, PROTOCOL_VERSION).await? {
                Handshake::Done(done) => Ok(done),
                // A host older than this client: speak its version.
                Handshake::VersionRefused(why) => {
                    tracing::debug!(
                        "`{name}` refused protocol version {PROTOCOL_VERSION} ({why}); \
                         speaking version {FALLBACK_PROTOCOL_VERSION}"
                    );
                    match handshake(&name, &addrs, &options, FALLBACK_PROTOCOL_VERSION).await? {
                        Handshake::Done(done) => Ok(done),
                        Handshake::VersionRefused(why) => Err(CallError::new(
                            ErrorCode::ProtocolError,
                            Processed::No,
                            format!("`{name}` refused the connection: {why}"),
                        )),
                    }
                }
            }
        };
        let (frames, tx, hello) = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| {
                unavailable(format!("no answer within {:?}", options.connect_timeout))
            })??;

        let inbound = Arc::new(Inbound {
            waiting: Mutex::new(HashMap::new()),
            closed: Mutex::new(None),
            ended: CancellationToken::new(),
            stopped: CancellationToken::new(),
            catalog: watch::Sender::new(None),
            received: AtomicU64::new(0),
        });
        let reader = tokio::spawn(read_responses(
            frames,
            inbound.clone(),
            tx.clone(),
            name.clone(),
        ))
        .abort_handle();
        let slots = Semaphore::new(
            hello
                .max_in_flight
                .map_or(DEFAULT_MAX_IN_FLIGHT, |n| n as usize),
        );
        Ok(Connection {
            shared: Arc::new(Shared {
                tx,
                slots,
                inbound,
                next_id: AtomicU64::new(1),
                options,
                hello,
                reader,
                addr: name,
            }),
        })
    }

    /// The host's `hello`: its region and id.
    pub fn host_hello(&self) -> &Hello {
        &self.shared.hello
    }

    /// Resolves when the connection has ended (closed by either side or
    /// failed); calls made after that fail with `unavailable`.
    pub async fn closed(&self) {
        self.shared.inbound.ended.cancelled().await;
    }

    /// Resolves when the connection takes no new calls: the host said it is
    /// draining (calls in flight still get their answers), or the
    /// connection has ended.
    pub async fn stopped(&self) {
        self.shared.inbound.stopped.cancelled().await;
    }

    /// Whether new calls may still be sent: the connection is open and the
    /// host is not draining.
    pub fn accepting(&self) -> bool {
        !self.shared.inbound.stopped.is_cancelled()
    }

    /// Why the connection takes no new calls, once it does not.
    pub fn stop_reason(&self) -> Option<String> {
        (self.shared.inbound.closed.lock().expect("client lock"))
            .as_ref()
            .map(|error| error.message.clone())
    }

    /// The address this connection was opened to, as given.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// How many frames the host has sent since the handshake. A count that
    /// stops moving while pings are out means the host (or the network to
    /// it) has gone silent.
    pub fn frames_received(&self) -> u64 {
        self.shared.inbound.received.load(Ordering::Relaxed)
    }

    /// The host's own functions as it last pushed them with `catalog_update`
    /// (hosts push them on connections opened with [`Role::Peer`]).
    pub fn catalog_updates(&self) -> watch::Receiver<Option<Arc<Vec<FunctionInfo>>>> {
        self.shared.inbound.catalog.subscribe()
    }

    /// Makes one attempt of a call within `context`: its deadline, hops,
    /// visited regions and metadata go to the host as they are. A host
    /// forwarding a call uses this with the context of the call it serves.
    ///
    /// # Errors
    ///
    /// The host's error, or `unavailable`/`deadline_exceeded` from the client
    /// side when the connection fails or the host does not answer in time;
    /// `cancelled` (`processed: maybe`) when
    /// `context.cancel` fires, after which the call is cancelled on the host.
    pub async fn call_in(
        &self,
        function: &str,
        mut args: Vec<Value>,
        context: &CallContext,
    ) -> Result<Value, CallError> {
        self.call_keeping(function, &mut args, context).await
    }

    /// [`Connection::call_in`], leaving the arguments in `args` when the
    /// call ends (answered or failed), so that another attempt can send them
    /// again without a copy.
    ///
    /// # Errors
    ///
    /// As [`Connection::call_in`].
    pub async fn call_keeping(
        &self,
        function: &str,
        args: &mut Vec<Value>,
        context: &CallContext,
    ) -> Result<Value, CallError> {
        tokio::select! {
            result = self.attempt(function, args, context) => result,
            () = context.cancel.cancelled() => Err(CallError::cancelled(Processed::Maybe)),
        }
    }

    async fn attempt(
        &self,
        function: &str,
        args: &mut Vec<Value>,
        context: &CallContext,
    ) -> Result<Value, CallError> {
        // Calls beyond the host's in-flight limit wait here, within their deadline.
        let _slot = match tokio::time::timeout_at(context.deadline, self.shared.slots.acquire())
            .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(self.connection_lost(Processed::No)),
            Err(_) => {
                return Err(CallError::new(
                    ErrorCode::DeadlineExceeded,
                    Processed::No,
                    "deadline passed while waiting for a free call slot (the host's in-flight limit)",
                ));
            }
        };
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        // The host gets what is left of the deadline after the wait.
        let message = Message::Call(Call {
            id,
            function: function.to_owned(),
            args: std::mem::take(args),
            deadline_ms: Some(context.deadline_ms()),
            hops: context.hops,
            visited: context.visited.clone(),
            metadata: context.metadata.clone(),
            principal: context.principal.as_deref().map(str::to_owned),
        });
        let response = self.request(id, &message, context.remaining(), true).await;
        if let Message::Call(call) = message {
            *args = call.args;
        }
        match response? {
            Response::Value(value) => Ok(value),
            Response::Error(error) => Err(error),
            _ => Err(CallError::internal(format!(
                "host answered call {id} with the wrong message"
            ))),
        }
    }

    /// The catalog: every function callable through the host, with its
    /// signature and regions.
    ///
    /// # Errors
    ///
    /// `unavailable` or `deadline_exceeded` when the host does not answer.
    pub async fn list(&self) -> Result<Vec<FunctionInfo>, CallError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let timeout = self.shared.options.default_timeout;
        match self
            .request(id, &Message::List(ListFunctions { id }), timeout, false)
            .await?
        {
            Response::Catalog(functions) => Ok(functions),
            Response::Error(error) => Err(error),
            _ => Err(CallError::internal(
                "host answered `list` with the wrong message",
            )),
        }
    }

    /// Measures one round trip to the host.
    ///
    /// # Errors
    ///
    /// `unavailable` or `deadline_exceeded` when the host does not answer.
    pub async fn ping(&self) -> Result<Duration, CallError> {
        Ok(self.probe().await?.rtt)
    }

    /// Measures one round trip to the host and reads the load it reports
    /// in its `pong`.
    ///
    /// # Errors
    ///
    /// `unavailable` or `deadline_exceeded` when the host does not answer.
    pub async fn probe(&self) -> Result<Probe, CallError> {
        let nonce = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let timeout = self.shared.options.default_timeout;
        match self
            .request(nonce, &Message::Ping(Ping { nonce }), timeout, false)
            .await?
        {
            Response::Pong(load) => Ok(Probe {
                rtt: start.elapsed(),
                load,
            }),
            _ => Err(CallError::internal(
                "host answered `ping` with the wrong message",
            )),
        }
    }

    /// Sends `message` and waits for the response with `id`.
    async fn request(
        &self,
        id: u64,
        message: &Message,
        timeout: Duration,
        cancellable: bool,
    ) -> Result<Response, CallError> {
        if self
            .shared
            .inbound
            .closed
            .lock()
            .expect("client lock")
            .is_some()
        {
            return Err(self.connection_lost(Processed::No));
        }
        let frame = encode_message(message, self.shared.options.max_frame).map_err(|e| {
            CallError::new(
                ErrorCode::InvalidArgs,
                Processed::No,
                format!("cannot send the request: {e}"),
            )
        })?;
        let (tx, rx) = oneshot::channel();
        self.shared
            .inbound
            .waiting
            .lock()
            .expect("client lock")
            .insert(id, tx);
        let mut guard = PendingGuard {
            shared: &self.shared,
            id,
            cancel_on_drop: cancellable,
        };
        if !self.shared.tx.send(&frame) {
            guard.cancel_on_drop = false;
            return Err(self.connection_lost(Processed::No));
        }
        // The host enforces the deadline and answers `deadline_exceeded`
        // itself; the grace period covers the trip back.
        let wait = timeout + Duration::from_millis(500);
        let result = match tokio::time::timeout(wait, rx).await {
            Ok(Ok(response)) => {
                guard.cancel_on_drop = false;
                Ok(response)
            }
            Ok(Err(_)) => {
                guard.cancel_on_drop = false;
                Err(self.connection_lost(Processed::Maybe))
            }
            Err(_) => Err(CallError::new(
                ErrorCode::DeadlineExceeded,
                Processed::Maybe,
                format!("no answer from `{}` within {timeout:?}", self.shared.addr),
            )),
        };
        drop(guard);
        result
    }

    /// The error for a request the connection could not complete: why the
    /// connection ended, with the caller's `processed` state.
    fn connection_lost(&self, processed: Processed) -> CallError {
        let message = match &*self.shared.inbound.closed.lock().expect("client lock") {
            Some(error) => error.message.clone(),
            None => format!("connection to `{}` lost", self.shared.addr),
        };
        CallError::new(ErrorCode::Unavailable, processed, message)
    }
}

/// The protocol version a client falls back to, once, when a host refuses
/// [`PROTOCOL_VERSION`] in the handshake: the last version before `pong`
/// carried the host's load, which every host built since version 2 speaks.
pub const FALLBACK_PROTOCOL_VERSION: u32 = 2;

/// A connection whose `hello` exchange is complete: its frames, its writer
/// and the host's `hello`.
type Handshaken = (
    FramedRead<ReadHalf, wasmrpc_protocol::FrameCodec>,
    Arc<Outbound>,
    Hello,
);

/// How one handshake ended, short of an error.
enum Handshake {
    Done(Handshaken),
    /// The host refused the protocol version with `protocol_error`, saying
    /// this: it is older than this client.
    VersionRefused(String),
}

/// Connects to `addrs` (`name` in errors) and exchanges `hello` with
/// `version`.
///
/// # Errors
///
/// `unavailable` (`processed: no`) when the host cannot be reached or
/// breaks off; the host's own code when it refuses the connection for
/// another reason than the version (`unauthenticated`, say).
async fn handshake(
    name: &str,
    addrs: &[SocketAddr],
    options: &ClientOptions,
    version: u32,
) -> Result<Handshake, CallError> {
    let unavailable = |why: String| {
        CallError::new(
            ErrorCode::Unavailable,
            Processed::No,
            format!("cannot connect to `{name}`: {why}"),
        )
    };
    let refused = |code: ErrorCode, why: String| {
        CallError::new(
            code,
            Processed::No,
            format!("`{name}` refused the connection: {why}"),
        )
    };
    let tcp = TcpStream::connect(addrs)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    tcp.set_nodelay(true)
        .map_err(|e| unavailable(e.to_string()))?;
    let stream = match &options.tls {
        // A token is a password: never in clear beyond this machine.
        None if options.token.is_some() && !tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback()) => {
            return Err(CallError::new(
                ErrorCode::InvalidArgs,
                Processed::No,
                format!(
                    "refusing to send a token in plaintext to `{name}`, which is not a loopback address: connect with TLS (the cluster CA)"
                ),
            ));
        }
        None => Stream::plain(tcp),
        Some(tls) => {
            let server_name = match &tls.server_name {
                Some(name) => name.clone(),
                None => tcp
                    .peer_addr()
                    .map_err(|e| unavailable(e.to_string()))?
                    .ip()
                    .into(),
            };
            crate::stream::connect_tls(tcp, tls.config.clone(), server_name)
                .await
                .map_err(|e| refused(ErrorCode::Unauthenticated, describe_handshake_error(&e)))?
        }
    };
    let (reader, writer) = stream.into_split();
    let mut frames = FramedRead::new(reader, wasmrpc_protocol::FrameCodec::new(options.max_frame));
    // Callers write their frames themselves (see `Outbound`).
    let (tx, _writer) = Outbound::start(writer, usize::MAX);
    let hello = Message::Hello(Hello {
        version,
        role: options.role,
        region: options.region.clone(),
        host_id: options.host_id.clone(),
        max_in_flight: None,
        token: options.token.clone(),
    });
    let frame =
        encode_message(&hello, options.max_frame).map_err(|e| unavailable(e.to_string()))?;
    if !tx.send(&frame) {
        return Err(unavailable("connection closed".into()));
    }
    let reply = match frames.next().await {
        Some(Ok(body)) => decode_message(&body).map_err(|e| unavailable(e.to_string()))?,
        // TLS 1.3: a host that refuses this side's certificate says
        // so after the handshake, with an alert read here.
        Some(Err(wasmrpc_protocol::ProtocolError::Io(e))) if e.get_ref().is_some() => {
            return Err(refused(
                ErrorCode::Unauthenticated,
                describe_handshake_error(&e),
            ));
        }
        Some(Err(e)) => return Err(unavailable(e.to_string())),
        None => return Err(unavailable("connection closed during handshake".into())),
    };
    match reply {
        Message::Hello(hello) => Ok(Handshake::Done((frames, tx, hello))),
        Message::Error(error)
            if error.code == ErrorCode::ProtocolError
                && error.message.starts_with("unsupported protocol version")
                && version > FALLBACK_PROTOCOL_VERSION =>
        {
            Ok(Handshake::VersionRefused(error.message))
        }
        // The host's own code: `unauthenticated` for a missing
        // token says more than "unavailable".
        Message::Error(error) => Err(refused(error.code, error.message)),
        other => Err(unavailable(format!(
            "expected `hello`, got `{}`",
            other.kind()
        ))),
    }
}

/// Removes a request's waiter when the caller stops waiting, and tells the
/// host to cancel the call if it was still running.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
    cancel_on_drop: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let removed = self
            .shared
            .inbound
            .waiting
            .lock()
            .expect("client lock")
            .remove(&self.id);
        if self.cancel_on_drop && removed.is_some() {
            let cancel = Message::Cancel(Cancel { id: self.id });
            if let Ok(frame) = encode_message(&cancel, self.shared.options.max_frame) {
                self.shared.tx.send(&frame);
            }
        }
    }
}

/// Replies read together past which the requests of the callers they wake
/// are held for one write (see [`read_responses`]). Below it, letting those
/// callers run first costs more than the writes it saves (measured with 2
/// to 64 calls in flight on a 2-core machine).
const HOLD_AT: usize = 4;

/// Routes every incoming frame to the caller waiting for its id.
///
/// Replies read together wake their callers together. When more than
/// [`HOLD_AT`] came in one read, the requests those callers make next are
/// held (see [`Outbound::hold`]) until they have run, and go out in one
/// write: with many calls in flight, one write per batch instead of one per
/// call. Fewer replies hold nothing back.
async fn read_responses(
    mut frames: FramedRead<ReadHalf, wasmrpc_protocol::FrameCodec>,
    inbound: Arc<Inbound>,
    tx: Arc<Outbound>,
    addr: String,
) {
    // However this task ends (even aborted), dropping the hold ends it.
    let mut hold = None;
    let reason = loop {
        if hold.is_some() && !frames.decoder().holds_frame(frames.read_buffer()) {
            // The batch is delivered: let the woken callers run, then send
            // what they asked for at once.
            tokio::task::yield_now().await;
            hold = None;
        }
        let body = match frames.next().await {
            Some(Ok(body)) => body,
            Some(Err(error)) => break format!("connection to `{addr}` failed: {error}"),
            None => break format!("connection to `{addr}` closed by the host"),
        };
        inbound.received.fetch_add(1, Ordering::Relaxed);
        let (id, response) = match decode_message(&body) {
            Ok(Message::Reply(reply)) => (reply.id, Response::Value(reply.value)),
            Ok(Message::Error(error)) => match error.id {
                Some(id) => (id, Response::Error(error.into_call_error())),
                None => {
                    break format!(
                        "host `{addr}` closed the connection: {}: {}",
                        error.code, error.message
                    );
                }
            },
            Ok(Message::Catalog(catalog)) => (catalog.id, Response::Catalog(catalog.functions)),
            Ok(Message::Pong(pong)) => (pong.nonce, Response::Pong(pong.load)),
            Ok(Message::CatalogUpdate(update)) => {
                inbound
                    .catalog
                    .send_replace(Some(Arc::new(update.functions)));
                continue;
            }
            Ok(Message::Drain(drain)) => {
                *inbound.closed.lock().expect("client lock") = Some(CallError::new(
                    ErrorCode::Unavailable,
                    Processed::No,
                    format!("host `{addr}` is draining: {}", drain.message),
                ));
                inbound.stopped.cancel();
                continue;
            }
            Ok(other) => break format!("host `{addr}` sent an unexpected `{}`", other.kind()),
            Err(error) => break format!("host `{addr}` sent a bad frame: {error}"),
        };
        if hold.is_none() && frames.decoder().frames_held(frames.read_buffer(), HOLD_AT) >= HOLD_AT
        {
            hold = Some(tx.hold());
        }
        let waiter = inbound.waiting.lock().expect("client lock").remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(response);
        }
    };
    tracing::debug!("{reason}");
    let mut closed = inbound.closed.lock().expect("client lock");
    if closed.is_none() {
        *closed = Some(CallError::new(
            ErrorCode::Unavailable,
            Processed::Maybe,
            reason,
        ));
    }
    drop(closed);
    // Before the waiters wake: a caller whose call was lost must not pick
    // this connection again for its next call.
    inbound.stopped.cancel();
    // Dropping the senders wakes every waiter with "connection lost".
    inbound.waiting.lock().expect("client lock").clear();
    inbound.ended.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use wasmrpc_protocol::{ErrorReply, Pong};

    /// Reads one frame from a fake host's socket.
    async fn read_message(socket: &mut TcpStream) -> Message {
        let len = socket.read_u32().await.expect("length") as usize;
        let mut body = vec![0; len];
        socket.read_exact(&mut body).await.expect("body");
        decode_message(&body).expect("a valid frame")
    }

    async fn write_message(socket: &mut TcpStream, message: Message) {
        let frame = encode_message(&message, DEFAULT_MAX_FRAME).unwrap();
        socket.write_all(&frame).await.unwrap();
    }

    fn host_hello(version: u32) -> Message {
        Message::Hello(Hello {
            version,
            role: Role::Host,
            region: Some("eu-west".into()),
            host_id: None,
            max_in_flight: Some(100),
            token: None,
        })
    }

    const REPORT: Load = Load {
        in_flight: 12,
        instances: 3,
        instances_max: 256,
        cpu: Some(0.75),
    };

    /// A host that speaks versions up to `newest`, as hosts built from this
    /// repository answer: an older version than the caller's is refused
    /// with `protocol_error`. Each connection's hello versions are sent on
    /// `seen`; a ping is answered with the load when the version has it.
    async fn fake_host(
        newest: u32,
        refusal: Option<ErrorReply>,
    ) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, versions) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let Message::Hello(hello) = read_message(&mut socket).await else {
                    panic!("the client starts with hello");
                };
                seen.send(hello.version).unwrap();
                if let Some(refusal) = &refusal {
                    write_message(&mut socket, Message::Error(refusal.clone())).await;
                    continue;
                }
                if hello.version > newest {
                    let error = ErrorReply::connection(
                        ErrorCode::ProtocolError,
                        format!(
                            "unsupported protocol version {}; this host speaks versions 1 to {newest}",
                            hello.version
                        ),
                    );
                    write_message(&mut socket, Message::Error(error)).await;
                    continue;
                }
                write_message(&mut socket, host_hello(hello.version)).await;
                tokio::spawn(async move {
                    loop {
                        let len = match socket.read_u32().await {
                            Ok(len) => len as usize,
                            Err(_) => return,
                        };
                        let mut body = vec![0; len];
                        socket.read_exact(&mut body).await.unwrap();
                        if let Ok(Message::Ping(ping)) = decode_message(&body) {
                            let load = (hello.version >= 3).then_some(REPORT);
                            let pong = Pong {
                                nonce: ping.nonce,
                                load,
                            };
                            write_message(&mut socket, Message::Pong(pong)).await;
                        }
                    }
                });
            }
        });
        (addr, versions)
    }

    fn drain(versions: &mut tokio::sync::mpsc::UnboundedReceiver<u32>) -> Vec<u32> {
        let mut all = Vec::new();
        while let Ok(version) = versions.try_recv() {
            all.push(version);
        }
        all
    }

    #[tokio::test]
    async fn a_host_of_this_version_is_spoken_to_in_it_and_reports_its_load() {
        let (addr, mut versions) = fake_host(PROTOCOL_VERSION, None).await;
        let connection = Connection::connect(addr).await.unwrap();
        assert_eq!(connection.host_hello().version, 3);
        let probe = connection.probe().await.unwrap();
        assert_eq!(probe.load, Some(REPORT));
        assert!(probe.rtt > Duration::ZERO);
        assert_eq!(drain(&mut versions), [3]);
    }

    #[tokio::test]
    async fn a_host_that_refuses_version_3_is_dialled_again_with_version_2() {
        let (addr, mut versions) = fake_host(2, None).await;
        let connection = Connection::connect(addr).await.unwrap();
        assert_eq!(connection.host_hello().version, 2);
        // The link works, and the old host reports no load.
        let probe = connection.probe().await.unwrap();
        assert_eq!(probe.load, None);
        assert_eq!(drain(&mut versions), [3, 2]);
    }

    #[tokio::test]
    async fn the_fallback_happens_once_and_other_refusals_are_not_retried() {
        // A host that speaks neither version: the second refusal is the answer.
        let (addr, mut versions) = fake_host(1, None).await;
        let error = Connection::connect(addr).await.err().unwrap();
        assert_eq!(
            (error.code, error.processed, error.message),
            (
                ErrorCode::ProtocolError,
                Processed::No,
                format!(
                    "`{addr}` refused the connection: \
                     unsupported protocol version 2; this host speaks versions 1 to 1"
                )
            )
        );
        assert_eq!(drain(&mut versions), [3, 2]);

        // Refused for its token, or with another protocol error: no second try.
        for refusal in [
            ErrorReply::connection(ErrorCode::Unauthenticated, "the token is not valid here"),
            ErrorReply::connection(ErrorCode::ProtocolError, "malformed frame: whatever"),
        ] {
            let (addr, mut versions) = fake_host(PROTOCOL_VERSION, Some(refusal.clone())).await;
            let error = Connection::connect(addr).await.err().unwrap();
            assert_eq!(
                (error.code, error.message),
                (
                    refusal.code,
                    format!("`{addr}` refused the connection: {}", refusal.message)
                )
            );
            assert_eq!(drain(&mut versions), [3]);
        }
    }
}
