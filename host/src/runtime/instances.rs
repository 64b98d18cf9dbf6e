//! Instances of a plugin over their life: made for a call or ahead of calls
//! (spares), kept warm (reuse mode), and torn down once the reply is out.
//!
//! A call in the default mode gets an instance no other call has touched.
//! Making one (store, instantiation) and tearing it down (resetting its
//! memory and tables in the pool) are most of a short call's cost, so both
//! happen off the call's path when they can: after a call's reply is on its
//! way, the same thread drops its store and makes a spare for the next call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::Instance;
use wasmtime::{Engine, Store, UpdateDeadline, Val};

use super::inline;
use super::pool::{Guests, Placed};
use super::state::{CallScope, Interrupt, PluginState};
use super::{Plugin, RuntimeConfig};
use crate::service::{CallContext, NoCalls};

/// Warm instances kept per plugin in reuse mode.
const MAX_WARM: usize = 16;
/// Calls one warm instance serves before it is retired.
const MAX_REUSE: u32 = 1_000;
/// How long making a spare may take (a component's start functions run).
const SPARE_DEADLINE: Duration = Duration::from_secs(10);

/// What calls need of their runtime, shared with the work they leave behind
/// (teardown, spares).
pub(crate) struct Shared {
    pub engine: Engine,
    pub config: RuntimeConfig,
    /// Where guests run: inline, or on the guest thread pool.
    pub guests: Guests,
    /// Stores waiting to be torn down after their call.
    retiring: AtomicUsize,
    /// At most this many wait; past it, a store is dropped at once (its
    /// pool slot is only free again once it is).
    retiring_limit: usize,
    /// Spares held by all plugins: they take pool slots that calls could
    /// use, so there are at most `spares_limit` of them.
    spares_held: Arc<AtomicUsize>,
    spares_limit: usize,
}

/// The ready instances of one plugin version.
#[derive(Default)]
pub(crate) struct Instances {
    /// Never called: each serves one call (the default mode).
    spares: Mutex<Vec<Spare>>,
    /// Served earlier calls (reuse mode).
    warm: Mutex<Vec<Ready>>,
}

/// An instance with the store it lives in.
pub(crate) struct Ready {
    pub store: Store<PluginState>,
    pub instance: Instance,
    /// Calls it has served.
    pub calls: u32,
}

/// A spare instance, counted in [`Shared::spares_held`] while it lives.
struct Spare {
    ready: Ready,
    _held: Held,
}

