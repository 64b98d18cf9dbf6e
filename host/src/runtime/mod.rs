//! Runs plugins: the wasmtime engine with our fixed choices, compilation and
//! reflection of exports, and dynamic calls with CBOR arguments (typed calls
//! for signatures that pass byte strings; see the `bytes` module).
//!
//! Every choice that keeps the host safe from its guests is made here, once:
//! epoch interruption on a dedicated ticker thread, the deadline checked in the
//! epoch callback, guests on their own thread pool once they run longer than
//! the inline budget (1 ms; see the `inline` module), the pooling allocator,
//! a memory cap per instance, a fresh store and instance per call (made ahead
//! of the call and torn down after its reply; see the `instances` module),
//! and WASI with no ambient capability.

mod bytes;
mod host_api;
mod inline;
mod instances;
mod signature;
mod state;
mod stdio;
pub mod value;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ciborium::Value;
use tokio_util::task::AbortOnDropHandle;
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, Type, Val, types::ComponentItem,
};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Trap};

use crate::protocol::{CallError, ErrorCode, Processed};
use crate::service::{CallRequest, Service};
use inline::Inline;
use instances::{Instances, Shared};
pub use signature::{func_to_wit, type_to_wit};
use state::{CallScope, Interrupt, PluginState};

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

/// The wasmtime engine, linker and guest thread pool of one host.
pub struct Runtime {
    shared: Arc<Shared>,
    linker: Linker<PluginState>,
    guests: Option<tokio::runtime::Runtime>,
    ticker_stop: Arc<AtomicBool>,
    compiler: std::sync::mpsc::Sender<CompileJob>,
}

/// Work for the compiler thread.
type CompileJob = Box<dyn FnOnce() + Send>;

/// A compiled, validated plugin, ready to be instantiated per call.
pub struct Plugin {
    pub name: Arc<str>,
    pub functions: Vec<Function>,
    /// Exports left out of the catalog, with the reason (already logged).
    pub skipped: Vec<String>,
    pre: InstancePre<PluginState>,
    /// Instances ready for calls.
    instances: Instances,
}

/// One callable export of a plugin.
pub struct Function {
    /// The RPC name: `plugin.function` or `plugin.interface.function`.
    pub name: String,
    /// WIT signature, e.g. `func(a: s64, b: s64) -> s64`.
    pub signature: String,
    params: Vec<(String, Type)>,
    result: Option<Type>,
    /// Set when the typed path serves it (see the `bytes` module).
    typed: Option<bytes::Shape>,
    index: ComponentExportIndex,
    /// Until when (ms on [`clock_ms`]) calls go straight to the guest pool,
    /// because a recent call was too long to run inline.
    pool_until: AtomicU64,
}

impl Function {
    /// Whether calls should skip the inline fast path for now.
    fn prefers_pool(&self) -> bool {
        clock_ms() < self.pool_until.load(Ordering::Relaxed)
    }

    /// A call ran (or would have run) too long inline: serve the next calls
    /// from the guest pool for a while. Returns the mark, for
    /// [`Function::back_inline`].
    fn send_to_pool(&self) -> u64 {
        let until = clock_ms() + POOL_FOR_MS;
        self.pool_until.store(until, Ordering::Relaxed);
        until
    }

