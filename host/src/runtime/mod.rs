//! Runs plugins: one small [`Runtime`] that wraps wasmtime with our fixed choices, so no call path can forget them.
//!
//! Every choice that keeps the host safe from its guests is made here, once:
//! epoch interruption driven by a ticker thread (`engine`); the deadline and
//! cancellation checked by the epoch callback and bounded once around each
//! call's answer (`call`); guests on their own thread pool once they run
//! longer than the inline budget (`pool`, `inline`); the pooling allocator
//! and a memory cap per instance (`engine`, `state`); a fresh store and
//! instance per call, made ahead of the call and torn down after its reply
//! (`instances`); and WASI with no ambient capability (`state`). Calls pass
//! CBOR arguments, converted dynamically (`value`) or, for signatures that
//! pass byte strings, on a typed path (`bytes`).

mod bytes;
mod cache;
mod call;
mod compile;
mod engine;
mod host_api;
mod inline;
mod instances;
mod pool;
mod signature;
mod state;
mod stdio;
pub mod value;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Linker;

pub use cache::CompileCache;
pub use call::LocalCall;
pub use compile::{Compiled, Function, Limits, Plugin, Source};
pub use signature::{func_to_wit, type_to_wit};

use compile::Compiler;
use engine::EpochTicker;
use instances::Shared;
use pool::{GuestPool, Guests};
use state::PluginState;

/// Limits and tuning of the runtime. Defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Linear memory one instance may use, summed over its memories,
    /// unless its plugin's sidecar sets its own (`memory_mib`).
    pub memory_limit: usize,
    /// Elements one table may hold, unless its plugin's sidecar sets its
    /// own (`table_elements`).
    pub table_limit: usize,
    /// The most memory a sidecar may give its plugin's instances. The
    /// pool's slots are sized for it (address space only: memory is
    /// committed as instances touch it).
    pub memory_cap: usize,
    /// The most table elements a sidecar may give its plugin's tables; the
    /// pool's table slots are sized for it.
    pub table_cap: usize,
    /// Where compiled plugins are kept between loads ([`CompileCache`]);
    /// `None` compiles every load.
    pub compile_cache: Option<std::path::PathBuf>,
    /// Bytes the compile cache may hold before its oldest entries go.
    pub compile_cache_max_bytes: u64,
    /// Instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Wasm stack per call.
    pub max_wasm_stack: usize,
    /// Epoch tick: the granularity of deadlines and of guest time-slicing.
    pub epoch_tick: Duration,
    /// Threads that execute guest code.
    pub guest_threads: usize,
    /// Data a guest may hand to the host in one call (its result, or the
    /// arguments of one host import call), in bytes.
    pub max_guest_output: usize,
    /// Resource handles a guest may hold at once.
    pub max_component_handles: usize,
    /// How long a call may run on the thread that received it before it
    /// moves to the guest pool; zero sends every call to the pool at once.
    /// See [`Runtime::call`].
    pub inline_budget: Duration,
    /// Fresh instances made ahead of calls, per plugin that has been
    /// called (each takes a pool slot and its memory); zero makes every
    /// instance on its call's path.
    pub spare_instances: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            memory_limit: 64 << 20,
            table_limit: 20_000,
            memory_cap: 1 << 30,
            table_cap: 200_000,
            compile_cache: None,
            compile_cache_max_bytes: 2 << 30,
            max_instances: 256,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(10),
            guest_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_guest_output: crate::protocol::DEFAULT_MAX_FRAME,
            max_component_handles: 1_000,
            inline_budget: Duration::from_millis(1),
            spare_instances: 2,
        }
    }
}

/// The wasmtime engine, linker, threads and guest thread pool of one host.
///
/// Dropping it stops the epoch ticker (and waits for it), then lets the
/// guest pool's threads go.
pub struct Runtime {
    // Held for what their drop does, in this order: the ticker stops first,
    // then the pool's threads go.
    _ticker: EpochTicker,
    _guest_pool: GuestPool,
    shared: Arc<Shared>,
    linker: Linker<PluginState>,
    compiler: Compiler,
    cache: Option<CompileCache>,
}

