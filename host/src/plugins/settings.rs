//! A plugin's sidecar `<plugin>.toml`, read with the plugin and reloaded with it.
//!
//! ```toml
//! # orders.toml, next to orders.wasm
//! idempotent = ["place"]                      # functions safe to run more than once
//! reuse_instances = true                      # serve calls from warm instances
//! calls = ["inventory.stock.*", "math.add"]   # what its guests may call through the host
//! memory_mib = 256                            # linear memory per instance (host default: 64)
//! table_elements = 50000                      # elements per table (host default: 20000)
//! hide = ["debug.*"]                          # exports not to serve
//! ```
//!
//! `calls` is least privilege for nested calls: a plugin's guests may call,
//! through the host's `call` import, only the functions its patterns match,
//! and a plugin without the key may call none. Otherwise a bug or a
//! malicious input could turn any plugin into a proxy to every function the
//! host can reach, its own region's and every other region's. A call outside
//! the list fails in the guest with `permission-denied`, `processed: no`,
//! before it is routed.

use std::sync::Arc;

use anyhow::bail;
use serde::Deserialize;

use crate::pattern::Pattern;
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
    /// `calls = ["inventory.*", "math.add"]`: the functions (full names)
    /// the plugin's guests may call through the host, as patterns: `*`, a
    /// function's name, or a prefix ending in `*`. Empty when left out: the
    /// plugin may call nothing. A pattern that is none of these makes the
    /// sidecar invalid, and the plugin is refused.
    #[serde(default)]
    pub calls: Arc<[Pattern]>,
    /// `memory_mib = 256`: linear memory each instance may use, in MiB (the
    /// host's `--memory-limit-mib` when left out), up to the host's
    /// `--max-plugin-memory-mib`. For plugins that embed a language runtime
    /// and need more than the default, or to hold one to less.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// `table_elements = 50000`: elements each table of an instance may
    /// hold (the host's default when left out), up to the host's
    /// `--max-plugin-table-elements`.
    #[serde(default)]
    pub table_elements: Option<u64>,
    /// `hide = ["debug.*", "reset"]`: exports not to serve, named without the
    /// plugin's name (`function`, `interface.function`) or as a prefix
    /// ending in `*`. Exports that toolchains add for their own use (such
    /// as componentize-py's `exports.init`) are never served, listed or not.
    #[serde(default)]
    pub hide: Arc<[Pattern]>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_function_patterns_and_a_sidecar_without_them_permits_none() {
        let settings: PluginSettings =
            toml::from_str("calls = [\"inventory.*\", \"math.add\", \"*\"]\n").unwrap();
        let calls: Vec<&str> = settings.calls.iter().map(Pattern::as_str).collect();
        assert_eq!(calls, ["inventory.*", "math.add", "*"]);

        let silent: PluginSettings = toml::from_str("reuse_instances = true\n").unwrap();
        assert!(silent.calls.is_empty());
        assert!(PluginSettings::default().calls.is_empty());
    }

    #[test]
    fn limits_and_hidden_exports_are_read_and_default_to_the_hosts() {
        let settings: PluginSettings = toml::from_str(
            "memory_mib = 256\ntable_elements = 50000\nhide = [\"debug.*\", \"reset\"]\n",
        )
        .unwrap();
        assert_eq!(settings.memory_mib, Some(256));
        assert_eq!(settings.table_elements, Some(50_000));
        let hide: Vec<&str> = settings.hide.iter().map(Pattern::as_str).collect();
        assert_eq!(hide, ["debug.*", "reset"]);
        let silent = PluginSettings::default();
        assert_eq!((silent.memory_mib, silent.table_elements), (None, None));
        assert!(silent.hide.is_empty());

        let error = toml::from_str::<PluginSettings>("memory_mib = -1\n").unwrap_err();
        assert_eq!(error.message(), "invalid value: integer `-1`, expected u64");
        let error = toml::from_str::<PluginSettings>("memory = 256\n").unwrap_err();
        assert!(
            error.message().starts_with("unknown field `memory`"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn a_calls_entry_that_is_not_a_pattern_makes_the_sidecar_invalid() {
        for bad in ["math.*.add", "", "ma th.add"] {
            let error =
                toml::from_str::<PluginSettings>(&format!("calls = [{bad:?}]\n")).unwrap_err();
            assert_eq!(
                error.message(),
                format!(
                    "`{bad}` is not a function pattern: write `*`, a function name, \
                     or a prefix ending in `*`"
                ),
            );
        }
        let error = toml::from_str::<PluginSettings>("calls = \"math.add\"\n").unwrap_err();
        assert_eq!(
            error.message(),
            "invalid type: string \"math.add\", expected a sequence"
        );
    }
}
