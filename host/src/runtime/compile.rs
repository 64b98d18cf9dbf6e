//! Compiling plugins off the serving path, and reflecting their exports into a [`Plugin`]'s [`Function`]s.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Type};

use super::cache::Lookup;
use super::call::PoolMark;
use super::instances::Instances;
use super::signature::{self, func_to_wit};
use super::state::PluginState;
use super::{Runtime, bytes};
use crate::pattern::Pattern;

/// A compiled, validated plugin, ready to be instantiated per call.
pub struct Plugin {
    pub name: Arc<str>,
    pub functions: Vec<Function>,
    /// Exports left out of the catalog, with the reason (already logged).
    pub skipped: Vec<String>,
    /// Toolchain-internal exports and those the sidecar hides: not served,
    /// and not a problem (logged at debug level).
    pub hidden: Vec<String>,
    /// Memory and table limits of each instance.
    pub limits: Limits,
    /// How its compiled code was obtained.
    pub compiled: Compiled,
    pub(super) pre: InstancePre<PluginState>,
    /// Instances ready for calls.
    pub(super) instances: Instances,
}

/// The limits of each instance of one plugin: the host's defaults, or what
/// its sidecar sets within the host's caps (see [`Runtime::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, in bytes, summed over the instance's memories.
    pub memory: usize,
    /// Elements of each table.
    pub table_elements: usize,
}

/// How a plugin's compiled code was obtained.
#[derive(Debug, Clone, Copy)]
pub struct Compiled {
    /// Taken from the compile cache rather than compiled.
    pub from_cache: bool,
    /// The time it took (compiling, or reading and checking the entry).
    pub took: std::time::Duration,
}

/// One callable export of a plugin.
pub struct Function {
    /// The RPC name: `plugin.function` or `plugin.interface.function`.
    pub name: String,
    /// WIT signature, e.g. `func(a: s64, b: s64) -> s64`.
    pub signature: String,
    pub(super) params: Vec<(String, Type)>,
    pub(super) result: Option<Type>,
    /// Set when the typed path serves it (see the `bytes` module).
    pub(super) typed: Option<bytes::Shape>,
    pub(super) index: ComponentExportIndex,
    /// Set while its calls go straight to the guest pool.
    pub(super) pool_mark: PoolMark,
}

/// The thread that compiles plugins. Compilation is CPU-heavy and cannot be
/// interrupted: it runs on one thread of its own at a lower priority, so
/// serving never waits for it. The thread ends once this is dropped and its
/// last job is done.
pub(super) struct Compiler {
    jobs: mpsc::Sender<Job>,
}

/// Work for the compiler thread.
type Job = Box<dyn FnOnce() + Send>;

impl Compiler {
    /// # Errors
    ///
    /// When the thread cannot be spawned.
    pub fn start() -> std::io::Result<Compiler> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("wasm-compiler".into())
            .spawn(move || {
                // SAFETY: setpriority has no memory-safety preconditions; on
                // Linux, `who = 0` with PRIO_PROCESS means the calling thread.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
                for job in queue {
                    job();
                }
            })?;
        Ok(Compiler { jobs })
    }
}

