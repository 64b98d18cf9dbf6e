//! The floor: a raw length-prefixed TCP echo of two integers.
//!
//! A request is a frame (4-byte big-endian length, then the body) holding two
//! big-endian `i64`s; the reply is a frame holding their wrapping sum. It is
//! the least work any RPC over TCP can do, with the same framing, the same
//! runtime (tokio) and the same coalesced writes as wasmrpc, and none of its
//! envelope, routing or sandboxing. Replies come back in request order, so a
//! client matches them first-in, first-out.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Length of a request body: two `i64`s.
const REQUEST_LEN: usize = 16;
/// Length of a reply body: one `i64`.
const REPLY_LEN: usize = 8;

/// Serves the floor protocol on every connection `listener` accepts.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(error) = serve_connection(stream).await {
                eprintln!("floor: connection failed: {error}");
            }
        });
    }
}

/// Relays every connection `listener` accepts to `upstream`, byte for byte
/// both ways: the least a forwarding hop can cost (no parsing, no routing),
/// the reference for wasmrpc's forwarded calls.
pub async fn relay(listener: TcpListener, upstream: SocketAddr) -> io::Result<()> {
    loop {
        let (mut inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            let relayed = async {
                inbound.set_nodelay(true)?;
                let mut outbound = TcpStream::connect(upstream).await?;
                outbound.set_nodelay(true)?;
                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
            };
            if let Err(error) = relayed.await {
                eprintln!("floor relay: connection failed: {error}");
            }
        });
    }
}

/// Answers requests in order; flushes replies once no complete request is
/// left in the read buffer, so pipelined requests share writes.
async fn serve_connection(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    loop {
        let len = match reader.read_u32().await {
            Ok(len) => len as usize,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        };
        if len != REQUEST_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected a {REQUEST_LEN}-byte request, got {len} bytes"),
            ));
        }
        let a = reader.read_i64().await?;
        let b = reader.read_i64().await?;
        writer.write_u32(REPLY_LEN as u32).await?;
        writer.write_i64(a.wrapping_add(b)).await?;
        if !holds_complete_frame(reader.buffer()) {
            writer.flush().await?;
        }
    }
}

/// Whether `buf` starts with a whole frame.
fn holds_complete_frame(buf: &[u8]) -> bool {
    match buf.first_chunk::<4>() {
        Some(len) => buf.len() >= 4 + u32::from_be_bytes(*len) as usize,
        None => false,
    }
}

/// A pipelining floor client on one connection. Cheap to clone; clones share
/// the connection and may call concurrently.
#[derive(Clone)]
pub struct Client {
    requests: mpsc::Sender<Request>,
}

struct Request {
    frame: [u8; 4 + REQUEST_LEN],
    reply: oneshot::Sender<i64>,
}

/// Callers waiting for replies, oldest first.
type Waiting = Arc<Mutex<VecDeque<oneshot::Sender<i64>>>>;

impl Client {
    /// Connects and starts the connection's writer and reader tasks.
    pub async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let waiting = Waiting::default();
        let (requests, queue) = mpsc::channel(1024);
        tokio::spawn(write_requests(writer, queue, waiting.clone()));
        tokio::spawn(read_replies(reader, waiting));
        Ok(Client { requests })
    }

    /// Returns `a + b` as computed by the server.
    pub async fn add(&self, a: i64, b: i64) -> anyhow::Result<i64> {
        let mut frame = [0u8; 4 + REQUEST_LEN];
        frame[..4].copy_from_slice(&(REQUEST_LEN as u32).to_be_bytes());
        frame[4..12].copy_from_slice(&a.to_be_bytes());
        frame[12..].copy_from_slice(&b.to_be_bytes());
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { frame, reply })
            .await
            .map_err(|_| anyhow!("floor connection closed"))?;
        answer.await.context("floor connection closed")
    }
}

/// Writes queued requests, coalescing whatever is queued into one flush
/// (as wasmrpc's connections do).
async fn write_requests(
    writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Request>,
    waiting: Waiting,
) -> io::Result<()> {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(mut request) = queue.recv().await {
        loop {
            waiting
                .lock()
                .expect("floor client lock")
                .push_back(request.reply);
            writer.write_all(&request.frame).await?;
            match queue.try_recv() {
                Ok(next) => request = next,
                Err(_) => break,
            }
        }
        writer.flush().await?;
    }
    writer.shutdown().await
}

/// Hands each reply to the oldest waiting caller.
async fn read_replies(reader: OwnedReadHalf, waiting: Waiting) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    loop {
        let len = reader.read_u32().await? as usize;
        if len != REPLY_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected an {REPLY_LEN}-byte reply, got {len} bytes"),
            ));
        }
        let sum = reader.read_i64().await?;
        let caller = waiting.lock().expect("floor client lock").pop_front();
        if let Some(caller) = caller {
            let _ = caller.send(sum);
        }
    }
}
