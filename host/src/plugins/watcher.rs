//! Hot reload: watch a plugin folder and keep the plugin set in step with it.
//!
//! Level-triggered: events only say "look again". After a burst of events
//! settles, the whole folder is rescanned and reconciled with the plugin set:
//! new and changed files (by content hash, sidecar included) are compiled on
//! the compiler thread and validated, and only then swapped in; removed files
//! leave the set. A file is read only once it is complete: a write in
//! progress (modified, not yet closed or renamed into place) is waited for,
//! and the size and mtime must hold still for a settling period. An empty
//! file is a copy that has not written its bytes yet: it is waited for like
//! a write in progress, and refused only if it stays empty. A file that
//! fails never replaces a working version. Calls in flight keep the version
//! they started with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::loader::{PluginFiles, load, plugin_name};
use super::registry::{LoadedPlugin, PluginSet, Refusal, Registry};
use crate::observe::Metrics;
use crate::runtime::Runtime;

/// Timings of hot reload.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Quiet time that ends a burst of events.
    pub debounce: Duration,
    /// How long a file's size and mtime must hold still before it is read.
    pub settle: Duration,
    /// A file modified but never closed, or left empty, is read anyway
    /// after this long.
    pub write_timeout: Duration,
    /// A full rescan happens this often even without events.
    pub rescan: Duration,
    /// Plugin files larger than this are refused.
    pub max_plugin_size: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            debounce: Duration::from_millis(100),
            settle: Duration::from_millis(300),
            write_timeout: Duration::from_secs(5),
            rescan: Duration::from_secs(2),
            max_plugin_size: super::MAX_PLUGIN_SIZE,
        }
    }
}

/// Size and mtime of a plugin file and of its sidecar.
type Fingerprint = (u64, SystemTime, Option<(u64, SystemTime)>);

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
    };
    let (size, mtime) = stat(path)?;
    Some((size, mtime, stat(&path.with_extension("toml"))))
}

/// Keeps a registry in step with a plugin folder.
pub struct Reloader {
    dir: PathBuf,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    config: ReloadConfig,
    /// Files being written: modified, not yet closed or renamed into place.
    writing: HashMap<PathBuf, Instant>,
    /// Empty plugin files, and since when they have been seen empty.
    empty: HashMap<PathBuf, Instant>,
    /// Changed files waiting to settle: the fingerprint and since when.
    settling: HashMap<PathBuf, (Fingerprint, Instant)>,
    /// The fingerprint each file had when it was last handled.
    handled: HashMap<PathBuf, Fingerprint>,
    /// Content hashes of refused files, not retried until they change.
    refused: HashMap<PathBuf, (String, Option<String>)>,
    /// Files with invalid names, reported once.
    bad_names: HashSet<PathBuf>,
    /// Counts loads and refusals.
    metrics: Metrics,
}

impl Reloader {
    pub fn new(
        dir: PathBuf,
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        config: ReloadConfig,
    ) -> Reloader {
        Reloader {
            dir,
            runtime,
            registry,
            config,
            writing: HashMap::new(),
            empty: HashMap::new(),
            settling: HashMap::new(),
            handled: HashMap::new(),
            refused: HashMap::new(),
            bad_names: HashSet::new(),
            metrics: Metrics::off(),
        }
    }

