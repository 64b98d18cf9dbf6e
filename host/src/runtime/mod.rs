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

pub use call::LocalCall;
pub use compile::{Function, Plugin};
pub use signature::{func_to_wit, type_to_wit};

use compile::Compiler;
use engine::EpochTicker;
use instances::Shared;
use pool::{GuestPool, Guests};
use state::PluginState;

/// Limits and tuning of the runtime. Defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Linear memory one instance may use, summed over its memories.
    pub memory_limit: usize,
    /// Elements one table may hold.
    pub table_limit: usize,
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
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }
}
