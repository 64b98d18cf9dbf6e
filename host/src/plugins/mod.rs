//! The plugins a host serves: loading them from a folder and the catalog of
//! their functions.

mod loader;
mod registry;

pub use loader::{MAX_PLUGIN_SIZE, load_dir, plugin_name};
pub use registry::{Catalog, Registry};