/// One unit of [`Shared::spares_held`], given back on drop.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub fn new(engine: Engine, config: RuntimeConfig, guests: Guests) -> Shared {
        Shared {
            engine,
            // A sixteenth of the pool: small pools tear down at once.
            retiring_limit: config.max_instances as usize / 16,
            // An eighth of the pool: small pools keep none.
            spares_limit: config.max_instances as usize / 8,
            config,
            guests,
            retiring: AtomicUsize::new(0),
            spares_held: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Reserves room for one more spare in the host-wide limit.
    fn hold_spare(&self) -> Option<Held> {
        let held = Held(self.spares_held.clone());
        (self.spares_held.fetch_add(1, Ordering::Relaxed) < self.spares_limit).then_some(held)
    }

    /// An instance to serve the call in `scope`: a warm one (reuse mode), a
    /// spare, or a new one.
    ///
    /// # Errors
    ///
    /// When instantiation fails, with the panic message the guest printed.
    pub async fn take(
        &self,
        plugin: &Plugin,
        scope: CallScope,
        reuse: bool,
    ) -> Result<Ready, (wasmtime::Error, Option<String>)> {
        let ready = if reuse {
            plugin.instances.warm.lock().expect("instances lock").pop()
        } else {
            let spare = plugin
                .instances
                .spares
                .lock()
                .expect("instances lock")
                .pop();
            spare.map(|spare| spare.ready)
        };
        if let Some(mut ready) = ready {
            ready.store.data_mut().begin(scope);
            ready.store.set_epoch_deadline(1);
            return Ok(ready);
        }
        let mut store = self.new_store(plugin, scope);
        match plugin.pre.instantiate_async(&mut store).await {
            Ok(instance) => Ok(Ready {
                store,
                instance,
                calls: 0,
            }),
            Err(error) => Err((error, store.data().take_panic_note())),
        }
    }

    /// After a call: keeps a warm instance that completed (reuse mode), and
    /// tears the others down once the reply is on its way, making a spare in
    /// their place (default mode).
    pub fn release(
        self: &Arc<Self>,
        plugin: &Arc<Plugin>,
        mut ready: Ready,
        ok: bool,
        reuse: bool,
    ) {
        if reuse && ok && ready.calls + 1 < MAX_REUSE {
            ready.store.data_mut().end();
            ready.calls += 1;
            let mut warm = plugin.instances.warm.lock().expect("instances lock");
            if warm.len() < MAX_WARM {
                warm.push(ready);
                return;
            }
        }
        let waiting = self.retiring.fetch_add(1, Ordering::Relaxed);
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if waiting < self.retiring_limit => runtime,
            _ => {
                self.retiring.fetch_sub(1, Ordering::Relaxed);
                return drop(ready);
            }
        };
        let (shared, plugin) = (self.clone(), plugin.clone());
        // Runs on this thread once the current task gives it back: after the
        // reply is written.
        drop(runtime.spawn(async move {
            drop(ready);
            shared.retiring.fetch_sub(1, Ordering::Relaxed);
            if !reuse && shared.config.spare_instances > 0 {
                shared.make_spares(plugin).await;
            }
        }));
    }

    /// Tops the plugin's spares up. Instantiation may run the component's
    /// start functions: like a call, it runs inline only within the inline
    /// budget and moves to the guest pool past it.
    async fn make_spares(self: Arc<Self>, plugin: Arc<Plugin>) {
        while plugin
            .instances
            .spares
            .lock()
            .expect("instances lock")
            .len()
            < self.config.spare_instances
        {
            let Some(held) = self.hold_spare() else {
                return;
            };
            let scope = CallScope::instantiating(plugin.name.clone(), SPARE_DEADLINE);
            let mut store = self.new_store(&plugin, scope);
            let pre = plugin.pre.clone();
            let making = Box::pin(async move {
                let instance = pre.instantiate_async(&mut store).await?;
                store.data_mut().end();
                Ok::<_, wasmtime::Error>(Ready {
                    store,
                    instance,
                    calls: 0,
                })
            });
            // Tried inline whatever the budget: with none, the epoch
            // callback moves it at the first tick.
            let made = match self.guests.place(making, true).await {
                Placed::InPlace(making) => {
                    // On a guest thread, in a task of its own that no running
                    // guest counts: epoch ticks must run meanwhile.
                    let _running = self.guests.watch.pool_run();
                    making.await
                }
                Placed::Done(made) => made,
                Placed::Panicked => return,
                Placed::Pool { run: making, .. } => {
                    let shared = self.clone();
                    drop(self.guests.spawn(async move {
                        if let Ok(ready) = making.await {
                            shared.keep_spare(&plugin, ready, held);
                        }
                    }));
                    return;
                }
            };
            match made {
                Ok(ready) => self.keep_spare(&plugin, ready, held),
                Err(error) => {
                    // The next call instantiates itself and reports why.
                    tracing::debug!(plugin = %plugin.name, "cannot make a spare instance: {error:#}");
                    return;
                }
            }
        }
    }

    fn keep_spare(&self, plugin: &Plugin, ready: Ready, held: Held) {
        let mut spares = plugin.instances.spares.lock().expect("instances lock");
        if spares.len() < self.config.spare_instances {
            spares.push(Spare { ready, _held: held });
        }
    }

    /// A store set up with our limits and the epoch policy.
    fn new_store(&self, plugin: &Plugin, scope: CallScope) -> Store<PluginState> {
        let limits = &self.config;
        let state = PluginState::new(
            plugin.name.clone(),
            plugin.limits.memory,
            plugin.limits.table_elements,
            limits.max_guest_output,
            scope,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limiter());
        // Hostcall fuel caps the host memory lifting may take: wasmtime
        // charges a `Val` per list element lifted dynamically. What the guest
        // hands over is measured in bytes after lifting: the result in
        // `call::run_guest`, import arguments in `host_api`.
        store.set_hostcall_fuel(
            limits
                .max_guest_output
                .saturating_mul(std::mem::size_of::<Val>()),
        );
        store.set_max_component_handles(limits.max_component_handles);
        store.set_epoch_deadline(1);
        let (slice, budget) = (limits.epoch_tick, limits.inline_budget);
        store.epoch_deadline_callback(move |mut ctx| {
            let Some(scope) = ctx.data_mut().scope_mut() else {
                // No call and not instantiating: nothing runs guest code.
                return Err(Interrupt::Cancelled.into());
            };
            let now = Instant::now();
            if scope.context.cancel.is_cancelled() {
                Err(Interrupt::Cancelled.into())
            } else if scope.context.deadline <= tokio::time::Instant::now() {
                Err(Interrupt::Deadline.into())
            } else if let Some(since) = inline::running_since() {
                // Running inline on the thread that received the call: past
                // the budget it moves to the guest pool (whoever polled it
                // moves it once this poll returns).
                if now.duration_since(since) >= budget {
                    scope.slice_start = now;
                    Ok(UpdateDeadline::YieldCustom(1, inline::preempt()))
                } else {
                    Ok(UpdateDeadline::Continue(1))
                }
            } else if now.duration_since(scope.slice_start) >= slice {
                // A full slice of running: give the thread to other calls.
                // tokio's own yield puts the guest at the back of the queue
                // (a plain self-wake would land in tokio's LIFO slot and run
                // again ahead of waiting calls).
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
}

impl CallScope {
    /// The scope of a spare being made: no caller, no nested calls.
    fn instantiating(plugin: Arc<str>, deadline: Duration) -> CallScope {
        CallScope {
            plugin,
            region: "".into(),
            calls: Arc::new([]),
            context: CallContext::new(deadline),
            router: {
                static NO_CALLS: std::sync::LazyLock<Arc<NoCalls>> = std::sync::LazyLock::new(
                    || {
                        NoCalls::new(
                            "calls are only possible while serving one, not while the plugin is instantiated",
                        )
                    },
                );
                NO_CALLS.clone()
            },
            slice_start: Instant::now(),
            trace_id: crate::observe::trace::LogTraceId(None),
        }
    }
}
