//! A plugin's sidecar `<plugin>.toml`, read with the plugin and reloaded with it.
//!
//! ```toml
//! # ledger.toml, next to ledger.wasm
//! idempotent = ["locate", "stock.reserve"]   # functions safe to run more than once
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::runtime::Plugin;

/// Per-plugin settings. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// `idempotent = ["locate"]`: functions (named without the plugin prefix,
    /// `function` or `interface.function`) that may be retried on another
    /// host when a call may already have run.
    #[serde(default)]
    pub idempotent: Vec<String>,
}

impl PluginSettings {
    /// Reads the sidecar of `wasm` (same stem, `.toml`), or the defaults when
    /// there is none.
    ///
    /// # Errors
    ///
    /// When the file exists but cannot be read or parsed.
    pub fn for_plugin_file(wasm: &Path) -> anyhow::Result<PluginSettings> {
        let path = wasm.with_extension("toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PluginSettings::default());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        };
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("invalid `{}`: {}", path.display(), e.to_string().trim_end())
        })
    }

    /// Checks that every function named in the settings exists in `plugin`.
    ///
    /// # Errors
    ///
    /// Naming the first unknown function.
    pub fn validate(&self, plugin: &Plugin) -> anyhow::Result<()> {
        for name in &self.idempotent {
            let full = format!("{}.{name}", plugin.name);
            if !plugin.functions.iter().any(|f| f.name == full) {
                bail!(
                    "`idempotent` names `{name}`, but plugin `{}` has no function `{full}`",
                    plugin.name
                );
            }
        }
        Ok(())
    }

    /// Whether `function` (full name) is declared idempotent.
    pub fn is_idempotent(&self, plugin: &str, function: &str) -> bool {
        function
            .strip_prefix(plugin)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| self.idempotent.iter().any(|n| n == rest))
    }
}
