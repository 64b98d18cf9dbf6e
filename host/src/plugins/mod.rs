//! The plugins a host serves: loading them from a folder with their sidecar
//! settings, the set in force with the index of its functions, and hot
//! reload.

mod loader;
mod registry;
mod settings;
mod watcher;

pub use loader::{MAX_PLUGIN_SIZE, PluginFiles, load, plugin_name};
pub use registry::{LoadedPlugin, PluginSet, Refusal, Registry};
pub use settings::PluginSettings;
pub use watcher::{ReloadConfig, Reloader};
