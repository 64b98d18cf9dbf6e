//! The wasmtime engine with our fixed choices, and the epoch ticker that drives its interruption.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::RuntimeConfig;
use super::inline::Watch;

/// The engine: epoch interruption, a capped Wasm stack, the component model,
/// one compiler thread, and the pooling allocator when the system has room
/// for it (else instances are allocated on demand).
///
/// # Errors
///
/// When no engine can be built with these settings.
pub(super) fn build(config: &RuntimeConfig) -> anyhow::Result<Engine> {
    let mut base = Config::new();
    base.epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack)
        .wasm_component_model(true)
        // One compiler thread (see the `compile` module): on a small machine
        // a parallel compile of a large plugin would take every core.
        .parallel_compilation(false);

    let mut pooled = base.clone();
    let mut pool = PoolingAllocationConfig::default();
    let instances = config.max_instances;
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 4)
        .total_stacks(instances)
        // Slots fit the largest limit a sidecar may set (see
        // `Runtime::limits`); each store's limiter holds its own plugin's.
        .max_memory_size(config.memory_limit.max(config.memory_cap))
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_core_instances_per_component(32)
        .table_elements(config.table_limit.max(config.table_cap))
        // A freed memory slot is reset in place (the pages the instance
        // wrote, found with PAGEMAP_SCAN where the kernel has it, copied back
        // from the image) instead of returned to the kernel with madvise: on
        // a fresh-instance-per-call host, that madvise and the page faults
        // after it were a third of each call's cost.
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        // A freed table is cleared with a memset up to this size, and
        // returned to the kernel with madvise past it (to fault back in at
        // the next instantiation). Compilers emit tables of a few hundred
        // entries; components that link shared libraries at instantiation
        // (componentize-py: about 5,700 entries, componentize-js: about
        // 7,700) fill tables of tens of KiB, which this keeps resident:
        // a memset of tens of KiB costs less than the madvise and faults.
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(error) => {
            tracing::warn!(
                "pooling allocator unavailable ({error}); allocating instances on demand"
            );
            Ok(Engine::new(&base)?)
        }
    }
}

/// Bytes of each pooled linear memory kept resident between instances
/// (reset in place rather than decommitted).
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// Bytes of each pooled table kept resident between instances (cleared in
/// place): 16,384 funcref entries.
const TABLE_KEEP_RESIDENT: usize = 128 << 10;

/// The thread that bumps the engine's epoch: every tick, and as soon as a
/// call running inline has outlasted its budget. Each bump runs the epoch
/// callback of every running guest, which is what stops a spinning guest at
/// its deadline and moves an inline run to the guest pool.
///
/// Dropping it stops the thread and waits for it to end.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker of `engine`, which watches the inline runs and the
    /// guest pool through `watch` (see [`Watch`]).
    ///
    /// # Errors
    ///
    /// When the thread cannot be spawned.
    pub fn start(
        engine: Engine,
        watch: Arc<Watch>,
        tick: Duration,
        budget: Duration,
    ) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn({
                let (stop, watch) = (stop.clone(), watch.clone());
                move || tick_until_stopped(&stop, &engine, &watch, tick, budget)
            })?;
        watch.set_ticker(thread.thread().clone());
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The ticker may sleep until woken; the unpark makes the store
            // above visible to it when its park returns.
            thread.thread().unpark();
            // A panic of the ticker has already been reported by its thread.
            let _ = thread.join();
        }
    }
}

/// The ticker's loop: looks every budget while calls come in, ticks every
/// tick while guests run on the guest pool, and sleeps while no guest runs
/// anywhere (the next guest to start wakes it; see [`Watch`]).
fn tick_until_stopped(
    stop: &AtomicBool,
    engine: &Engine,
    watch: &Watch,
    tick: Duration,
    budget: Duration,
) {
    let mut next_tick = Instant::now() + tick;
    let mut seen = None;
    while !stop.load(Ordering::Relaxed) {
        let until_tick = next_tick.saturating_duration_since(Instant::now());
        let started = watch.started();
        let busy = !budget.is_zero() && seen != Some(started);
        seen = Some(started);
        let wait = if busy {
            Some(budget.min(until_tick))
        } else if watch.pool_running() {
            Some(until_tick)
        } else if watch.may_sleep() {
            None
        } else {
            Some(budget.min(until_tick))
        };
        match wait {
            Some(wait) => std::thread::park_timeout(wait),
            None => std::thread::park(),
        }
        watch.awake();
        let now = Instant::now();
        let ticked = now >= next_tick;
        if ticked || (!budget.is_zero() && watch.overdue(now, budget)) {
            engine.increment_epoch();
        }
        if ticked {
            next_tick = now + tick;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_ticker_stops_its_thread_and_waits_for_it() {
        let engine = Engine::new(Config::new().epoch_interruption(true)).unwrap();
        let watch = Arc::new(Watch::new());
        let ticker = EpochTicker::start(
            engine,
            watch.clone(),
            Duration::from_secs(3600),
            Duration::from_millis(1),
        )
        .unwrap();
        // No guest runs: the ticker goes to sleep until woken, an hour away
        // from its next tick.
        let asleep = Instant::now() + Duration::from_secs(5);
        while !watch.ticker_sleeps() {
            assert!(Instant::now() < asleep, "the idle ticker never slept");
            std::thread::yield_now();
        }
        let (dropped, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(ticker);
            dropped.send(()).unwrap();
        });
        done.recv_timeout(Duration::from_secs(5))
            .expect("the drop returns once the thread has ended");
        // The thread's own handle on the watch went with it.
        assert_eq!(Arc::strong_count(&watch), 1);
    }
}
