//! Sockets: the host's accept loop and connections, and the multiplexed client.
//!
//! This layer speaks the protocol and hands calls to a [`Service`](crate::service::Service);
//! it knows nothing of plugins or wasmtime.

mod client;
mod connection;
mod server;

pub use client::{CallOptions, Client, ClientOptions};
pub use server::{ServerConfig, serve};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Writes queued frames, coalescing whatever is queued into one flush.
async fn write_frames<W: AsyncWrite + Unpin>(
    writer: W,
    mut frames: mpsc::Receiver<Bytes>,
) -> std::io::Result<()> {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(frame) = frames.recv().await {
        writer.write_all(&frame).await?;
        while let Ok(frame) = frames.try_recv() {
            writer.write_all(&frame).await?;
        }
        writer.flush().await?;
    }
    writer.shutdown().await
}
