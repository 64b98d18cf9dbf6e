//! Follows `regions.toml` while serving: when it changes, peer links and
//! `[routes]` change with it. An edit that does not parse or validate changes
//! nothing and is logged with the reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::keys::Keys;
use super::route::{Local, Router, Routes};
use crate::config::Topology;

/// Who this host is in the topology.
#[derive(Debug, Clone)]
pub struct Identity {
    pub region: String,
    /// This host's address as the file lists it.
    pub addr: String,
}

/// The peers and routes `topology` gives the host `me`.
pub fn peers_and_routes(topology: &Topology, me: &Identity) -> (Vec<(String, String)>, Routes) {
    let peers = topology
        .regions
        .iter()
        .flat_map(|r| r.hosts.iter().map(move |h| (r.name.clone(), h.clone())))
        .filter(|(_, host)| *host != me.addr)
        .collect();
    let routes = topology.routes.clone().into_iter().collect();
    (peers, routes)
}

/// Watches `path` until `shutdown` and applies every valid change to `router`.
///
/// # Errors
///
/// When the folder holding the file cannot be watched.
pub fn watch_topology<L: Local>(
    path: PathBuf,
    me: Identity,
    router: Arc<Router<L>>,
    regions: Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let file_name = path.file_name().map(|n| n.to_owned());
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let ours = match &event {
            Ok(event) => event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref()),
            Err(_) => true,
        };
        let reads = matches!(&event, Ok(e) if matches!(e.kind, notify::EventKind::Access(_)));
        if ours && !reads {
            let _ = tx.send(());
        }
    })?;
    // Watch the folder, not the file: editors and deploy tools replace it.
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut last_text: Option<String> = std::fs::read_to_string(&path).ok();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = rx.recv() => if event.is_none() { return },
            }
            // Let the write finish.
            while let Ok(Some(())) =
                tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
            {}
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    tracing::error!(
                        "cannot read `{}`: {error}; keeping the previous topology",
                        path.display()
                    );
                    continue;
                }
            };
            if last_text.as_deref() == Some(text.as_str()) {
                continue;
            }
            last_text = Some(text);
            apply(&path, &me, &router, &regions);
        }
    });
    Ok(())
}

fn apply<L: Local>(
    path: &std::path::Path,
    me: &Identity,
    router: &Router<L>,
    regions: &std::sync::RwLock<std::collections::BTreeSet<String>>,
) {
    let topology = match Topology::from_file(path).and_then(|t| t.validate().map(|()| t)) {
        Ok(topology) => topology,
        Err(error) => {
            tracing::error!("{error}; keeping the previous topology");
            return;
        }
    };
    if topology.region(&me.region).is_err() {
        tracing::error!(
            "`{}` no longer defines region `{}`; keeping the previous topology",
            path.display(),
            me.region
        );
        return;
    }
    let (peers, routes) = peers_and_routes(&topology, me);
    tracing::info!(
        peers = peers.len(),
        routes = routes.len(),
        keys = topology.keys.len(),
        "`{}` changed; applying the new topology",
        path.display()
    );
    router.peers().set(peers);
    router.set_routes(routes);
    router.set_keys(Keys::new(
        topology
            .key_rules()
            .expect("a validated topology's keys parse"),
    ));
    // The regions whose certificates may act as peers.
    *regions.write().expect("regions lock") =
        topology.regions.iter().map(|r| r.name.clone()).collect();
}