    /// Withdraws the mark `until` set by [`Function::send_to_pool`], unless a
    /// later move has set another.
    fn back_inline(&self, until: u64) {
        let _ = self
            .pool_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// How long a function that was too long to run inline is served from the
/// guest pool only; then it gets another chance.
const POOL_FOR_MS: u64 = 1_000;

/// Milliseconds since the first use of the clock; cheap to compare.
fn clock_ms() -> u64 {
    static START: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Runtime {
    /// Builds the engine (pooling allocator, epochs), the linker with WASI and
    /// the host interface, the guest thread pool and the epoch ticker.
    ///
    /// # Errors
    ///
    /// When the engine or the guest thread pool cannot be created.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = build_engine(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        host_api::add_to_linker(&mut linker)?;

        // Each poll of a spinning guest lasts one epoch tick, so the pool must
        // look for new calls (spawned from the network runtime onto its
        // global queue) and timers often, not every 61 polls (tokio's
        // default), or a new call waits behind every spinner ~61 times.
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.guest_threads.max(1))
            .thread_name("wasm-guest")
            .global_queue_interval(2)
            .event_interval(2)
            .on_thread_start(inline::mark_guest_thread)
            .enable_all()
            .build()?;

        let shared = Arc::new(Shared::new(engine, config, guests.handle().clone()));
        let config = &shared.config;

        // The ticker bumps the epoch every tick, and also as soon as a call
        // running inline has outlasted its budget: while calls come in, it
        // looks every budget (see `inline::Watch`).
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&shared);
        let stop = ticker_stop.clone();
        let (tick, budget) = (config.epoch_tick, config.inline_budget);
        let ticker = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                let mut next_tick = std::time::Instant::now() + tick;
                let mut seen = None;
                while !stop.load(Ordering::Relaxed) {
                    let Some(shared) = weak.upgrade() else {
                        break;
                    };
                    let watch = &shared.watch;
                    let now = std::time::Instant::now();
                    let until_tick = next_tick.saturating_duration_since(now);
                    let started = watch.started();
                    let busy = !budget.is_zero() && seen != Some(started);
                    seen = Some(started);
                    // Look every budget while calls come in, every tick while
                    // guests run on the pool, and not at all while none runs.
                    let wait = if busy {
                        Some(budget.min(until_tick))
                    } else if watch.pool_running() {
                        Some(until_tick)
                    } else if watch.may_sleep() {
                        None
                    } else {
                        Some(budget.min(until_tick))
                    };
                    drop(shared);
                    match wait {
                        Some(wait) => std::thread::park_timeout(wait),
                        None => std::thread::park(),
                    }
                    let Some(shared) = weak.upgrade() else {
                        break;
                    };
                    shared.watch.awake();
                    let now = std::time::Instant::now();
                    let ticked = now >= next_tick;
                    if ticked || (!budget.is_zero() && shared.watch.overdue(now, budget)) {
                        shared.engine.increment_epoch();
                    }
                    if ticked {
                        next_tick = now + tick;
                    }
                }
            })?;
        shared.watch.set_ticker(ticker.thread().clone());

        // Compilation is CPU-heavy and cannot be interrupted: it runs on one
        // thread of its own at a lower priority, so serving never waits for it.
        let (compiler, jobs) = std::sync::mpsc::channel::<CompileJob>();
        std::thread::Builder::new()
            .name("wasm-compiler".into())
            .spawn(move || {
                // SAFETY: setpriority has no memory-safety preconditions; on
                // Linux, `who = 0` with PRIO_PROCESS means the calling thread.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
                for job in jobs {
                    job();
                }
            })?;

        Ok(Runtime {
            shared,
            linker,
            guests: Some(guests),
            ticker_stop,
            compiler,
        })
    }

    /// [`Runtime::compile`] on the runtime's low-priority compiler thread.
    ///
    /// # Errors
    ///
    /// As [`Runtime::compile`].
    pub async fn compile_in_background(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Plugin> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runtime = self.clone();
        let name = name.to_owned();
        let job: CompileJob = Box::new(move || {
            let _ = tx.send(runtime.compile(&name, &bytes));
        });
        self.compiler
            .send(job)
            .map_err(|_| anyhow::anyhow!("the compiler thread has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the compiler thread dropped the job"))?
    }

    /// The limits in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// Compiles and validates a component and reflects its callable exports.
    ///
    /// CPU-heavy: call it off the serving path (`spawn_blocking`).
    ///
    /// # Errors
    ///
    /// When `bytes` is not a valid component, or it imports something the
    /// host does not provide.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Plugin> {
        let component = Component::new(&self.shared.engine, bytes)?;
        let pre = self.linker.instantiate_pre(&component)?;
        let mut functions = Vec::new();
        let mut skipped = Vec::new();
        let ty = component.component_type();
        for (export, item) in ty.exports(&self.shared.engine) {
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
                    for (fname, item) in instance.exports(&self.shared.engine) {
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
        for reason in &skipped {
            tracing::warn!(plugin = name, "function left out of the catalog: {reason}");
        }
        Ok(Plugin {
            name: name.into(),
            functions,
            skipped,
            pre,
            instances: Instances::default(),
        })
    }

    /// Calls `plugin.functions[function]` with the request's CBOR arguments,
    /// in a fresh instance, or with `reuse` in a warm instance of the plugin
    /// when one is free. The guest runs on the calling thread until it has
    /// run for the inline budget, then on the guest thread pool.
    ///
    /// Nested `call`s made by the guest go to `router`. The result is the
    /// function's value as CBOR; a `result<T, E>` returning `err` becomes a
    /// `handler_error` whose detail is E.
    pub async fn call(
        &self,
        plugin: Arc<Plugin>,
        function: usize,
        mut request: CallRequest,
        router: Arc<dyn Service>,
        region: Arc<str>,
        reuse: bool,
    ) -> Result<Value, CallError> {
        let func = &plugin.functions[function];
        if request.args.len() != func.params.len() {
            let params: Vec<String> = func
                .params
                .iter()
                .map(|(name, ty)| format!("{name}: {}", type_to_wit(ty)))
                .collect();
            return Err(CallError::invalid_args(format!(
                "`{}` takes {} argument{} ({}), got {}",
                func.name,
                params.len(),
                if params.len() == 1 { "" } else { "s" },
                params.join(", "),
                request.args.len()
            )));
        }
        let args = std::mem::take(&mut request.args);
        let invalid = |name: &str, e| CallError::invalid_args(format!("parameter `{name}`: {e}"));
        let params = if func.typed.is_some() {
            let args = args.into_iter().zip(&func.params);
            Args::Typed(
                args.map(|(arg, (name, ty))| bytes::arg(arg, ty).map_err(|e| invalid(name, e)))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            let args = args.iter().zip(&func.params);
            Args::Dynamic(
                args.map(|(arg, (name, ty))| value::to_val(arg, ty).map_err(|e| invalid(name, e)))
                    .collect::<Result<_, _>>()?,
            )
        };
        if request.remaining().is_zero() {
            return Err(CallError::deadline_exceeded(Processed::No));
        }

        let deadline = request.context.deadline;
        let cancel = request.context.cancel.clone();
        let scope = CallScope {
            plugin: plugin.name.clone(),
            region,
            context: request.context,
            router,
            slice_start: std::time::Instant::now(),
        };
        let mut run = Box::pin(run_guest(
            self.shared.clone(),
            plugin.clone(),
            function,
            params,
            scope,
            reuse,
        ));
        let panicked = || {
            CallError::internal(format!(
                "the host panicked while running `{}`",
                plugin.functions[function].name
            ))
        };

        // Already on a guest thread, or nested in a call running inline:
        // this call is part of the running one and goes where it goes.
        if inline::run_in_place() {
            return bounded(run, deadline, &cancel).await;
        }
        // The inline fast path (see the `inline` module): run here until the
        // call finishes, awaits something, or outlasts the budget. The epoch
        // callback checks deadline and cancellation meanwhile.
        let budget = self.shared.config.inline_budget;
        let mut moved = None;
        if !budget.is_zero() && !func.prefers_pool() {
            match inline::poll_inline(&self.shared.watch, &mut run).await {
                Inline::Done(output) => return output,
                Inline::Panicked => return Err(panicked()),
                Inline::Pending { preempted: true } => {
                    moved = Some(func.send_to_pool());
                    tracing::debug!(
                        "`{}` ran past the inline budget of {budget:?}; moved to the guest pool",
                        func.name
                    );
                }
                Inline::Pending { preempted: false } | Inline::NotStarted => {}
            }
        }

        // Dropping this future (the caller went away) aborts the guest task too.
        let guarded = {
            let cancel = cancel.clone();
            // Epoch ticks run while guests run on the pool.
            let running = self.shared.watch.pool_run();
            let plugin = plugin.clone();
            async move {
                let _running = running;
                let Some(until) = moved else {
                    return bounded(run, deadline, &cancel).await;
                };
                // The budget is wall time: a thread the OS set aside for a
                // while (both CPUs busy) can pass it in a short call. Such a
                // call has little left to do once moved, and the function's
                // next calls stay inline.
                let mut timed = inline::CpuTimed::new(run);
                let outcome = bounded(&mut timed, deadline, &cancel).await;
                if timed.used() < budget {
                    let func = &plugin.functions[function];
                    func.back_inline(until);
                    tracing::debug!(
                        "`{}` needed {:?} of CPU time after its move; its calls stay inline",
                        func.name,
                        timed.used()
                    );
                }
                outcome
            }
        };
        let mut task = AbortOnDropHandle::new(self.guests().spawn(guarded));
        // The answer never waits for a crowded guest pool: the deadline and
        // cancellation are also enforced here, and leaving aborts the guest.
        tokio::select! {
            joined = &mut task => match joined {
                Ok(outcome) => outcome,
                Err(join) if join.is_panic() => Err(panicked()),
                Err(_) => Err(CallError::cancelled(Processed::Maybe)),
            },
            () = tokio::time::sleep_until(deadline) => Err(CallError::deadline_exceeded(Processed::Maybe)),
            () = cancel.cancelled() => Err(CallError::cancelled(Processed::Maybe)),
        }
    }

    fn guests(&self) -> &tokio::runtime::Handle {
        self.guests
            .as_ref()
            .expect("guest pool lives as long as the runtime")
            .handle()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        self.shared.watch.wake_ticker_to_stop();
        if let Some(guests) = self.guests.take() {
            guests.shutdown_background();
        }
    }
}

/// `run` within the call's deadline and cancellation: for a guest awaiting
/// something (a timer, a nested call), which epoch ticks cannot interrupt.
async fn bounded(
    run: impl Future<Output = Result<Value, CallError>>,
    deadline: tokio::time::Instant,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Value, CallError> {
    tokio::select! {
        outcome = tokio::time::timeout_at(deadline, run) => match outcome {
            Ok(result) => result,
            Err(_) => Err(CallError::deadline_exceeded(Processed::Maybe)),
        },
        () = cancel.cancelled() => Err(CallError::cancelled(Processed::Maybe)),
    }
}

fn build_engine(config: &RuntimeConfig) -> anyhow::Result<Engine> {
    let mut base = Config::new();
    base.epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack)
        .wasm_component_model(true)
        // One compiler thread (see `Runtime::new`): on a small machine a
        // parallel compile of a large plugin would take every core.
        .parallel_compilation(false);

    let mut pooled = base.clone();
    let mut pool = PoolingAllocationConfig::default();
    let instances = config.max_instances;
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 4)
        .total_stacks(instances)
        .max_memory_size(config.memory_limit)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_core_instances_per_component(32)
        .table_elements(config.table_limit)
        // A freed memory slot is reset in place (the pages the instance
        // wrote, found with PAGEMAP_SCAN where the kernel has it, copied back
        // from the image) instead of returned to the kernel with madvise: on
        // a fresh-instance-per-call host, that madvise and the page faults
        // after it were a third of each call's cost.
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        // Tables of one page or less (a few hundred entries, as compilers
        // emit) are cleared with a memset, cheaper than a page scan.
        .table_keep_resident(host_page_size())
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

fn host_page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Runs one call: takes an instance (see [`Shared::take`]), calls, maps the
/// outcome to the reply and releases the instance (see [`Shared::release`]).
/// If this future is dropped (deadline, cancel), its instance is dropped too.
async fn run_guest(
    shared: Arc<Shared>,
    plugin: Arc<Plugin>,
    function: usize,
    params: Args,
    scope: CallScope,
    reuse: bool,
) -> Result<Value, CallError> {
    let func = &plugin.functions[function];
    let limits = &shared.config;
    let mut ready = match shared.take(&plugin, scope, reuse).await {
        Ok(ready) => ready,
        Err((error, note)) => return Err(classify(&plugin.name, &func.name, error, note, limits)),
    };
    let outcome = match ready.instance.get_func(&mut ready.store, func.index) {
        Some(export) => match (params, &func.typed) {
            (Args::Typed(args), Some(shape)) => bytes::call(export, &mut ready.store, shape, args)
                .await
                .map(Output::Typed),
            (Args::Dynamic(params), _) => {
                let mut results = vec![Val::Bool(false); usize::from(func.result.is_some())];
                export
                    .call_async(&mut ready.store, &params, &mut results)
                    .await
                    .map(|()| Output::Dynamic(results.pop()))
            }
            (Args::Typed(_), None) => {
                Err(wasmtime::format_err!("typed arguments for `{}`", func.name))
            }
        },
        None => Err(wasmtime::format_err!("export `{}` vanished", func.name)),
    };
    match outcome {
        Ok(output) if output.data_len() > limits.max_guest_output => {
            shared.release(&plugin, ready, false, reuse);
            Err(output_limit(&func.name, limits))
        }
        Ok(output) => {
            shared.release(&plugin, ready, true, reuse);
            match output {
                Output::Dynamic(val) => finish(func, val),
                Output::Typed(out) => out.into_reply().or_else(|val| finish(func, Some(val))),
            }
        }
        Err(error) => {
            let note = ready.store.data().take_panic_note();
            shared.release(&plugin, ready, false, reuse);
            Err(classify(&plugin.name, &func.name, error, note, limits))
        }
    }
}

/// A call's arguments, converted for the path that calls it.
enum Args {
    /// For wasmtime's dynamic API.
    Dynamic(Vec<Val>),
    /// For the typed path (see the `bytes` module).
    Typed(Vec<bytes::Arg>),
}

/// What a call returned, by path.
enum Output {
    Dynamic(Option<Val>),
    Typed(bytes::Out),
}

impl Output {
    /// Bytes of data the guest handed over, the measure of
    /// `max_guest_output`. Hostcall fuel caps what lifting may allocate, not
    /// the data itself: wasmtime charges a `Val` per list element but a byte
    /// per character of a string.
    fn data_len(&self) -> usize {
        match self {
            Output::Dynamic(val) => val.as_ref().map_or(0, value::data_len),
            Output::Typed(out) => out.len(),
        }
    }
}

/// The error of a call whose guest handed the host more data than allowed.
fn output_limit(function: &str, config: &RuntimeConfig) -> CallError {
    data_limit(
        &format!("`{function}`"),
        config.max_guest_output,
        Processed::Maybe,
    )
}

/// The error for data over `limit` bytes handed to the host by `who`.
fn data_limit(who: &str, limit: usize, processed: Processed) -> CallError {
    CallError::new(
        ErrorCode::ResourceExhausted,
        processed,
        format!(
            "{who} handed the host more than the {} KiB of data allowed per call",
            limit >> 10
        ),
    )
}

/// Turns the function's result into the reply value or a handler error.
fn finish(func: &Function, val: Option<Val>) -> Result<Value, CallError> {
    let (Some(val), Some(ty)) = (val, func.result.as_ref()) else {
        return Ok(Value::Null);
    };
    let convert = |val: Val, ty: &Type| {
        value::from_val(val, ty).map_err(|e| {
            CallError::internal(format!("cannot encode the result of `{}`: {e}", func.name))
        })
    };
    match (val, ty) {
        (Val::Result(Ok(payload)), Type::Result(result)) => match (payload, result.ok()) {
            (Some(payload), Some(ok)) => convert(*payload, &ok),
            _ => Ok(Value::Null),
        },
        (Val::Result(Err(payload)), Type::Result(result)) => match (payload, result.err()) {
            (Some(payload), Some(err)) => {
                let detail = convert(*payload, &err)?;
                let message = match &detail {
                    Value::Text(text) => text.clone(),
                    other => crate::protocol::json::to_json_text(other),
                };
                Err(
                    CallError::new(ErrorCode::HandlerError, Processed::Yes, message)
                        .with_detail(detail),
                )
            }
            _ => Err(CallError::new(
                ErrorCode::HandlerError,
                Processed::Yes,
                format!("`{}` returned an error", func.name),
            )),
        },
        (val, ty) => convert(val, ty),
    }
}

/// Maps a failed guest run to its wire error: the one place where traps,
/// interrupts and pool exhaustion get their codes.
fn classify(
    plugin: &str,
    function: &str,
    error: wasmtime::Error,
    panic_note: Option<String>,
    config: &RuntimeConfig,
) -> CallError {
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return match interrupt {
            Interrupt::Deadline => CallError::deadline_exceeded(Processed::Maybe),
            Interrupt::Cancelled => CallError::cancelled(Processed::Maybe),
            Interrupt::Memory { .. } => CallError::new(
                ErrorCode::ResourceExhausted,
                Processed::Maybe,
                format!(
                    "plugin `{plugin}` exceeded its memory limit of {} MiB",
                    config.memory_limit >> 20
                ),
            ),
            Interrupt::Table { limit } => CallError::new(
                ErrorCode::ResourceExhausted,
                Processed::Maybe,
                format!("plugin `{plugin}` exceeded its table limit of {limit} elements"),
            ),
        };
    }
    // wasmtime's `HostcallFuelExhausted` is private; its message is fixed.
    if error.chain().any(|e| {
        e.to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    }) {
        return output_limit(function, config);
    }
    if let Some(limit) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::new(
            ErrorCode::ResourceExhausted,
            Processed::No,
            format!("no instance slot free to run `{function}`: {limit}"),
        );
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let mut message = match trap {
            Trap::StackOverflow => format!("`{function}` overflowed its stack"),
            other => format!(
                "`{function}` trapped: {}",
                other.to_string().trim_start_matches("wasm trap: ")
            ),
        };
        if let Some(note) = panic_note {
            message.push_str(&format!(" ({note})"));
        }
        return CallError::new(ErrorCode::Trap, Processed::Maybe, message);
    }
    tracing::warn!(plugin, function, "call failed: {error:?}");
    CallError::new(
        ErrorCode::Trap,
        Processed::Maybe,
        format!("`{function}` failed: {error}"),
    )
}

fn reflect(
    plugin: &str,
    interface: Option<&str>,
    export: &str,
    func: &wasmtime::component::types::ComponentFunc,
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
        pool_until: AtomicU64::new(0),
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
