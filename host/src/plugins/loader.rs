//! Reading a plugin file and its sidecar, and turning them into a
//! [`LoadedPlugin`]: size check, content hash, compile off the serving path,
//! validation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::registry::LoadedPlugin;
use super::settings::PluginSettings;
use crate::runtime::{Runtime, Source};

/// Plugin files larger than this are refused by default (50 MiB).
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

/// The bytes of a plugin file and of its sidecar, with their identity.
pub struct PluginFiles {
    pub path: PathBuf,
    pub wasm: Vec<u8>,
    pub sidecar: Option<String>,
    /// SHA-256 of the `.wasm` file, hex.
    pub wasm_sha256: String,
    /// SHA-256 of the sidecar, hex, if there is one.
    pub sidecar_sha256: Option<String>,
}

impl PluginFiles {
    /// Reads `path` and its sidecar `<stem>.toml`.
    ///
    /// # Errors
    ///
    /// When the file is over `max_size` bytes or cannot be read.
    pub fn read(path: &Path, max_size: u64) -> anyhow::Result<PluginFiles> {
        let size = std::fs::metadata(path)?.len();
        if size > max_size {
            bail!("file is {size} bytes, over the limit of {max_size} bytes");
        }
        let wasm = std::fs::read(path)?;
        let sidecar_path = path.with_extension("toml");
        let sidecar = match std::fs::read_to_string(&sidecar_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read `{}`", sidecar_path.display()));
            }
        };
        Ok(PluginFiles {
            path: path.to_owned(),
            wasm_sha256: sha256(wasm.as_slice()),
            sidecar_sha256: sidecar.as_deref().map(|s| sha256(s.as_bytes())),
            wasm,
            sidecar,
        })
    }

    /// A short form of the content hash for log lines: `sha256:0123abcd…`.
    pub fn short_hash(&self) -> String {
        format!("sha256:{}", &self.wasm_sha256[..16])
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compiles and validates `files` as plugin `name`. When `reuse` holds the
/// same `.wasm` content with the same limits and hidden exports (only other
/// settings changed), its compiled plugin is kept.
///
/// # Errors
///
/// Why the files cannot serve: invalid sidecar, not a component, imports the
/// host cannot satisfy, settings naming unknown functions.
pub async fn load(
    runtime: &Arc<Runtime>,
    name: &str,
    files: &PluginFiles,
    reuse: Option<&LoadedPlugin>,
) -> anyhow::Result<LoadedPlugin> {
    let path = files.path.with_extension("toml");
    let settings = match &files.sidecar {
        Some(text) => toml::from_str::<PluginSettings>(text).map_err(|e| {
            anyhow::anyhow!("invalid `{}`: {}", path.display(), e.to_string().trim_end())
        })?,
        None => PluginSettings::default(),
    };
    let limits = runtime
        .limits(settings.memory_mib, settings.table_elements)
        .map_err(|e| anyhow::anyhow!("invalid `{}`: {e}", path.display()))?;
    let plugin = match reuse {
        Some(old)
            if old.wasm_sha256 == files.wasm_sha256
                && old.plugin.limits == limits
                && old.settings.hide == settings.hide =>
        {
            old.plugin.clone()
        }
        _ => {
            let source = Source {
                name: name.to_owned(),
                bytes: files.wasm.clone(),
                sha256: files.wasm_sha256.clone(),
            };
            let hide = settings.hide.clone();
            Arc::new(runtime.compile_in_background(source, limits, hide).await?)
        }
    };
    settings.validate(&plugin)?;
    Ok(LoadedPlugin {
        plugin,
        settings,
        path: files.path.clone(),
        wasm_sha256: files.wasm_sha256.clone(),
        sidecar_sha256: files.sidecar_sha256.clone(),
        loaded_at: std::time::SystemTime::now(),
        meters: Default::default(),
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
