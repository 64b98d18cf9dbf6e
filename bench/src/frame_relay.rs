//! A frame relay: the least a forwarder that reads the wasmrpc protocol can
//! do, as a reference for the forwarded call.
//!
//! Each connection it accepts gets a connection of its own to the upstream
//! host. Every frame is decoded with the host's own codec; a `call` gets one
//! more hop and this relay's region in its visited list, as a forwarding
//! host gives it; the message is encoded again and written on. Replies come
//! back the same way. One task per connection serves both directions, with
//! no routing table, no deadline timers, no per-call state and no task
//! hand-over: everything a forwarding host does beyond decoding and encoding
//! is left out. Ids pass through unchanged, which is only possible because
//! each caller has a connection of its own upstream.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use wasmrpc::protocol::{
    DEFAULT_MAX_FRAME, FrameCodec, Message, decode_message, encode_message_into,
};

/// The region a relayed call has visited, as if a host of region `a`
/// forwarded it.
const REGION: &str = "a";

/// Relays every connection `listener` accepts to `upstream`, frame by frame.
pub async fn serve(listener: TcpListener, upstream: SocketAddr) -> io::Result<()> {
    loop {
        let (inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(error) = relay(inbound, upstream).await {
                eprintln!("frame relay: connection failed: {error}");
            }
        });
    }
}

async fn relay(inbound: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let outbound = TcpStream::connect(upstream).await?;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    let (from_caller, mut to_caller) = inbound.into_split();
    let (from_host, mut to_host) = outbound.into_split();
    let mut requests = FramedRead::new(from_caller, FrameCodec::new(DEFAULT_MAX_FRAME));
    let mut replies = FramedRead::new(from_host, FrameCodec::new(DEFAULT_MAX_FRAME));
    let (mut up, mut down) = (BytesMut::new(), BytesMut::new());
    let invalid =
        |e: wasmrpc::protocol::ProtocolError| io::Error::new(io::ErrorKind::InvalidData, e);
    loop {
        tokio::select! {
            frame = requests.next() => {
                let Some(body) = frame.transpose().map_err(invalid)? else {
                    return Ok(());
                };
                let mut message = decode_message(&body).map_err(invalid)?;
                if let Message::Call(call) = &mut message {
                    call.hops += 1;
                    call.visited.push(REGION.into());
                }
                encode_message_into(&message, DEFAULT_MAX_FRAME, &mut up).map_err(invalid)?;
                // Frames read together go out in one write, as a host's do.
                if !requests.decoder().holds_frame(requests.read_buffer()) {
                    to_host.write_all(&up).await?;
                    up.clear();
                }
            }
            frame = replies.next() => {
                let Some(body) = frame.transpose().map_err(invalid)? else {
                    return Ok(());
                };
                let message = decode_message(&body).map_err(invalid)?;
                encode_message_into(&message, DEFAULT_MAX_FRAME, &mut down).map_err(invalid)?;
                if !replies.decoder().holds_frame(replies.read_buffer()) {
                    to_caller.write_all(&down).await?;
                    down.clear();
                }
            }
        }
    }
}
