//! The accept loop and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ServerConfig;
use super::connection::Connection;
use super::security::{Security, secure};
use crate::service::Service;

/// Serves connections from `listener` until `shutdown` is cancelled, then
/// drains: stops accepting, tells every connection to drain, and waits up to
/// `drain_timeout` for calls in flight to finish.
///
/// Returns whether every connection finished within the drain timeout.
pub async fn serve(
    listener: TcpListener,
    service: Arc<dyn Service>,
    config: ServerConfig,
    security: Security,
    shutdown: CancellationToken,
) -> bool {
    let config = Arc::new(config);
    let security = Arc::new(security);
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, addr) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // Usually EMFILE or a reset before accept: back off briefly.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let permit = slots.clone().try_acquire_owned().ok();
        let connection = Connection::new(
            service.clone(),
            config.clone(),
            security.clone(),
            shutdown.clone(),
            addr,
        );
        let (security, hello_timeout) = (security.clone(), config.hello_timeout);
        tracker.spawn(async move {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%addr, "connection closed: {error}");
                return;
            }
            // The TLS handshake runs in the connection's own task: a slow
            // one holds up no other.
            let Some((stream, transport)) = secure(stream, addr, &security, hello_timeout).await
            else {
                return;
            };
            match permit {
                Some(_permit) => {
                    if let Err(error) = connection.run(stream, transport).await {
                        tracing::debug!(%addr, "connection closed: {error}");
                    }
                }
                None => connection.refuse(stream).await,
            }
        });
    }
    drop(listener);
    tracker.close();
    tracing::info!(
        connections = tracker.len(),
        "draining: waiting up to {:?} for calls in flight",
        config.drain_timeout
    );
    let drained = tokio::time::timeout(config.drain_timeout, tracker.wait())
        .await
        .is_ok();
    if drained {
        tracing::info!("drained");
    } else {
        tracing::warn!("drain timeout reached with calls still in flight");
    }
    drained
}
