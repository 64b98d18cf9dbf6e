//! A plugin's sidecar `<plugin>.toml`, read with the plugin and reloaded with it.
//!
//! ```toml
//! # ledger.toml, next to ledger.wasm
//! idempotent = ["locate", "stock.reserve"]   # functions safe to run more than once
//! reuse_instances = true                      # serve calls from warm instances
//! ```

use anyhow::bail;
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
    /// `reuse_instances = true`: serve calls from warm instances instead of a
    /// fresh one per call. The plugin's memory then persists from one call
    /// to the next (a cache, a counter): setting this is the plugin's consent
    /// to that. Instances that trapped, hit their deadline or were cancelled
    /// are discarded, and each serves at most 1 000 calls.
    #[serde(default)]
    pub reuse_instances: bool,
}

impl PluginSettings {
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
