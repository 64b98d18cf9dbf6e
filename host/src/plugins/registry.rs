//! The set of loaded plugins, swapped as a whole so every call sees one
//! consistent snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::settings::PluginSettings;
use crate::protocol::FunctionInfo;
use crate::runtime::Plugin;

/// A compiled plugin with its sidecar settings and where they came from.
pub struct LoadedPlugin {
    pub plugin: Arc<Plugin>,
    pub settings: PluginSettings,
    /// The `.wasm` file.
    pub path: std::path::PathBuf,
    pub wasm_sha256: String,
    pub sidecar_sha256: Option<String>,
    /// When this version was loaded.
    pub loaded_at: std::time::SystemTime,
    /// Its meters, resolved once (empty when metrics are off).
    pub meters: crate::observe::LoadedMeters,
}

/// A plugin file the host refused, for `/status`.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub at: std::time::SystemTime,
    /// The `.wasm` file.
    pub path: std::path::PathBuf,
    /// Why, in one line.
    pub error: String,
}

/// An immutable set of plugins and the index of their functions.
#[derive(Default)]
pub struct PluginSet {
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    functions: HashMap<String, (Arc<LoadedPlugin>, usize)>,
}

impl PluginSet {
    /// Builds the set of `plugins` (later plugins win name clashes).
    pub fn new(plugins: impl IntoIterator<Item = Arc<LoadedPlugin>>) -> Self {
        let mut set = PluginSet::default();
        for loaded in plugins {
            for (index, function) in loaded.plugin.functions.iter().enumerate() {
                set.functions
                    .insert(function.name.clone(), (loaded.clone(), index));
            }
            set.plugins.insert(loaded.plugin.name.to_string(), loaded);
        }
        set
    }

    /// The plugin serving `function`, with its settings, and the function's
    /// index in it.
    pub fn lookup(&self, function: &str) -> Option<(&Arc<LoadedPlugin>, usize)> {
        self.functions
            .get(function)
            .map(|(loaded, index)| (loaded, *index))
    }

    /// The loaded plugins by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    /// The loaded plugin called `name`.
    pub fn plugin(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(name)
    }

    /// Every function, sorted by name, as served from `region`.
    pub fn function_infos(&self, region: &str) -> Vec<FunctionInfo> {
        let mut infos: Vec<FunctionInfo> = self
            .plugins
            .values()
            .flat_map(|loaded| {
                loaded.plugin.functions.iter().map(move |f| FunctionInfo {
                    name: f.name.clone(),
                    signature: f.signature.clone(),
                    regions: vec![region.to_owned()],
                    idempotent: loaded.settings.is_idempotent(&loaded.plugin.name, &f.name),
                })
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// How many functions the set holds.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

/// The plugin set in force, replaceable atomically, with a signal on change.
pub struct Registry {
    current: RwLock<Arc<PluginSet>>,
    version: watch::Sender<u64>,
    /// The last refusal of each plugin name, kept after a later load.
    refusals: std::sync::Mutex<BTreeMap<String, Refusal>>,
}

impl Registry {
    pub fn new(plugins: PluginSet) -> Self {
        Registry {
            current: RwLock::new(Arc::new(plugins)),
            version: watch::Sender::new(0),
            refusals: std::sync::Mutex::default(),
        }
    }

    /// Records that a file of plugin `name` was refused.
    pub fn note_refusal(&self, name: &str, refusal: Refusal) {
        self.refusals
            .lock()
            .expect("refusals lock")
            .insert(name.to_owned(), refusal);
    }

    /// The last refusal of each plugin name.
    pub fn refusals(&self) -> BTreeMap<String, Refusal> {
        self.refusals.lock().expect("refusals lock").clone()
    }

    /// The plugin set in force now; calls keep using the snapshot they got.
    pub fn snapshot(&self) -> Arc<PluginSet> {
        self.current.read().expect("registry lock").clone()
    }

    /// Replaces the plugin set and signals the change.
    pub fn replace(&self, plugins: PluginSet) {
        *self.current.write().expect("registry lock") = Arc::new(plugins);
        self.version.send_modify(|v| *v += 1);
    }

    /// Changes each time the plugin set is replaced.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}
