//! Following files that are reloaded without a restart: a host's
//! certificate, key and CA, and its access file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a burst of changes must be quiet before the files are read:
/// lets a write (or a certificate and its key written one after the other)
/// finish.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Calls `reload` whenever one of `files` changes, until `shutdown`.
///
/// The folders holding the files are watched, not the files themselves:
/// deploy tools replace files (a rename, or Kubernetes' swap of a symlinked
/// folder), which a watch on the old file would miss. A change is the
/// content changing: `reload` is not called for a write that leaves the
/// bytes as they were.
///
/// # Errors
///
/// When a folder cannot be watched.
pub fn watch_files(
    files: Vec<PathBuf>,
    shutdown: CancellationToken,
    mut reload: impl FnMut() + Send + 'static,
) -> notify::Result<()> {
    let mut folders: Vec<PathBuf> = files.iter().map(|f| folder_of(f)).collect();
    folders.sort();
    folders.dedup();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let reads = matches!(&event, Ok(e) if matches!(e.kind, notify::EventKind::Access(_)));
        if !reads {
            let _ = tx.send(());
        }
    })?;
    for folder in &folders {
        watcher.watch(folder, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut last = contents(&files);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = rx.recv() => if event.is_none() { return },
            }
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
            let now = contents(&files);
            if now != last {
                last = now;
                reload();
            }
        }
    });
    Ok(())
}

fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn contents(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}
