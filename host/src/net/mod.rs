//! Sockets: the host's accept loop and connections, and the multiplexed client.
//!
//! This layer speaks the protocol and hands calls to a [`Service`](crate::service::Service);
//! it knows nothing of plugins or wasmtime.

mod client;
mod connection;
mod server;

pub use client::{CallOptions, Client, ClientOptions};
pub use server::{ServerConfig, serve};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames on their way to a socket, bounded in bytes: past the bound the
/// frame is dropped and [`Outbox::overflowed`] fires.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Bytes>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    overflow: CancellationToken,
}

impl Outbox {
    /// An outbox for at most `limit` bytes, and the writer task's end.
    fn new(limit: usize) -> (Outbox, mpsc::Receiver<Bytes>, Arc<AtomicUsize>) {
        let (tx, rx) = mpsc::channel(1024);
        let queued = Arc::new(AtomicUsize::new(0));
        let outbox = Outbox {
            tx,
            queued: queued.clone(),
            limit,
            overflow: CancellationToken::new(),
        };
        (outbox, rx, queued)
    }

    /// Queues `frame`; false if the writer is gone or the bound is exceeded.
    async fn send(&self, frame: Bytes) -> bool {
        let len = frame.len();
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > self.limit {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.overflow.cancel();
            return false;
        }
        self.tx.send(frame).await.is_ok()
    }

    /// Resolves once a frame did not fit.
    async fn overflowed(&self) {
        self.overflow.cancelled().await;
    }
}

/// Writes queued frames, coalescing whatever is queued into one flush, and
/// counts written bytes out of `queued`.
async fn write_frames<W: AsyncWrite + Unpin>(
    writer: W,
    mut frames: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(frame) = frames.recv().await {
        writer.write_all(&frame).await?;
        queued.fetch_sub(frame.len(), Ordering::AcqRel);
        while let Ok(frame) = frames.try_recv() {
            writer.write_all(&frame).await?;
            queued.fetch_sub(frame.len(), Ordering::AcqRel);
        }
        writer.flush().await?;
    }
    writer.shutdown().await
}
