//! The plugins a host serves: loading them from a folder with their sidecar
//! settings, and the catalog of their functions.

mod loader;
mod registry;
mod settings;

pub use loader::{MAX_PLUGIN_SIZE, load_dir, plugin_name};
pub use registry::{Catalog, LoadedPlugin, Registry};
pub use settings::PluginSettings;
