//! Finds `<name>.wasm` files in a plugin folder and compiles them off the serving path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use super::registry::LoadedPlugin;
use super::settings::PluginSettings;
use crate::runtime::Runtime;

/// Plugin files larger than this are refused (50 MiB).
pub const MAX_PLUGIN_SIZE: u64 = 50 << 20;

/// The plugin name of `path`: its file stem, if it is a `.wasm` file whose
/// stem matches `[a-z0-9_-]+`.
///
/// # Errors
///
/// A message saying why the file is not a valid plugin file name.
pub fn plugin_name(path: &Path) -> anyhow::Result<String> {
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        bail!("not a `.wasm` file");
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("file name is not valid UTF-8")?;
    let valid = !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        bail!("plugin name `{stem}` must match [a-z0-9_-]+");
    }
    Ok(stem.to_owned())
}

/// Loads every `.wasm` file of `dir`. Files that fail are logged with the
/// reason and skipped; the others are returned, sorted by name.
///
/// # Errors
///
/// When `dir` cannot be read at all.
pub async fn load_dir(runtime: &Arc<Runtime>, dir: &Path) -> anyhow::Result<Vec<LoadedPlugin>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read plugin folder `{}`", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    paths.sort();
    let mut plugins = Vec::new();
    for path in paths {
        match load_file(runtime, &path).await {
            Ok(loaded) => {
                tracing::info!(
                    plugin = %loaded.plugin.name,
                    functions = loaded.plugin.functions.len(),
                    "loaded `{}`",
                    path.display()
                );
                plugins.push(loaded);
            }
            Err(error) => {
                tracing::error!("refused plugin file `{}`: {error:#}", path.display());
            }
        }
    }
    Ok(plugins)
}

/// Reads, size-checks, compiles and validates one plugin file and its sidecar.
async fn load_file(runtime: &Arc<Runtime>, path: &Path) -> anyhow::Result<LoadedPlugin> {
    let name = plugin_name(path)?;
    let size = std::fs::metadata(path)?.len();
    if size > MAX_PLUGIN_SIZE {
        bail!(
            "file is {size} bytes, over the limit of {} MiB",
            MAX_PLUGIN_SIZE >> 20
        );
    }
    let bytes = tokio::fs::read(path).await?;
    let runtime = runtime.clone();
    let settings = PluginSettings::for_plugin_file(path)?;
    let plugin = tokio::task::spawn_blocking(move || runtime.compile(&name, &bytes))
        .await
        .context("compilation task failed")??;
    settings.validate(&plugin)?;
    Ok(LoadedPlugin {
        plugin: Arc::new(plugin),
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::plugin_name;
    use std::path::Path;

    #[test]
    fn plugin_names_follow_the_file_stem_rule() {
        assert_eq!(plugin_name(Path::new("a/math.wasm")).unwrap(), "math");
        assert_eq!(plugin_name(Path::new("x_y-2.wasm")).unwrap(), "x_y-2");
        let err = plugin_name(Path::new("Math.wasm")).unwrap_err().to_string();
        assert_eq!(err, "plugin name `Math` must match [a-z0-9_-]+");
        assert!(plugin_name(Path::new("math.wat")).is_err());
        assert!(plugin_name(Path::new("a.b.wasm")).is_err());
    }
}
