//! Frames on their way out of one socket.
//!
//! Whoever has a frame to send writes it to the socket itself, at once, when
//! the socket takes it: a reply or a request costs no hand-over to another
//! task (a thread wake-up each way, the largest cost of a small call). While
//! one caller writes, others append to the buffer, and the writer takes
//! their frames along, so writes coalesce under load. When the socket would
//! block, a background task waits until it is writable and writes the rest.
//! Bytes not yet written are bounded: past the bound, frames are refused and
//! [`Outbound::overflowed`] fires (a peer that does not read).
//!
//! A connection serving a batch of calls read in one go corks its thread
//! ([`cork`]): requests its calls send to peers meanwhile are queued, and
//! written when the cork is lifted, one write per peer for the whole batch, instead
//! of one per forwarded call.

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::stream::{WriteHalf, Written};
use wasmrpc_protocol::{Message, ProtocolError, encode_message_into};

/// The write side of a connection, shared by everyone who sends on it.
pub struct Outbound {
    socket: WriteHalf,
    state: Mutex<State>,
    /// Wakes the background writer: it was handed the socket, or the
    /// outbound closed.
    wake: Notify,
    limit: usize,
    overflow: CancellationToken,
}

#[derive(Default)]
struct State {
    /// Queued bytes no writer has taken yet.
    buf: BytesMut,
    /// Bytes accepted and not yet written (in `buf` or being written).
    unsent: usize,
    writer: Writer,
    /// Set by [`Outbound::close`]: nothing more is accepted.
    closed: bool,
    /// While a [`Hold`] lives: sends queue without writing.
    held: bool,
    /// Writing failed: queued bytes were dropped and nothing more is accepted.
    failed: bool,
}

/// Who writes to the socket now; only one at a time, so frames never
/// interleave.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Writer {
    #[default]
    Nobody,
    /// A sender, inside [`Outbound::flush`].
    Sender,
    /// The background task, waiting for the socket to be writable.
    Background,
}

impl Outbound {
    /// Wraps `socket`, allowing at most `limit` unwritten bytes, and starts
    /// the background writer. The task ends once the outbound is closed and
    /// everything queued is written (or writing failed); the socket's write
    /// side is then shut down.
    pub fn start(socket: WriteHalf, limit: usize) -> (Arc<Outbound>, WriterTask) {
        let outbound = Arc::new(Outbound {
            socket,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            limit,
            overflow: CancellationToken::new(),
        });
        let writer = tokio::spawn(outbound.clone().background());
        (outbound, WriterTask(writer))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("outbound lock")
    }

    /// Queues `frame` and writes what is queued, unless someone else is
    /// writing (they take it along), or this thread is corked (see [`cork`]).
    /// False when the frame was refused: the bound was exceeded (and
    /// [`Outbound::overflowed`] fires), the outbound is closed, or the
    /// socket failed.
    pub fn send(self: &Arc<Self>, frame: &[u8]) -> bool {
        let appended = self.append(self.limit, |buf| {
            buf.extend_from_slice(frame);
            Ok::<_, std::convert::Infallible>(frame.len())
        });
        let Ok(Some(held)) = appended else {
            return false;
        };
        if !held && !CORKED.with_borrow_mut(|corked| corked.hold(self)) {
            self.flush();
        }
        true
    }