impl Runtime {
    /// Builds the engine (pooling allocator, epochs), the linker with WASI and
    /// the host interface, the guest thread pool, the epoch ticker and the
    /// compiler thread.
    ///
    /// # Errors
    ///
    /// When the engine, the guest thread pool or a thread cannot be created.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = engine::build(&config)?;
        let cache = config.compile_cache.as_deref().and_then(|dir| {
            match CompileCache::open(dir, &engine, config.compile_cache_max_bytes) {
                Ok(cache) => Some(cache),
                Err(error) => {
                    tracing::warn!("compiling every plugin at each load: {error:#}");
                    None
                }
            }
        });
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        host_api::add_to_linker(&mut linker)?;

        let guest_pool = GuestPool::new(config.guest_threads)?;
        let guests = Guests::new(guest_pool.handle().clone());
        let shared = Arc::new(Shared::new(engine, config, guests));
        let ticker = EpochTicker::start(
            shared.engine.clone(),
            shared.guests.watch.clone(),
            shared.config.epoch_tick,
            shared.config.inline_budget,
        )?;
        Ok(Runtime {
            _ticker: ticker,
            _guest_pool: guest_pool,
            shared,
            linker,
            compiler: Compiler::start()?,
            cache,
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// The compile cache, when one is in use.
    pub fn compile_cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// The instance limits of a plugin whose sidecar asks for `memory_mib`
    /// and `table_elements` (the host's defaults where it asks nothing).
    ///
    /// # Errors
    ///
    /// When it asks for more than the host's caps, or for nothing at all.
    pub fn limits(
        &self,
        memory_mib: Option<u64>,
        table_elements: Option<u64>,
    ) -> anyhow::Result<Limits> {
        let config = &self.shared.config;
        let memory = match memory_mib {
            None => config.memory_limit,
            Some(0) => anyhow::bail!("`memory_mib` must be at least 1"),
            Some(mib) => {
                let cap = config.memory_cap >> 20;
                if mib > cap as u64 {
                    anyhow::bail!(
                        "`memory_mib = {mib}` is over this host's cap of {cap} MiB \
                         (`--max-plugin-memory-mib`)"
                    );
                }
                usize::try_from(mib)? << 20
            }
        };
        let table_elements = match table_elements {
            None => config.table_limit,
            Some(0) => anyhow::bail!("`table_elements` must be at least 1"),
            Some(n) => {
                if n > config.table_cap as u64 {
                    anyhow::bail!(
                        "`table_elements = {n}` is over this host's cap of {} \
                         (`--max-plugin-table-elements`)",
                        config.table_cap
                    );
                }
                usize::try_from(n)?
            }
        };
        Ok(Limits {
            memory,
            table_elements,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_may_set_limits_up_to_the_hosts_caps() {
        let runtime = Runtime::new(RuntimeConfig {
            memory_cap: 256 << 20,
            table_cap: 30_000,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let defaults = Limits {
            memory: 64 << 20,
            table_elements: 20_000,
        };
        assert_eq!(runtime.limits(None, None).unwrap(), defaults);
        assert_eq!(
            runtime.limits(Some(256), Some(30_000)).unwrap(),
            Limits {
                memory: 256 << 20,
                table_elements: 30_000,
            }
        );
        assert_eq!(
            runtime.limits(Some(16), None).unwrap(),
            Limits {
                memory: 16 << 20,
                ..defaults
            }
        );
        let refusals = [
            (
                (Some(257), None),
                "`memory_mib = 257` is over this host's cap of 256 MiB (`--max-plugin-memory-mib`)",
            ),
            (
                (None, Some(30_001)),
                "`table_elements = 30001` is over this host's cap of 30000 \
                 (`--max-plugin-table-elements`)",
            ),
            ((Some(0), None), "`memory_mib` must be at least 1"),
            ((None, Some(0)), "`table_elements` must be at least 1"),
        ];
        for ((memory, table), message) in refusals {
            let error = runtime.limits(memory, table).unwrap_err();
            assert_eq!(error.to_string(), message);
        }
    }
}