    /// Counts loads and refusals in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Reloader {
        self.metrics = metrics;
        self
    }

    /// Counts and records (for `/status`) a refused file of plugin `name`.
    fn refuse(&self, name: &str, path: &Path, error: String) {
        self.metrics.plugin_refused(name);
        self.registry.note_refusal(
            name,
            Refusal {
                at: SystemTime::now(),
                path: path.to_owned(),
                error,
            },
        );
    }

    /// Loads every plugin of the folder now, without waiting for files to
    /// settle (used at start).
    ///
    /// # Errors
    ///
    /// When the folder cannot be read.
    pub async fn load_all(&mut self) -> anyhow::Result<()> {
        std::fs::read_dir(&self.dir).map_err(|e| {
            anyhow::anyhow!("cannot read plugin folder `{}`: {e}", self.dir.display())
        })?;
        self.reconcile(true).await;
        Ok(())
    }

    /// Watches the folder until `shutdown`, reloading on every change.
    ///
    /// # Errors
    ///
    /// When the folder cannot be watched.
    pub fn watch(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })?;
        watcher.watch(&self.dir, RecursiveMode::NonRecursive)?;
        tokio::spawn(async move {
            // The watcher stops when dropped: keep it for the task's life.
            let _watcher = watcher;
            self.run(rx, shutdown).await;
        });
        Ok(())
    }

    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<notify::Result<Event>>,
        shutdown: CancellationToken,
    ) {
        let mut next_check: Option<Instant> = None;
        let mut rescan = tokio::time::interval(self.config.rescan);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.recv() => {
                    let Some(event) = event else { return };
                    let mut changed = self.note(event);
                    // Let the burst finish (bounded, so a constant writer
                    // cannot hold back other files).
                    let burst_end = Instant::now() + self.config.debounce * 5;
                    loop {
                        let quiet = (Instant::now() + self.config.debounce).min(burst_end);
                        match tokio::time::timeout_at(quiet, events.recv()).await {
                            Ok(Some(event)) => changed |= self.note(event),
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                    // Reads of the folder (our own rescans among them) are
                    // events too; they change nothing.
                    if !changed {
                        continue;
                    }
                }
                () = tokio::time::sleep_until(next_check.unwrap_or(far)), if next_check.is_some() => {}
                _ = rescan.tick() => {}
            }
            next_check = self.reconcile(false).await;
        }
    }

    /// Records what an event says about writes in progress. Returns whether
    /// it may have changed a plugin or sidecar file (or was an error: the
    /// folder is rescanned then).
    fn note(&mut self, event: notify::Result<Event>) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!("watching `{}`: {error}; rescanning", self.dir.display());
                return true;
            }
        };
        if event.need_rescan() || event.paths.is_empty() {
            return true;
        }
        if matches!(
            event.kind,
            EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
                | EventKind::Access(AccessKind::Close(AccessMode::Read))
        ) {
            return false;
        }
        let relevant = |p: &&PathBuf| p.extension().is_some_and(|e| e == "wasm" || e == "toml");
        let mut changed = false;
        for path in event.paths.iter().filter(relevant) {
            changed = true;
            // Track the plugin file a sidecar belongs to.
            let path = path.with_extension("wasm");
            match event.kind {
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
                    self.writing.entry(path).or_insert_with(Instant::now);
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(_))
                | EventKind::Remove(_) => {
                    self.writing.remove(&path);
                }
                _ => {}
            }
        }
        changed
    }

    /// Brings the plugin set in line with the folder. Returns when to look
    /// again for files that are not ready yet.
    async fn reconcile(&mut self, immediate: bool) -> Option<Instant> {
        let serving = self.registry.snapshot();
        let mut next: Option<Instant> = None;
        let mut later = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        let mut updates: BTreeMap<String, Option<Arc<LoadedPlugin>>> = BTreeMap::new();
        let mut present = HashSet::new();

        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                .collect(),
            Err(error) => {
                tracing::error!(
                    "cannot read plugin folder `{}`: {error}",
                    self.dir.display()
                );
                return Some(Instant::now() + self.config.rescan);
            }
        };
        paths.sort();
        for path in paths {
            let name = match plugin_name(&path) {
                Ok(name) => name,
                Err(error) => {
                    if self.bad_names.insert(path.clone()) {
                        tracing::error!("ignoring `{}`: {error}", path.display());
                    }
                    continue;
                }
            };
            present.insert(name.clone());
            let Some(print) = fingerprint(&path) else {
                continue;
            };
            if self.handled.get(&path) == Some(&print) {
                continue;
            }
            if !immediate {
                // Created and closed before its bytes came (a copy that
                // stalled, or wrote in two steps): no component is empty.
                if print.0 == 0 {
                    let since = *self.empty.entry(path.clone()).or_insert_with(Instant::now);
                    if since.elapsed() < self.config.write_timeout {
                        later(since + self.config.write_timeout);
                        continue;
                    }
                } else {
                    self.empty.remove(&path);
                }
                if let Some(since) = self.writing.get(&path) {
                    if since.elapsed() < self.config.write_timeout {
                        later(*since + self.config.write_timeout);
                        continue;
                    }
                    self.writing.remove(&path);
                }
                match self.settling.get(&path) {
                    Some((seen, since)) if *seen == print => {
                        if since.elapsed() < self.config.settle {
                            later(*since + self.config.settle);
                            continue;
                        }
                    }
                    _ => {
                        self.settling.insert(path.clone(), (print, Instant::now()));
                        later(Instant::now() + self.config.settle);
                        continue;
                    }
                }
            }
            self.settling.remove(&path);
            self.handled.insert(path.clone(), print);
            if let Some(loaded) = self.consider(&serving, &name, &path).await {
                updates.insert(name, Some(loaded));
            }
        }
        self.empty
            .retain(|path, _| path.metadata().is_ok_and(|m| m.len() == 0));
        for loaded in serving.plugins() {
            let name = loaded.plugin.name.to_string();
            if !present.contains(&name) {
                tracing::info!(plugin = %name, "removed: `{}` is gone", loaded.path.display());
                self.handled.remove(&loaded.path);
                updates.insert(name, None);
            }
        }
        if !updates.is_empty() {
            let mut plugins: Vec<Arc<LoadedPlugin>> = serving
                .plugins()
                .filter(|p| !updates.contains_key(&*p.plugin.name))
                .cloned()
                .collect();
            plugins.extend(updates.into_values().flatten());
            self.registry.replace(PluginSet::new(plugins));
        }
        next
    }

    /// Reads a changed file; returns its new version if it should replace
    /// (or add) plugin `name`.
    async fn consider(
        &mut self,
        serving: &PluginSet,
        name: &str,
        path: &Path,
    ) -> Option<Arc<LoadedPlugin>> {
        let files = match PluginFiles::read(path, self.config.max_plugin_size) {
            Ok(files) => files,
            Err(error) => {
                let error = one_line(&format!("{error:#}"));
                tracing::error!(plugin = %name, "refused `{}`: {error}", path.display());
                self.refuse(name, path, error);
                return None;
            }
        };
        let hashes = (files.wasm_sha256.clone(), files.sidecar_sha256.clone());
        let current = serving.plugin(name);
        if current.is_some_and(|c| {
            c.path == path && (c.wasm_sha256.clone(), c.sidecar_sha256.clone()) == hashes
        }) {
            return None;
        }
        if self.refused.get(path) == Some(&hashes) {
            return None;
        }
        match load(&self.runtime, name, &files, current.map(|c| c.as_ref())).await {
            Ok(mut loaded) => {
                loaded.meters = self.metrics.loaded_plugin(
                    &loaded.plugin.name,
                    loaded.plugin.functions.iter().map(|f| f.name.as_str()),
                );
                self.refused.remove(path);
                let verb = if current.is_some() {
                    "replaced"
                } else {
                    "loaded"
                };
                self.metrics.plugin_loaded(name);
                tracing::info!(
                    plugin = %name,
                    functions = loaded.plugin.functions.len(),
                    "{verb} from `{}` ({})",
                    path.display(),
                    files.short_hash()
                );
                Some(Arc::new(loaded))
            }
            Err(error) => {
                let outcome = if current.is_some() {
                    "the loaded version keeps serving"
                } else {
                    "plugin not loaded"
                };
                let error = one_line(&format!("{error:#}"));
                tracing::error!(
                    plugin = %name,
                    "refused `{}` ({}): {error}; {outcome}",
                    path.display(),
                    files.short_hash(),
                );
                self.refuse(name, path, error);
                self.refused.insert(path.to_owned(), hashes);
                None
            }
        }
    }
}

/// `text` with runs of whitespace (newlines included) made single spaces, so
/// that one problem is one log line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