    /// Until the returned guard is dropped, [`Outbound::send`] queues
    /// without writing, from any thread; dropping it writes what was queued.
    /// For a client that has just woken a batch of callers with the replies
    /// it read together: their next requests share one write.
    pub fn hold(&self) -> Hold<'_> {
        self.state().held = true;
        Hold(self)
    }

    /// Queues `message` without writing it yet (see [`Outbound::send`]);
    /// call [`Outbound::flush`] after the last of a batch. The message is
    /// encoded straight into the queue: no frame of its own to allocate and
    /// copy from, which for a large reply is a copy of every byte into memory
    /// the cache does not hold. The lock is held while encoding, so this is
    /// for an outbound with one sender, a connection's replies.
    ///
    /// `Ok(false)` when the frame was refused, as by [`Outbound::send`].
    ///
    /// # Errors
    ///
    /// When `message` cannot be encoded (see [`encode_message_into`]);
    /// nothing is queued then.
    pub fn queue_message(
        &self,
        message: &Message,
        max_frame: usize,
    ) -> Result<bool, ProtocolError> {
        Ok(self
            .append(self.limit, |buf| {
                encode_message_into(message, max_frame, buf)
            })?
            .is_some())
    }

    /// Queues `message` as [`Outbound::queue_message`] does, past the bound
    /// if need be: for the one frame that says why the connection closes,
    /// which a caller that stopped reading must still find when it reads
    /// again. Call [`Outbound::close`] next.
    ///
    /// # Errors
    ///
    /// As [`Outbound::queue_message`].
    pub fn queue_last(&self, message: &Message, max_frame: usize) -> Result<bool, ProtocolError> {
        Ok(self
            .append(usize::MAX, |buf| {
                encode_message_into(message, max_frame, buf)
            })?
            .is_some())
    }

    /// Appends a frame with `write`, which returns its length, unless the
    /// outbound is closed or failed. Past `limit` unsent bytes the frame is
    /// taken back and [`Outbound::overflowed`] fires. `Some(held)` when
    /// accepted, with whether the outbound is held (see [`Outbound::hold`]).
    fn append<E>(
        &self,
        limit: usize,
        write: impl FnOnce(&mut BytesMut) -> Result<usize, E>,
    ) -> Result<Option<bool>, E> {
        let mut state = self.state();
        if state.closed || state.failed {
            return Ok(None);
        }
        let start = state.buf.len();
        let len = write(&mut state.buf)?;
        if state.unsent + len > limit {
            state.buf.truncate(start);
            drop(state);
            self.overflow.cancel();
            return Ok(None);
        }
        state.unsent += len;
        Ok(Some(state.held))
    }

    /// Writes what is queued, now, as far as the socket takes it without
    /// blocking; the background writer does the rest.
    pub fn flush(&self) {
        let mut state = self.state();
        if state.writer != Writer::Nobody || state.buf.is_empty() || state.failed {
            return;
        }
        state.writer = Writer::Sender;
        loop {
            let mut chunk = state.buf.split();
            drop(state);
            let outcome = self.socket.write_now(&mut chunk);
            state = self.state();
            match outcome {
                Ok(Written { bytes, blocked }) => {
                    state.unsent -= bytes;
                    if blocked {
                        // The socket is full: what is left goes first.
                        chunk.extend_from_slice(&state.buf);
                        state.buf = chunk;
                        state.writer = Writer::Background;
                        drop(state);
                        self.wake.notify_one();
                        return;
                    }
                    if state.buf.is_empty() {
                        state.writer = Writer::Nobody;
                        let closed = state.closed;
                        drop(state);
                        if closed {
                            self.wake.notify_one();
                        }
                        return;
                    }
                }
                Err(error) => {
                    self.fail(state, &error);
                    return;
                }
            }
        }
    }

    fn fail(&self, mut state: MutexGuard<'_, State>, error: &io::Error) {
        tracing::debug!("writing to the socket failed: {error}");
        state.failed = true;
        state.buf.clear();
        state.unsent = 0;
        state.writer = Writer::Nobody;
        drop(state);
        self.wake.notify_one();
    }

    /// Counts written bytes out of `unsent`; whether the socket blocked
    /// again, or `None` (and failed) on an error.
    fn account(&self, outcome: io::Result<Written>) -> Option<bool> {
        let mut state = self.state();
        match outcome {
            Ok(Written { bytes, blocked }) => {
                state.unsent -= bytes;
                Some(blocked)
            }
            Err(error) => {
                self.fail(state, &error);
                None
            }
        }
    }

    /// Resolves once a frame was refused for exceeding the bound.
    pub async fn overflowed(&self) {
        self.overflow.cancelled().await;
    }

    /// Accepts nothing more; the background writer writes what is queued,
    /// shuts the socket's write side down and ends.
    pub fn close(&self) {
        self.state().closed = true;
        self.wake.notify_one();
    }

    async fn background(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            while let Some(mut chunk) = self.take_for_background() {
                // Handed over because the socket was full: wait for room,
                // and write until it has taken everything (chunk and any
                // encrypted bytes owed).
                loop {
                    let outcome = match self.socket.writable().await {
                        Ok(()) => self.socket.write_now(&mut chunk),
                        Err(error) => Err(error),
                    };
                    if self.account(outcome) != Some(true) {
                        break;
                    }
                }
            }
            if self.finished() {
                self.socket.shutdown();
                return;
            }
        }
    }

    /// What the background writer should write now, if it is its turn: it
    /// was handed the socket, or the outbound closed with bytes never flushed.
    fn take_for_background(&self) -> Option<BytesMut> {
        let mut state = self.state();
        let mine = match state.writer {
            Writer::Background => true,
            Writer::Nobody => state.closed && !state.buf.is_empty() && !state.failed,
            Writer::Sender => false,
        };
        if !mine || state.failed {
            return None;
        }
        if state.buf.is_empty() && !self.socket.owes() {
            state.writer = Writer::Nobody;
            return None;
        }
        state.writer = Writer::Background;
        Some(state.buf.split())
    }

    /// Whether the background writer is done: closed and all written, or failed.
    fn finished(&self) -> bool {
        let state = self.state();
        state.failed || (state.closed && state.writer == Writer::Nobody && state.buf.is_empty())
    }
}

