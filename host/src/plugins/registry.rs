//! The catalog of loaded plugins, swapped as a whole so every call sees one
//! consistent snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::protocol::FunctionInfo;
use crate::runtime::Plugin;

/// An immutable set of plugins and the index of their functions.
#[derive(Default)]
pub struct Catalog {
    plugins: BTreeMap<String, Arc<Plugin>>,
    functions: HashMap<String, (Arc<Plugin>, usize)>,
}

impl Catalog {
    /// Builds the catalog of `plugins` (later plugins win name clashes).
    pub fn new(plugins: impl IntoIterator<Item = Arc<Plugin>>) -> Self {
        let mut catalog = Catalog::default();
        for plugin in plugins {
            for (index, function) in plugin.functions.iter().enumerate() {
                catalog
                    .functions
                    .insert(function.name.clone(), (plugin.clone(), index));
            }
            catalog.plugins.insert(plugin.name.to_string(), plugin);
        }
        catalog
    }

    /// The plugin and function index serving `function`.
    pub fn lookup(&self, function: &str) -> Option<(Arc<Plugin>, usize)> {
        self.functions.get(function).cloned()
    }

    /// The loaded plugins by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    /// Every function, sorted by name, as served from `region`.
    pub fn function_infos(&self, region: &str) -> Vec<FunctionInfo> {
        let mut infos: Vec<FunctionInfo> = self
            .plugins
            .values()
            .flat_map(|p| p.functions.iter())
            .map(|f| FunctionInfo {
                name: f.name.clone(),
                signature: f.signature.clone(),
                regions: vec![region.to_owned()],
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// How many functions the catalog holds.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

/// The current catalog, replaceable atomically.
#[derive(Default)]
pub struct Registry {
    current: RwLock<Arc<Catalog>>,
}

impl Registry {
    pub fn new(catalog: Catalog) -> Self {
        Registry {
            current: RwLock::new(Arc::new(catalog)),
        }
    }

    /// The catalog in force now; calls keep using the snapshot they got.
    pub fn snapshot(&self) -> Arc<Catalog> {
        self.current.read().expect("registry lock").clone()
    }

    /// Replaces the catalog.
    pub fn replace(&self, catalog: Catalog) {
        *self.current.write().expect("registry lock") = Arc::new(catalog);
    }
}
