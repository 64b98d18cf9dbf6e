//! A minimal HTTP/1.1 client on hyper: a GET for `wasmrpc status` and the
//! tests, which read a host's admin listener with the same hyper that
//! serves it, and the one exchange ([`send`]) the OTLP exporter posts with.

use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A response: status code, `Content-Type` and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// GETs `path` from the admin listener at `addr` (`host:port`), within
/// `timeout` for the whole exchange.
///
/// # Errors
///
/// When the address cannot be reached, the exchange fails or times out, or
/// the body is not UTF-8.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    tokio::time::timeout(timeout, exchange(addr, path))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from `{addr}` within {timeout:?}"))?
}

async fn exchange(addr: &str, path: &str) -> anyhow::Result<Response> {
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr)
        .body(Full::new(Bytes::new()))
        .context("bad request path")?;
    let response = send(addr, request).await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body =
        String::from_utf8(response.into_body().to_vec()).context("the answer is not UTF-8")?;
    Ok(Response {
        status,
        content_type,
        body,
    })
}

/// One HTTP/1.1 exchange on a new connection to `addr`: sends `request`
/// (its URI is the path; the caller sets `Host`) and reads the whole
/// answer. The admin reads above and the OTLP exporter both use it.
///
/// # Errors
///
/// When `addr` cannot be reached or the exchange fails.
pub async fn send(
    addr: &str,
    request: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<hyper::Response<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to `{addr}`"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with `{addr}` failed"))?;
    let driver = tokio::spawn(connection);
    let what = format!("{} {} at `{addr}`", request.method(), request.uri());
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("{what} failed"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .with_context(|| format!("reading the answer to {what}"))?
        .to_bytes();
    driver.abort();
    Ok(hyper::Response::from_parts(parts, body))
}