thread_local! {
    static CORKED: RefCell<Cork> = const {
        RefCell::new(Cork {
            active: false,
            held: Vec::new(),
        })
    };
}

/// This thread's cork: whether it is in place, and the outbounds with
/// frames held back by it.
struct Cork {
    active: bool,
    held: Vec<Arc<Outbound>>,
}

impl Cork {
    /// Whether `outbound`'s queued frames wait for the cork to be lifted.
    fn hold(&mut self, outbound: &Arc<Outbound>) -> bool {
        if self.active && !self.held.iter().any(|h| Arc::ptr_eq(h, outbound)) {
            self.held.push(outbound.clone());
        }
        self.active
    }
}

/// Corks this thread until the returned guard is dropped: meanwhile
/// [`Outbound::send`] on this thread queues without writing, and dropping the
/// guard writes what was held back, one write per outbound.
///
/// The cork belongs to the thread, so it must be lifted before the task that
/// took it can be suspended, or another task on the thread would find its
/// sends held. The compiler checks this: the guard is not `Send`, so a task
/// that keeps it across an `.await` is not `Send` and cannot be spawned on
/// the multi-threaded runtime.
///
/// ```compile_fail
/// async fn serve() {
///     let _corked = wasmrpc_client::outbound::cork();
///     tokio::task::yield_now().await;
/// }
/// tokio::spawn(serve());
/// ```
///
/// A cork taken while the thread is already corked leaves it to the outer
/// one.
pub fn cork() -> Corked {
    let outer = CORKED.with_borrow_mut(|corked| std::mem::replace(&mut corked.active, true));
    Corked {
        outer,
        not_send: std::marker::PhantomData,
    }
}

/// The cork of this thread ([`cork`]); dropping it lifts the cork, however
/// the corked scope ends.
#[must_use = "the cork is lifted when the guard is dropped"]
pub struct Corked {
    /// The thread was corked already: the outer guard lifts it.
    outer: bool,
    not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Corked {
    fn drop(&mut self) {
        if self.outer {
            return;
        }
        let held = CORKED.with_borrow_mut(|corked| {
            corked.active = false;
            std::mem::take(&mut corked.held)
        });
        for outbound in held {
            outbound.flush();
        }
    }
}

/// An [`Outbound::hold`]: dropping it (however its holder ends) writes what
/// was queued meanwhile.
#[must_use = "the hold ends when the guard is dropped"]
pub struct Hold<'a>(&'a Outbound);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.state().held = false;
        self.0.flush();
    }
}

/// The background writer of an [`Outbound`].
pub struct WriterTask(tokio::task::JoinHandle<()>);

