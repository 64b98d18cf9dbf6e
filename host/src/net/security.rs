//! What a listener requires of the callers it accepts: TLS, tokens, and the
//! regions a peer may claim.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;
use wasmrpc_client::stream::{Stream, TLS_HANDSHAKE_BYTE, accept_tls};

use crate::auth::AccessFile;
use crate::tls::{Tls, describe_accept_error};

/// How a listener authenticates. The default is plaintext with no tokens,
/// which a host allows on loopback addresses only (or when started
/// `--insecure`).
#[derive(Clone, Default)]
pub struct Security {
    /// TLS on this listener; `None`: plaintext.
    pub tls: Option<Arc<Tls>>,
    /// The regions of the topology: those a peer's certificate may name.
    pub regions: Arc<RwLock<BTreeSet<String>>>,
    /// The tokens callers must present; `None`: every caller may call every
    /// function.
    pub access: Option<Arc<AccessFile>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("access", &self.access.as_ref().map(|a| a.path().to_owned()))
            .finish_non_exhaustive()
    }
}

/// What the transport says about the other side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// The connection is TLS.
    pub tls: bool,
    /// The region the other side's certificate names (verified against the
    /// cluster CA): a host of that region.
    pub region: Option<String>,
}

/// Secures an accepted socket as `security` requires: the TLS handshake, or
/// nothing for a plaintext listener. `None` when the connection was refused
/// (and logged with `addr`); a plaintext caller at a TLS listener is told why
/// in a plaintext `error` frame it can read.
pub(super) async fn secure(
    tcp: TcpStream,
    addr: SocketAddr,
    security: &Security,
    timeout: Duration,
) -> Option<(Stream, Transport)> {
    let Some(tls) = &security.tls else {
        return Some((Stream::plain(tcp), Transport::default()));
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(_) => return None,
        Err(_) => {
            tracing::debug!(%addr, "closed a connection that sent nothing within {timeout:?}");
            return None;
        }
    }
    if first[0] != TLS_HANDSHAKE_BYTE {
        tracing::warn!(%addr, "refused a plaintext connection: this host accepts TLS only");
        super::connection::refuse_plaintext(
            tcp,
            "this host accepts TLS connections only: connect with TLS, trusting the cluster CA",
        )
        .await;
        return None;
    }
    let material = tls.current();
    match tokio::time::timeout(timeout, accept_tls(tcp, material.server.clone())).await {
        Ok(Ok(stream)) => {
            let region = stream
                .peer_certificates()
                .and_then(|chain| chain.first().and_then(|leaf| material.region_of(leaf)));
            Some((stream, Transport { tls: true, region }))
        }
        Ok(Err(error)) => {
            tracing::warn!(%addr, "refused a TLS connection: {}", describe_accept_error(&error));
            None
        }
        Err(_) => {
            tracing::warn!(%addr, "refused a TLS connection: no handshake within {timeout:?}");
            None
        }
    }
}
