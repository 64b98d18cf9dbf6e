//! Runs plugins: the wasmtime engine with our fixed choices, compilation and
//! reflection of exports, and dynamic calls with CBOR arguments.
//!
//! Every choice that keeps the host safe from its guests is made here, once:
//! epoch interruption on a dedicated ticker thread, the deadline checked in the
//! epoch callback, guests executed on their own thread pool (never on the
//! network runtime), the pooling allocator, a memory cap per instance, a fresh
//! store and instance per call, and WASI with no ambient capability.

mod host_api;
mod signature;
mod state;
mod stdio;
pub mod value;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciborium::Value;
use tokio_util::task::AbortOnDropHandle;
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, Type, Val, types::ComponentItem,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;

use crate::protocol::{CallError, ErrorCode, Processed};
use crate::service::{CallRequest, Service};
pub use signature::{func_to_wit, type_to_wit};
use state::{CallScope, Interrupt, PluginState};
use stdio::LogStream;

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
        }
    }
}

/// The wasmtime engine, linker and guest thread pool of one host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    guests: Option<tokio::runtime::Runtime>,
    config: RuntimeConfig,
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
    /// Instances waiting to serve another call (reuse mode only).
    warm: Mutex<Vec<Warm>>,
}

/// One callable export of a plugin.
pub struct Function {
    /// The RPC name: `plugin.function` or `plugin.interface.function`.
    pub name: String,
    /// WIT signature, e.g. `func(a: s64, b: s64) -> s64`.
    pub signature: String,
    params: Vec<(String, Type)>,
    result: Option<Type>,
    index: ComponentExportIndex,
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
            .enable_all()
            .build()?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;

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
            engine,
            linker,
            guests: Some(guests),
            config,
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
        &self.config
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
        let component = Component::new(&self.engine, bytes)?;
        let pre = self.linker.instantiate_pre(&component)?;
        let mut functions = Vec::new();
        let mut skipped = Vec::new();
        let ty = component.component_type();
        for (export, item) in ty.exports(&self.engine) {
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
                    for (fname, item) in instance.exports(&self.engine) {
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
            warm: Mutex::new(Vec::new()),
        })
    }

    /// Calls `plugin.functions[function]` with the request's CBOR arguments,
    /// on the guest thread pool, in a fresh instance, or with `reuse` in a
    /// warm instance of the plugin when one is free.
    ///
    /// Nested `call`s made by the guest go to `router`. The result is the
    /// function's value as CBOR; a `result<T, E>` returning `err` becomes a
    /// `handler_error` whose detail is E.
    pub async fn call(
        &self,
        plugin: Arc<Plugin>,
        function: usize,
        request: CallRequest,
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
        let params = request
            .args
            .iter()
            .zip(&func.params)
            .map(|(arg, (name, ty))| {
                value::to_val(arg, ty)
                    .map_err(|e| CallError::invalid_args(format!("parameter `{name}`: {e}")))
            })
            .collect::<Result<Vec<Val>, _>>()?;
        if request.remaining().is_zero() {
            return Err(CallError::deadline_exceeded(Processed::No));
        }

        let scope = CallScope {
            plugin: plugin.name.clone(),
            region,
            deadline: request.deadline,
            cancel: request.cancel.clone(),
            hops: request.hops,
            visited: request.visited,
            metadata: request.metadata,
            router,
            slice_start: std::time::Instant::now(),
        };
        let engine = self.engine.clone();
        let deadline = tokio::time::Instant::from_std(request.deadline);
        let cancel = request.cancel.clone();
        let guest_plugin = plugin.clone();
        let limits = self.config.clone();
        let queued = std::time::Instant::now();
        // Dropping this future (the caller went away) aborts the guest task too.
        let mut task = AbortOnDropHandle::new(self.guests().spawn(async move {
            tracing::trace!(
                plugin = %guest_plugin.name,
                waited_us = queued.elapsed().as_micros() as u64,
                "guest task started"
            );
            let run = run_guest(
                engine,
                guest_plugin,
                function,
                params,
                scope,
                &limits,
                reuse,
            );
            tokio::select! {
                outcome = tokio::time::timeout_at(deadline, run) => match outcome {
                    Ok(result) => result,
                    Err(_) => Err(CallError::deadline_exceeded(Processed::Maybe)),
                },
                () = cancel.cancelled() => Err(CallError::cancelled(Processed::Maybe)),
            }
        }));
        // The answer never waits for a crowded guest pool: the deadline and
        // cancellation are also enforced here, and leaving aborts the guest.
        tokio::select! {
            joined = &mut task => match joined {
                Ok(outcome) => outcome,
                Err(join) if join.is_panic() => Err(CallError::internal(format!(
                    "the host panicked while running `{}`",
                    plugin.functions[function].name
                ))),
                Err(_) => Err(CallError::cancelled(Processed::Maybe)),
            },
            () = tokio::time::sleep_until(deadline) => Err(CallError::deadline_exceeded(Processed::Maybe)),
            () = request.cancel.cancelled() => Err(CallError::cancelled(Processed::Maybe)),
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
        if let Some(guests) = self.guests.take() {
            guests.shutdown_background();
        }
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
        .table_elements(config.table_limit);
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

/// Warm instances kept per plugin in reuse mode.
const MAX_WARM: usize = 16;
/// Calls one warm instance serves before it is retired.
const MAX_REUSE: u32 = 1_000;

/// An instance kept for reuse, with the store it lives in.
struct Warm {
    store: Store<PluginState>,
    instance: wasmtime::component::Instance,
    calls: u32,
}

/// A store set up with our limits and the epoch policy.
fn new_store(
    engine: &Engine,
    plugin: &Plugin,
    scope: CallScope,
    limits: &RuntimeConfig,
) -> Store<PluginState> {
    let panic_note = Arc::new(Mutex::new(None));
    // No ambient capability: no preopened directories, no environment,
    // no arguments, and every socket refused.
    let wasi = WasiCtxBuilder::new()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .stdout(LogStream::stdout(plugin.name.clone()))
        .stderr(LogStream::stderr(plugin.name.clone()).capturing_panics(panic_note.clone()))
        .build();
    let state = PluginState::new(
        wasi,
        limits.memory_limit,
        limits.table_limit,
        scope,
        panic_note,
    );
    let mut store = Store::new(engine, state);
    store.limiter(|state| state.limiter());
    // Hostcall fuel counts host memory: one `Val` per value lifted.
    store.set_hostcall_fuel(
        limits
            .max_guest_output
            .saturating_mul(std::mem::size_of::<Val>()),
    );
    store.set_max_component_handles(limits.max_component_handles);
    store.set_epoch_deadline(1);
    let slice = limits.epoch_tick;
    store.epoch_deadline_callback(move |mut ctx| {
        let scope = ctx.data_mut().scope_mut();
        let now = std::time::Instant::now();
        if scope.cancel.is_cancelled() {
            Err(Interrupt::Cancelled.into())
        } else if now >= scope.deadline {
            Err(Interrupt::Deadline.into())
        } else if now.duration_since(scope.slice_start) >= slice {
            // A full slice of running: give the thread to other calls.
            // tokio's own yield puts the guest at the back of the queue (a
            // plain self-wake would land in tokio's LIFO slot and run again
            // ahead of waiting calls).
            scope.slice_start = now;
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        } else {
            // A tick soon after starting: short calls finish without
            // queueing again behind long-running guests.
            Ok(UpdateDeadline::Continue(1))
        }
    });
    store
}

/// Runs one call on the guest pool: takes a warm instance (reuse mode) or
/// instantiates a fresh one, calls, and maps the outcome to the reply. An
/// instance that completed is kept for reuse; one that failed is dropped. If
/// this future is dropped (deadline, cancel), its instance is dropped too.
async fn run_guest(
    engine: Engine,
    plugin: Arc<Plugin>,
    function: usize,
    params: Vec<Val>,
    scope: CallScope,
    limits: &RuntimeConfig,
    reuse: bool,
) -> Result<Value, CallError> {
    let func = &plugin.functions[function];
    let warm = if reuse {
        plugin.warm.lock().expect("warm lock").pop()
    } else {
        None
    };
    let (mut store, instance, calls) = match warm {
        Some(mut warm) => {
            warm.store.data_mut().begin(scope);
            warm.store.set_epoch_deadline(1);
            (warm.store, warm.instance, warm.calls)
        }
        None => {
            let mut store = new_store(&engine, &plugin, scope, limits);
            match plugin.pre.instantiate_async(&mut store).await {
                Ok(instance) => (store, instance, 0),
                Err(error) => {
                    let note = store.data().panic_note();
                    return Err(classify(&plugin.name, &func.name, error, &note, limits));
                }
            }
        }
    };
    let outcome = match instance.get_func(&mut store, func.index) {
        Some(export) => {
            let mut results = vec![Val::Bool(false); usize::from(func.result.is_some())];
            export
                .call_async(&mut store, &params, &mut results)
                .await
                .map(|()| results.pop())
        }
        None => Err(wasmtime::format_err!("export `{}` vanished", func.name)),
    };
    match outcome {
        Ok(val) => {
            let reply = finish(func, val);
            if reuse && calls + 1 < MAX_REUSE {
                store.data_mut().end();
                let mut warm = plugin.warm.lock().expect("warm lock");
                if warm.len() < MAX_WARM {
                    warm.push(Warm {
                        store,
                        instance,
                        calls: calls + 1,
                    });
                }
            }
            reply
        }
        Err(error) => {
            let note = store.data().panic_note();
            Err(classify(&plugin.name, &func.name, error, &note, limits))
        }
    }
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
    panic_note: &Mutex<Option<String>>,
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
        return CallError::new(
            ErrorCode::ResourceExhausted,
            Processed::Maybe,
            format!(
                "`{function}` handed the host more than the {} KiB of data allowed per call",
                config.max_guest_output >> 10
            ),
        );
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
        if let Some(note) = panic_note.lock().expect("panic note lock").take() {
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
    functions.push(Function {
        name,
        signature,
        params,
        result,
        index,
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
