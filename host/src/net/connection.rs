//! One accepted connection: handshake, multiplexed calls, cancellation, drain.
//!
//! A call is run right here, in the connection's task: most calls finish in
//! one poll (a short handler runs inline, see the runtime), and the reply is
//! written before the next frame is read, with no hand-over to another task.
//! A call that has to wait (a forwarded call, a long guest on the guest
//! pool) joins the connection's pending calls, which the same task polls
//! when they are woken; it writes each reply as its call completes.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::time::Interval;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::config::ServerConfig;
use super::security::{Security, Transport};
use crate::auth::{Access, Grant};
use crate::protocol::{
    Call, CallError, Catalog, CatalogUpdate, DEFAULT_MAX_FRAME, Drain, ErrorCode, ErrorReply,
    FrameCodec, Hello, Message, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION, Pong, Processed,
    ProtocolError, Reply, Role, decode_message, encode_message,
};
use crate::service::{CallContext, CallRequest, Service};
use tokio::sync::watch;
use wasmrpc_client::outbound::{self, Outbound};
use wasmrpc_client::stream::{ReadHalf, Stream, TLS_HANDSHAKE_BYTE};

/// After closing a connection on an error: reads and discards what the
/// caller is still sending, for up to a second, until it closes its side.
/// Closing a socket with unread input makes the kernel reset the connection,
/// which can destroy the error frame that tells the caller why.
async fn linger(mut reader: ReadHalf) {
    use tokio::io::AsyncReadExt;
    let mut scratch = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = reader.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// The first protocol version whose `pong` carries the host's load.
const LOAD_VERSION: u32 = 3;

/// The window of [`ServerConfig::max_cancels`].
const CANCEL_WINDOW: Duration = Duration::from_secs(10);

pub(super) struct Connection {
    service: Arc<dyn Service>,
    config: Arc<ServerConfig>,
    security: Arc<Security>,
    shutdown: CancellationToken,
    /// The other side's address, for the log.
    addr: std::net::SocketAddr,
}

/// Who is on the other side, as the handshake established it.
struct Caller {
    role: Role,
    /// The protocol version of its `hello`: nothing newer is sent to it.
    version: u32,
    /// The token it authenticated with, as the access file says now.
    grant: Option<Arc<Grant>>,
    /// The grant's name, the principal of its calls.
    principal: Option<Arc<str>>,
}

impl Caller {
    /// The code of a call refused for its function: `permission_denied`,
    /// which version 1 lacks; that version gets `unauthenticated`.
    fn denied(&self) -> ErrorCode {
        if self.version < 2 {
            ErrorCode::Unauthenticated
        } else {
            ErrorCode::PermissionDenied
        }
    }

    /// The principal of a call, or why the call is refused: a token's
    /// patterns must match the function, and only a peer host may name the
    /// principal of the calls it forwards.
    fn authorise(&self, call: &Call) -> Result<Option<Arc<str>>, CallError> {
        if self.role == Role::Peer {
            // Vouched for by its certificate, or a plaintext peer on a
            // listener that checks no identity at all (loopback, insecure).
            return Ok(call.principal.as_deref().map(Arc::from));
        }
        if call.principal.is_some() {
            return Err(CallError::new(
                self.denied(),
                Processed::No,
                "only a peer host may name the principal of a call",
            ));
        }
        match &self.grant {
            Some(grant) if !grant.allows(&call.function) => Err(CallError::new(
                self.denied(),
                Processed::No,
                format!("token `{}` may not call `{}`", grant.name(), call.function),
            )),
            _ => Ok(self.principal.clone()),
        }
    }
}

/// The next version of the access file, for a connection that follows it;
/// never resolves for one that does not.
async fn access_changed(changes: &mut Option<watch::Receiver<Arc<Access>>>) -> Arc<Access> {
    if let Some(receiver) = changes {
        if receiver.changed().await.is_ok() {
            return receiver.borrow_and_update().clone();
        }
        // The host is going away; the connection goes with it.
        *changes = None;
    }
    std::future::pending().await
}

type Frames = FramedRead<ReadHalf, FrameCodec>;

/// A call's outcome, or the panic that ended it.
type Outcome = std::thread::Result<Result<ciborium::Value, CallError>>;

/// Calls that did not finish in their first poll, with their ids.
type Pending = super::pending::Pending<(u64, Outcome)>;

/// The calls of one connection.
struct Calls {
    /// The cancellation of each call in flight, by id.
    in_flight: HashMap<u64, CancellationToken>,
    pending: Pending,
    /// The host is draining: new calls are refused.
    draining: bool,
    /// Cancels received in the current window: (window start, count).
    cancels: (Instant, u32),
}

/// The next frame already in the read buffer, without reading the socket.
fn next_buffered(frames: &mut Frames) -> Result<Option<bytes::BytesMut>, ProtocolError> {
    // The codec is two words; a copy lets it work on the buffer it reads.
    let mut codec = frames.decoder().clone();
    let frame = codec.decode(frames.read_buffer_mut());
    *frames.decoder_mut() = codec;
    frame
}

impl Connection {
    pub fn new(
        service: Arc<dyn Service>,
        config: Arc<ServerConfig>,
        security: Arc<Security>,
        shutdown: CancellationToken,
        addr: std::net::SocketAddr,
    ) -> Self {
        Connection {
            service,
            config,
            security,
            shutdown,
            addr,
        }
    }

    /// Refuses a connection over the cap with an error frame.
    pub async fn refuse(self, stream: Stream) {
        let (_, writer) = stream.into_split();
        let (out, writer) = Outbound::start(writer, usize::MAX);
        let error = ErrorReply::connection(
            ErrorCode::ResourceExhausted,
            format!(
                "connection limit of {} reached",
                self.config.max_connections
            ),
        );
        if let Ok(frame) = encode_message(&Message::Error(error), self.config.max_frame) {
            out.send(&frame);
        }
        out.close();
        writer.finish(Duration::from_secs(1)).await;
    }

    /// Serves the connection until the peer closes it, breaks the protocol,
    /// or the host drains.
    pub async fn run(self, stream: Stream, transport: Transport) -> Result<(), ProtocolError> {
        let (reader, writer) = stream.into_split();
        let mut frames = FramedRead::new(reader, FrameCodec::new(self.config.max_frame));
        let (tx, writer) = Outbound::start(writer, self.config.max_outbound);
        // Slow senders, idle connections and cancel floods are checked on a
        // tick; a quarter of the frame timeout keeps the check timely.
        let mut tick = tokio::time::interval(
            (self.config.frame_timeout / 4)
                .clamp(Duration::from_millis(20), Duration::from_secs(1)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let result = match self
            .handshake(&mut frames, &tx, &mut tick, &transport)
            .await
        {
            Ok(caller) => self.serve_calls(&mut frames, &tx, &mut tick, caller).await,
            Err(error) => {
                self.log_refusal(&error, &frames);
                Err(error)
            }
        };
        if let Err(error) = &result {
            self.config.metrics.connection_ended(error);
            // Tell the peer why before closing, when the socket still works.
            if !matches!(error, ProtocolError::Io(_)) {
                // The last frame; queued past the bound on replies, so that
                // a caller that stopped reading still learns why when it
                // reads again.
                let reply = Message::Error(ErrorReply::connection(error.code(), error.to_string()));
                if let Err(error) = tx.queue_last(&reply, self.config.max_frame) {
                    tracing::error!("cannot encode `{}`: {error}", reply.kind());
                }
            }
        }
        tx.close();
        // Flush what is queued; a caller that stopped reading gets 5 s.
        writer.finish(Duration::from_secs(5)).await;
        if result.is_err() {
            linger(frames.into_inner()).await;
        }
        result
    }

    /// Logs, with the caller's address, a handshake that failed for a reason
    /// an operator may want to see: a refused identity, or a TLS client at a
    /// plaintext port.
    fn log_refusal(&self, error: &ProtocolError, frames: &Frames) {
        let addr = self.addr;
        match error {
            ProtocolError::Unauthenticated(why) => {
                tracing::warn!(%addr, "refused a connection: {why}");
            }
            ProtocolError::FrameTooLarge { .. }
                if frames.read_buffer().starts_with(&[TLS_HANDSHAKE_BYTE, 3]) =>
            {
                tracing::warn!(%addr, "refused a TLS connection: this port speaks plaintext");
            }
            _ => {}
        }
    }

    /// Exchanges `hello`; returns who the caller is.
    ///
    /// The `hello` must start arriving within the hello timeout, and, like
    /// every frame, be complete within the frame timeout of its first byte.
    async fn handshake(
        &self,
        frames: &mut Frames,
        tx: &Outbound,
        tick: &mut Interval,
        transport: &Transport,
    ) -> Result<Caller, ProtocolError> {
        let hello_due = tokio::time::sleep(self.config.hello_timeout);
        tokio::pin!(hello_due);
        let mut overdue = false;
        let first = loop {
            tokio::select! {
                biased;
                frame = frames.next() => break frame,
                () = &mut hello_due, if !overdue => overdue = true,
                _ = tick.tick() => {}
            }
            match frames.decoder().partial_since() {
                Some(since) if since.elapsed() >= self.config.frame_timeout => {
                    return Err(ProtocolError::FrameTimeout(self.config.frame_timeout));
                }
                None if overdue => {
                    return Err(ProtocolError::Unexpected {
                        got: "nothing",
                        why: format!("no `hello` within {:?}", self.config.hello_timeout),
                    });
                }
                _ => {}
            }
        };
        let body = match first {
            Some(body) => body?,
            None => return Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        };
        match decode_message(&body)? {
            Message::Hello(hello) if hello.role == Role::Host => Err(ProtocolError::Unexpected {
                got: "hello",
                why: "role `host` is only sent by the accepting host; say `client` or `peer`"
                    .into(),
            }),
            Message::Hello(hello)
                if (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.version) =>
            {
                tracing::debug!(role = ?hello.role, region = ?hello.region, host_id = ?hello.host_id, "hello");
                let vouched = self.check_peer(&hello, transport)?;
                let grant = self.authenticate(&hello, vouched)?;
                let ours = Hello {
                    // The caller's version: it learns that its own is spoken.
                    version: hello.version,
                    role: Role::Host,
                    region: Some(self.config.region.clone()),
                    host_id: Some(self.config.host_id.clone()),
                    max_in_flight: u32::try_from(self.config.max_in_flight).ok(),
                    token: None,
                };
                self.send(tx, Message::Hello(ours));
                tx.flush();
                Ok(Caller {
                    role: hello.role,
                    version: hello.version,
                    principal: grant.as_ref().map(|g| Arc::from(g.name())),
                    grant,
                })
            }
            Message::Hello(hello) => Err(ProtocolError::Version {
                got: hello.version,
                ours: PROTOCOL_VERSION,
            }),
            Message::Call(call) => {
                // Answer the call itself so the caller is not left waiting.
                self.answer_error(
                    tx,
                    call.id,
                    CallError::new(
                        ErrorCode::ProtocolError,
                        Processed::No,
                        "the connection must start with `hello`",
                    ),
                );
                Err(ProtocolError::Unexpected {
                    got: "call",
                    why: "the connection must start with `hello`".into(),
                })
            }
            other => Err(ProtocolError::Unexpected {
                got: other.kind(),
                why: "the connection must start with `hello`".into(),
            }),
        }
    }

    /// Whether a `peer` hello is vouched for by its certificate. On a TLS
    /// connection the `peer` role needs a certificate of a region of the
    /// topology, the region the hello claims; on a plaintext one (loopback,
    /// or `--insecure`) there is no identity to check.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Unauthenticated`] saying what the certificate lacks.
    fn check_peer(&self, hello: &Hello, transport: &Transport) -> Result<bool, ProtocolError> {
        if hello.role != Role::Peer || !transport.tls {
            return Ok(false);
        }
        let claimed = hello.region.as_deref().unwrap_or("");
        let refuse = |why: String| Err(ProtocolError::Unauthenticated(why));
        match &transport.region {
            None => refuse(format!(
                "the `peer` role needs a host certificate naming region `{claimed}`; this connection has none"
            )),
            Some(region) if region != claimed => refuse(format!(
                "the certificate names region `{region}`, but the `peer` hello claims `{claimed}`"
            )),
            Some(region)
                if !self
                    .security
                    .regions
                    .read()
                    .expect("regions lock")
                    .contains(region) =>
            {
                refuse(format!("region `{region}` is not in this host's topology"))
            }
            Some(_) => Ok(true),
        }
    }

    /// The caller's token, checked against the access file, if the host has
    /// one. Peer hosts vouched for by their certificate need none: the hosts
    /// their calls entered by checked them.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Unauthenticated`]: no token, or one the file does not
    /// hold. The message never repeats the token.
    fn authenticate(
        &self,
        hello: &Hello,
        vouched: bool,
    ) -> Result<Option<Arc<Grant>>, ProtocolError> {
        let Some(access) = &self.security.access else {
            return Ok(None);
        };
        let refuse = |why: String| Err(ProtocolError::Unauthenticated(why));
        if vouched {
            return Ok(None);
        }
        if hello.role == Role::Peer {
            return refuse(
                "a host with an access file accepts the `peer` role only over mutual TLS".into(),
            );
        }
        let Some(token) = &hello.token else {
            if hello.version < 2 {
                return refuse(format!(
                    "this host requires a token, which protocol version {} cannot send: upgrade the client",
                    hello.version
                ));
            }
            return refuse(
                "this host requires a token in `hello` (the CLI's --token, or WASMRPC_TOKEN)"
                    .into(),
            );
        };
        match access.current().authenticate(token.expose()) {
            Some(grant) => Ok(Some(grant)),
            None => refuse("the token is not valid here: unknown, or revoked".into()),
        }
    }

    async fn serve_calls(
        &self,
        frames: &mut Frames,
        tx: &Outbound,
        tick: &mut Interval,
        mut caller: Caller,
    ) -> Result<(), ProtocolError> {
        // A connection with a token follows the access file: a revoked token
        // closes it, changed patterns apply to its next call.
        let mut access_changes = match (&caller.grant, &self.security.access) {
            (Some(_), Some(access)) => Some(access.subscribe()),
            _ => None,
        };
        let _open = self.config.metrics.connection(caller.role);
        // Peers learn this host's own functions now and after every change.
        let is_peer = caller.role == Role::Peer;
        let mut catalog_changes = self.service.local_changes();
        if is_peer {
            catalog_changes.mark_changed();
        }
        let mut calls = Calls {
            in_flight: HashMap::new(),
            pending: Pending::new(),
            draining: false,
            cancels: (Instant::now(), 0),
        };
        // The idle time counts from here: the last frame read, or the last
        // call in flight answered, whichever came later.
        let mut active_at = Instant::now();
        // Made once, not on every turn of the loop.
        let overflowed = tx.overflowed();
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(overflowed, shutdown);
        let result = 'serve: loop {
            if calls.draining && calls.in_flight.is_empty() {
                break Ok(());
            }
            tokio::select! {
                biased;
                Some(first) = calls.pending.next(), if !calls.pending.is_empty() => {
                    // Calls that finished together (a batch of replies from
                    // a peer) answer in one write: take every finished one
                    // before the flush below. `poll!` never suspends; it
                    // polls with this task's waker, as the select does.
                    let mut finished = Some(first);
                    while let Some((id, outcome)) = finished {
                        calls.in_flight.remove(&id);
                        self.reply(tx, id, outcome);
                        finished = match futures::poll!(calls.pending.next()) {
                            Poll::Ready(next) => next,
                            Poll::Pending => None,
                        };
                    }
                    if calls.in_flight.is_empty() {
                        active_at = Instant::now();
                    }
                }
                () = &mut overflowed => break Err(ProtocolError::SlowReader(self.config.max_outbound)),
                _ = tick.tick() => {
                    let since = frames.decoder().partial_since();
                    if since.is_some_and(|since| since.elapsed() >= self.config.frame_timeout) {
                        break Err(ProtocolError::FrameTimeout(self.config.frame_timeout));
                    }
                    if calls.in_flight.is_empty() && since.is_none()
                        && active_at.elapsed() >= self.config.idle_timeout
                    {
                        break Err(ProtocolError::Idle(self.config.idle_timeout));
                    }
                }
                access = access_changed(&mut access_changes) => {
                    let earlier = caller.grant.take().expect("only a connection with a token follows the file");
                    match access.regrant(&earlier) {
                        Some(grant) => {
                            caller.principal = Some(Arc::from(grant.name()));
                            caller.grant = Some(grant);
                        }
                        None => break Err(ProtocolError::Unauthenticated(format!(
                            "token `{}` was revoked",
                            earlier.name()
                        ))),
                    }
                }
                Ok(()) = catalog_changes.changed(), if is_peer => {
                    let functions = self.service.local_catalog();
                    self.send(tx, Message::CatalogUpdate(CatalogUpdate { functions }));
                }
                () = &mut shutdown, if !calls.draining => {
                    calls.draining = true;
                    let drain = Drain { message: "host is shutting down".into() };
                    self.send(tx, Message::Drain(drain));
                }
                frame = frames.next() => {
                    let mut body = match frame {
                        None => break Ok(()),
                        Some(Err(error)) => break Err(error),
                        Some(Ok(body)) => body,
                    };
                    active_at = Instant::now();
                    let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
                    // This frame and every complete one read with it form a
                    // batch, handled with the thread corked so that the
                    // requests its calls forward share one write per peer.
                    // The cork cannot outlive the batch: its guard is not
                    // `Send`, and nothing here awaits.
                    let _corked = outbound::cork();
                    loop {
                        let handled = decode_message(&body)
                            .and_then(|message| self.on_message(message, &caller, &mut calls, tx, &waker));
                        if let Err(error) = handled {
                            break 'serve Err(error);
                        }
                        body = match next_buffered(frames) {
                            Ok(Some(body)) => body,
                            Ok(None) => break,
                            Err(error) => break 'serve Err(error),
                        };
                    }
                }
            }
            // Replies of a batch of pipelined calls share one write: flush
            // once no complete frame is left to read.
            if !frames.decoder().holds_frame(frames.read_buffer()) {
                tx.flush();
            }
        };
        // The caller is gone or broke the protocol: stop the work it asked
        // for. A caller that only closed its sending side still reads: each
        // of its calls is answered. After a connection-level error nothing
        // is: that error is the last frame.
        let caller_closed = matches!(result, Ok(()) | Err(ProtocolError::Io(_)));
        for (&id, token) in &calls.in_flight {
            token.cancel();
            if caller_closed {
                self.answer_error(
                    tx,
                    id,
                    CallError::new(
                        ErrorCode::Cancelled,
                        Processed::Maybe,
                        "call cancelled: the caller closed its side of the connection",
                    ),
                );
            }
        }
        result
    }

    /// Handles one message from the caller, without waiting for anything.
    ///
    /// # Errors
    ///
    /// A message a caller may not send, a cancel flood, or a call id already
    /// in flight: the connection ends with that error.
    fn on_message(
        &self,
        message: Message,
        caller: &Caller,
        calls: &mut Calls,
        tx: &Outbound,
        waker: &Waker,
    ) -> Result<(), ProtocolError> {
        match message {
            Message::Call(call) => self.start_call(call, caller, calls, tx, waker),
            Message::Cancel(cancel) => {
                if let Some(token) = calls.in_flight.get(&cancel.id) {
                    token.cancel();
                }
                if calls.cancels.0.elapsed() >= CANCEL_WINDOW {
                    calls.cancels = (Instant::now(), 0);
                }
                calls.cancels.1 += 1;
                if calls.cancels.1 > self.config.max_cancels {
                    return Err(ProtocolError::TooManyCancels {
                        limit: self.config.max_cancels,
                        window: CANCEL_WINDOW,
                    });
                }
                Ok(())
            }
            Message::List(list) => {
                let mut functions = self.service.catalog();
                // A caller sees what it may call.
                if let Some(grant) = &caller.grant {
                    functions.retain(|f| grant.allows(&f.name));
                }
                let catalog = Message::Catalog(Catalog {
                    id: list.id,
                    functions,
                });
                // A refused frame leaves nothing queued.
                if tx.queue_message(&catalog, self.config.max_frame).is_err() {
                    self.answer_error(
                        tx,
                        list.id,
                        CallError::new(
                            ErrorCode::ResourceExhausted,
                            Processed::Yes,
                            "the catalog does not fit in one frame",
                        ),
                    );
                }
                Ok(())
            }
            Message::Ping(ping) => {
                // This host's load, for callers that can read it: peers
                // rank the hosts they forward to by it.
                let load =
                    (caller.version >= LOAD_VERSION).then(|| self.config.metrics.load().report());
                let pong = Pong {
                    nonce: ping.nonce,
                    load,
                };
                self.send(tx, Message::Pong(pong));
                Ok(())
            }
            Message::Pong(_) => Ok(()),
            other => Err(ProtocolError::Unexpected {
                got: other.kind(),
                why: "hosts do not accept it from a caller".into(),
            }),
        }
    }

    /// Starts a call, or refuses it with an error reply. The call is polled
    /// once here, with `waker` (this task's); most calls are done after it.
    ///
    /// # Errors
    ///
    /// A call id already in flight is a protocol error: the caller could not
    /// tell the two answers apart.
    fn start_call(
        &self,
        call: Call,
        caller: &Caller,
        calls: &mut Calls,
        tx: &Outbound,
        waker: &Waker,
    ) -> Result<(), ProtocolError> {
        if calls.in_flight.contains_key(&call.id) {
            return Err(ProtocolError::Unexpected {
                got: "call",
                why: format!(
                    "call id {} is already in flight on this connection",
                    call.id
                ),
            });
        }
        let principal = match caller.authorise(&call) {
            Ok(principal) => principal,
            Err(error) => {
                tracing::info!(addr = %self.addr, "refused a call: {}", error.message);
                self.count_refusal(&call.function, &error);
                self.answer_error(tx, call.id, error);
                return Ok(());
            }
        };
        if caller.role == Role::Peer {
            tracing::debug!(
                function = %call.function,
                principal = %principal.as_deref().unwrap_or("-"),
                from = %call.visited.last().map_or("-", String::as_str),
                // The caller's trace context: this host's span starts in
                // the router.
                trace_id = %crate::observe::trace::trace_id(&call.metadata),
                "forwarded call"
            );
        }
        let refusal = if calls.draining {
            Some(CallError::new(
                ErrorCode::Unavailable,
                Processed::No,
                "host is draining; call another host",
            ))
        } else if calls.in_flight.len() >= self.config.max_in_flight {
            Some(CallError::new(
                ErrorCode::ResourceExhausted,
                Processed::No,
                format!(
                    "{} calls already in flight on this connection (the limit)",
                    self.config.max_in_flight
                ),
            ))
        } else {
            None
        };
        if let Some(error) = refusal {
            self.count_refusal(&call.function, &error);
            self.answer_error(tx, call.id, error);
            return Ok(());
        }

        let timeout = call
            .deadline_ms
            .map_or(self.config.default_deadline, Duration::from_millis)
            .min(self.config.max_deadline);
        let context = CallContext {
            hops: call.hops,
            visited: call.visited,
            metadata: call.metadata,
            principal,
            ..CallContext::new(timeout)
        };
        let cancel = context.cancel.clone();
        let request = CallRequest {
            function: call.function,
            args: call.args,
            context,
            from_peer: caller.role == Role::Peer,
        };
        let id = call.id;
        // A panic, in this poll or a later one, ends the call, not the
        // connection.
        let mut running = AssertUnwindSafe(self.service.clone().call(request)).catch_unwind();
        // One poll here: most calls are done after it, and their reply goes
        // out with no task hand-over.
        match running.poll_unpin(&mut Context::from_waker(waker)) {
            Poll::Ready(outcome) => self.reply(tx, id, outcome),
            Poll::Pending => {
                // The rest runs among the pending calls; the id and the
                // in-flight slot are freed before the reply is queued, so
                // the caller may reuse both at once.
                calls.in_flight.insert(id, cancel);
                calls
                    .pending
                    .push(Box::pin(running.map(move |outcome| (id, outcome))));
            }
        }
        Ok(())
    }

    /// Counts a call refused before routing; its function is a label only
    /// if the catalog has it.
    fn count_refusal(&self, function: &str, error: &CallError) {
        let metrics = &self.config.metrics;
        if metrics.is_on() {
            metrics.refused(function, self.service.knows(function), error);
        }
    }

    /// Answers call `id` with `error`, from this host's region.
    fn answer_error(&self, tx: &Outbound, id: u64, error: CallError) {
        let error = error.in_region(&self.config.region);
        self.send(tx, Message::Error(ErrorReply::for_call(id, error)));
    }

    /// Queues the reply to call `id`.
    fn reply(&self, tx: &Outbound, id: u64, outcome: Outcome) {
        let outcome = outcome.unwrap_or_else(|_| {
            Err(
                CallError::internal("the host panicked while running the call")
                    .in_region(&self.config.region),
            )
        });
        queue_reply(tx, id, outcome, self.config.max_frame, &self.config.region);
    }

    /// Queues `message`; the serving loop flushes once no complete frame is
    /// left to read.
    fn send(&self, tx: &Outbound, message: Message) {
        if let Err(error) = tx.queue_message(&message, self.config.max_frame) {
            tracing::error!("cannot encode `{}`: {error}", message.kind());
        }
    }
}

/// Queues the frame answering call `id`: its value or error, or
/// `resource_exhausted` when the value does not fit in a frame.
fn queue_reply(
    tx: &Outbound,
    id: u64,
    outcome: Result<ciborium::Value, CallError>,
    max_frame: usize,
    region: &str,
) {
    let message = match outcome {
        Ok(value) => Message::Reply(Reply { id, value }),
        Err(error) => Message::Error(ErrorReply::for_call(id, error)),
    };
    let queued = tx.queue_message(&message, max_frame).or_else(|error| {
        let error = CallError::new(
            ErrorCode::ResourceExhausted,
            Processed::Yes,
            format!("the reply does not fit in a frame: {error}"),
        )
        .in_region(region);
        tx.queue_message(&Message::Error(ErrorReply::for_call(id, error)), max_frame)
    });
    if let Err(error) = queued {
        tracing::error!("cannot encode the reply to call {id}: {error}");
    }
}

/// Tells a plaintext caller at a TLS listener why it is refused, in a frame
/// it can read, then closes.
pub(super) async fn refuse_plaintext(tcp: tokio::net::TcpStream, why: &str) {
    let (reader, writer) = Stream::plain(tcp).into_split();
    let (out, writer) = Outbound::start(writer, usize::MAX);
    let error = ErrorReply::connection(ErrorCode::Unauthenticated, why);
    if let Ok(frame) = encode_message(&Message::Error(error), DEFAULT_MAX_FRAME) {
        out.send(&frame);
    }
    out.close();
    writer.finish(Duration::from_secs(1)).await;
    linger(reader).await;
}