impl Runtime {
    /// [`Runtime::compile`] on the runtime's low-priority compiler thread.
    ///
    /// # Errors
    ///
    /// As [`Runtime::compile`].
    pub async fn compile_in_background(
        self: &Arc<Self>,
        source: Source,
        limits: Limits,
        hide: Arc<[Pattern]>,
    ) -> anyhow::Result<Plugin> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runtime = self.clone();
        let job: Job = Box::new(move || {
            let _ = tx.send(runtime.compile(&source, limits, &hide));
        });
        self.compiler
            .jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the compiler thread has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the compiler thread dropped the job"))?
    }

    /// Compiles (or takes from the compile cache) and validates a
    /// component and reflects its callable exports, leaving out those that
    /// toolchains add for their own use and those `hide` matches (named
    /// without the plugin's name: `function`, `interface.function`, or a
    /// prefix ending in `*`).
    ///
    /// CPU-heavy: call it off the serving path (`spawn_blocking`).
    ///
    /// # Errors
    ///
    /// When the bytes are not a valid component, or it imports something
    /// the host does not provide.
    pub fn compile(
        &self,
        source: &Source,
        limits: Limits,
        hide: &[Pattern],
    ) -> anyhow::Result<Plugin> {
        let name = source.name.as_str();
        let engine = &self.shared.engine;
        let (component, compiled) = self.component(source)?;
        let pre = self.linker.instantiate_pre(&component)?;
        let mut functions = Vec::new();
        let mut skipped = Vec::new();
        let mut hidden = Vec::new();
        let ty = component.component_type();
        for (export, item) in ty.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    let index = component
                        .get_export_index(None, export)
                        .expect("reflected export has an index");
                    reflect(
                        name,
                        None,
                        export,
                        &func,
                        index,
                        &mut functions,
                        &mut skipped,
                    );
                }
                ComponentItem::ComponentInstance(instance) => {
                    let interface = interface_name(export);

                    let instance_index = component
                        .get_export_index(None, export)
                        .expect("reflected export has an index");
                    for (fname, item) in instance.exports(engine) {
                        if let Some((.., whose)) = TOOLCHAIN_INTERNALS
                            .iter()
                            .find(|(i, f, _)| (*i, *f) == (export, fname))
                        {
                            hidden.push(format!("`{name}.{interface}.{fname}`: {whose}"));
                            continue;
                        }
                        if let ComponentItem::ComponentFunc(func) = item.ty {
                            let index = component
                                .get_export_index(Some(&instance_index), fname)
                                .expect("reflected export has an index");
                            reflect(
                                name,
                                Some(interface),
                                fname,
                                &func,
                                index,
                                &mut functions,
                                &mut skipped,
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        let mut seen = std::collections::HashSet::new();
        functions.retain(|f: &Function| {
            let fresh = seen.insert(f.name.clone());
            if !fresh {
                skipped.push(format!("`{}`: another export has the same name", f.name));
            }
            fresh
        });
        functions.retain(|f: &Function| {
            let local = &f.name[name.len() + 1..];
            let hide = hide.iter().any(|p| p.matches(local));
            if hide {
                hidden.push(format!("`{}`: hidden by the sidecar's `hide`", f.name));
            }
            !hide
        });
        for reason in &skipped {
            tracing::warn!(plugin = name, "function left out of the catalog: {reason}");
        }
        for reason in &hidden {
            tracing::debug!(plugin = name, "function not served: {reason}");
        }
        Ok(Plugin {
            name: name.into(),
            functions,
            skipped,
            hidden,
            limits,
            compiled,
            pre,
            instances: Instances::default(),
        })
    }

    /// The compiled component of `source`: from the compile cache when it
    /// holds a trusted entry, else compiled (and stored there).
    fn component(&self, source: &Source) -> anyhow::Result<(Component, Compiled)> {
        let engine = &self.shared.engine;
        let name = source.name.as_str();
        let started = Instant::now();
        if let Some(cache) = &self.cache {
            match cache.load(engine, &source.sha256) {
                Lookup::Hit(component) => {
                    let took = started.elapsed();
                    tracing::info!(
                        plugin = name,
                        "compiled code taken from the compile cache in {} ms",
                        took.as_millis()
                    );
                    let compiled = Compiled {
                        from_cache: true,
                        took,
                    };
                    return Ok((component, compiled));
                }
                Lookup::Miss => {}
                Lookup::Rejected(reason) => tracing::warn!(
                    plugin = name,
                    "compile cache entry refused and removed ({reason}); compiling again"
                ),
            }
        }
        let component = Component::new(engine, &source.bytes)?;
        let took = started.elapsed();
        tracing::info!(plugin = name, "compiled in {} ms", took.as_millis());
        if let Some(cache) = &self.cache
            && let Err(error) = cache.store(&component, &source.sha256)
        {
            tracing::warn!(
                plugin = name,
                "cannot store compiled code in the compile cache `{}`: {error:#}",
                cache.dir().display()
            );
        }
        let compiled = Compiled {
            from_cache: false,
            took,
        };
        Ok((component, compiled))
    }
}

/// A plugin's component, as read from its file.
pub struct Source {
    /// The plugin's name.
    pub name: String,
    /// The `.wasm` file's bytes.
    pub bytes: Vec<u8>,
    /// Their SHA-256, hex: the compile cache's key.
    pub sha256: String,
}

/// Exports that toolchains add for their own use, which are never handlers:
/// an exported instance's name, its function, and whose it is.
const TOOLCHAIN_INTERNALS: &[(&str, &str, &str)] = &[(
    "exports",
    "init",
    "componentize-py's build-time initialiser, not a handler",
)];

fn reflect(
    plugin: &str,
    interface: Option<&str>,
    export: &str,
    func: &ComponentFunc,
    index: ComponentExportIndex,
    functions: &mut Vec<Function>,
    skipped: &mut Vec<String>,
) {
    let name = match interface {
        Some(interface) => format!("{plugin}.{interface}.{export}"),
        None => format!("{plugin}.{export}"),
    };
    if export.starts_with('[') {
        skipped.push(format!(
            "`{name}`: resource methods cannot be called over RPC"
        ));
        return;
    }
    if func.async_() {
        skipped.push(format!("`{name}`: async functions are not supported yet"));
        return;
    }
    let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_owned(), t)).collect();
    let mut results = func.results();
    let result = results.next();
    let all = params.iter().map(|(_, t)| t).chain(result.as_ref());
    if let Some(kind) = all.clone().find_map(signature::unsupported) {
        skipped.push(format!(
            "`{name}`: its signature uses a {kind}, which cannot cross the wire"
        ));
        return;
    }
    let signature = func_to_wit(params.iter().map(|(n, t)| (n.as_str(), t)), result.as_ref());
    let typed = bytes::Shape::of(&params, result.as_ref());
    functions.push(Function {
        name,
        signature,
        params,
        result,
        typed,
        index,
        pool_mark: PoolMark::default(),
    });
}

/// The interface part of an export name: `example:inventory/stock@1.0.0` → `stock`.
fn interface_name(export: &str) -> &str {
    let name = export.rsplit_once('/').map_or(export, |(_, rest)| rest);
    name.split_once('@').map_or(name, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::interface_name;

    #[test]
    fn interface_names_drop_package_and_version() {
        assert_eq!(interface_name("example:inventory/stock@1.0.0"), "stock");
        assert_eq!(interface_name("example:inventory/stock"), "stock");
        assert_eq!(interface_name("local"), "local");
    }
}