impl WriterTask {
    /// After [`Outbound::close`]: waits up to `limit` for what is queued to
    /// be written, then drops the rest (a peer that stopped reading).
    pub async fn finish(mut self, limit: Duration) {
        if tokio::time::timeout(limit, &mut self.0).await.is_err() {
            self.0.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// An outbound writing to one end of a loopback connection, and the
    /// other end.
    async fn pair() -> (Arc<Outbound>, WriterTask, TcpStream) {
        pair_bounded(1 << 20).await
    }

    /// [`pair`], allowing `limit` unwritten bytes.
    async fn pair_bounded(limit: usize) -> (Arc<Outbound>, WriterTask, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connecting = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, theirs) = tokio::join!(connecting, listener.accept());
        let (_, writer) = crate::stream::Stream::plain(ours.unwrap()).into_split();
        let (outbound, task) = Outbound::start(writer, limit);
        (outbound, task, theirs.unwrap().0)
    }

    /// Whatever `peer` can read without waiting.
    fn readable_now(peer: &TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match peer.try_read(&mut chunk) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Reads until `want` bytes arrived, or a second passed.
    async fn read_bytes(peer: &mut TcpStream, want: usize) -> Vec<u8> {
        let mut got = vec![0u8; want];
        tokio::time::timeout(Duration::from_secs(1), peer.read_exact(&mut got))
            .await
            .expect("the bytes arrive")
            .unwrap();
        got
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_send_writes_at_once_and_a_corked_send_waits_for_the_cork_to_lift() {
        let (first, _task1, mut peer1) = pair().await;
        let (second, _task2, mut peer2) = pair().await;

        assert!(first.send(b"now"));
        assert_eq!(read_bytes(&mut peer1, 3).await, b"now");

        let corked = cork();
        assert!(first.send(b"one,"));
        assert!(second.send(b"two,"));
        assert!(first.send(b"three"));
        // A cork within a cork leaves the lifting to the outer one.
        drop(cork());
        // Nothing written while corked (loopback delivers a write at once).
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(readable_now(&peer1), b"");
        assert_eq!(readable_now(&peer2), b"");
        drop(corked);
        assert_eq!(read_bytes(&mut peer1, 9).await, b"one,three");
        assert_eq!(read_bytes(&mut peer2, 4).await, b"two,");

        // Uncorked again: sends write at once.
        assert!(second.send(b"after"));
        assert_eq!(read_bytes(&mut peer2, 5).await, b"after");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sends_while_held_wait_for_the_hold_to_end_from_any_thread() {
        let (outbound, _task, mut peer) = pair().await;
        let hold = outbound.hold();
        assert!(outbound.send(b"here,"));
        let elsewhere = outbound.clone();
        std::thread::spawn(move || assert!(elsewhere.send(b"there")))
            .join()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(readable_now(&peer), b"");
        drop(hold);
        assert_eq!(read_bytes(&mut peer, 10).await, b"here,there");
        assert!(outbound.send(b"now"));
        assert_eq!(read_bytes(&mut peer, 3).await, b"now");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_last_frame_is_queued_past_the_bound_that_refused_others() {
        let (outbound, task, mut peer) = pair_bounded(32).await;
        // Held: nothing is written, so everything queued stays unsent.
        let hold = outbound.hold();
        assert!(outbound.send(&[1; 30]));
        assert!(!outbound.send(&[2; 10]), "past the bound");
        let last = Message::Pong(wasmrpc_protocol::Pong {
            nonce: 7,
            load: None,
        });
        assert!(outbound.queue_last(&last, 1 << 20).unwrap());
        drop(hold);
        outbound.close();
        task.finish(Duration::from_secs(1)).await;
        let mut expected = vec![1; 30];
        expected.extend_from_slice(&wasmrpc_protocol::encode_message(&last, 1 << 20).unwrap());
        let got = read_bytes(&mut peer, expected.len()).await;
        assert_eq!(got, expected);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_guard_lifts_the_cork_even_when_unwinding() {
        let (outbound, _task, mut peer) = pair().await;
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _corked = cork();
            let _inner = cork();
            assert!(outbound.send(b"held"));
            panic!("the serving loop failed");
        }));
        assert!(unwound.is_err());
        assert_eq!(read_bytes(&mut peer, 4).await, b"held");
        assert!(outbound.send(b"free"));
        assert_eq!(read_bytes(&mut peer, 4).await, b"free");
    }
}
