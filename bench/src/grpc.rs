//! gRPC: a tonic server and client doing `add(a, b)` and a `bytes` echo over
//! one HTTP/2 connection (`proto/bench.proto`).

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

/// The generated messages, client and server.
pub mod proto {
    tonic::include_proto!("bench");
}

use proto::bench_client::BenchClient;
use proto::bench_server::{Bench, BenchServer};
use proto::{AddReply, AddRequest, Blob};

/// Largest message either side accepts: room for the 1 MiB payload.
const MAX_MESSAGE: usize = 4 << 20;

struct Service;

#[tonic::async_trait]
impl Bench for Service {
    async fn add(&self, request: Request<AddRequest>) -> Result<Response<AddReply>, Status> {
        let AddRequest { a, b } = request.into_inner();
        Ok(Response::new(AddReply {
            sum: a.wrapping_add(b),
        }))
    }

    async fn echo(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Serves `Bench` on every connection `listener` accepts.
pub async fn serve(listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let service = BenchServer::new(Service)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .context("the gRPC server failed")
}

/// A client on one HTTP/2 connection. Cheap to clone; clones share the
/// connection and may call concurrently.
#[derive(Clone)]
pub struct Client {
    inner: BenchClient<Channel>,
}

impl Client {
    /// Opens the connection.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("cannot connect to the gRPC server at {addr}"))?;
        let inner = BenchClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Client { inner })
    }

    /// Returns `a + b` as computed by the server.
    pub async fn add(&self, a: i64, b: i64) -> anyhow::Result<i64> {
        let reply = self.inner.clone().add(AddRequest { a, b }).await?;
        Ok(reply.into_inner().sum)
    }

    /// Returns `data` as echoed by the server.
    pub async fn echo(&self, data: Bytes) -> anyhow::Result<Bytes> {
        let reply = self.inner.clone().echo(Blob { data }).await?;
        Ok(reply.into_inner().data)
    }
}
