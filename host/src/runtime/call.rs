//! One call of a plugin's function: where it runs, how its deadline holds, and how its outcome becomes the reply.
//!
//! A call's deadline and cancellation (its [`CallContext`]) are enforced in
//! two places, each for what only it can do:
//!
//! - the store's epoch callback (see the `instances` module) stops guest
//!   code that is running: nothing else can interrupt a spinning guest;
//! - [`bounded`] bounds the answer once, wherever the call runs: in place
//!   (nested in a running guest), or around the guest pool task, so the
//!   answer is on time while the guest awaits something (a timer, a nested
//!   call) or the pool is crowded. Leaving the task drops its handle, which
//!   aborts the guest and drops its instance.
//!
//! The inline poll needs no bound of its own: it returns as soon as the
//! guest finishes, awaits something or outlasts the budget, and the epoch
//! callback meanwhile checks the context.
//!
//! [`CallContext`]: crate::service::CallContext

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use ciborium::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use wasmtime::Trap;
use wasmtime::component::{Type, Val};

use super::inline::CpuTimed;
use super::instances::Shared;
use super::pool::Placed;
use super::state::{CallScope, Interrupt};
use super::{Function, Plugin, Runtime, RuntimeConfig, bytes, type_to_wit, value};
use crate::observe::PluginMeter;
use crate::observe::trace::LogTraceId;
use crate::pattern::Pattern;
use crate::protocol::{CallError, ErrorCode, Processed};
use crate::service::{CallRequest, Service};

/// A call of one of a plugin's functions on this host, as [`Runtime::call`]
/// takes it.
pub struct LocalCall {
    pub plugin: Arc<Plugin>,
    /// Index of the function in `plugin.functions`.
    pub function: usize,
    /// The arguments (CBOR) and the call's context; the function name is
    /// not looked at again.
    pub request: CallRequest,
    /// Where the guest's nested calls go.
    pub router: Arc<dyn Service>,
    /// This host's region, as the guest sees it.
    pub region: Arc<str>,
    /// The functions the guest may call through the host (the plugin's
    /// `calls` list); any other nested call is `permission_denied`.
    pub calls: Arc<[Pattern]>,
    /// Serve it from a warm instance of the plugin when one is free, rather
    /// than a fresh one.
    pub reuse: bool,
    /// The plugin's meters: instances in use, guest time.
    pub meter: PluginMeter,
}

impl Runtime {
    /// Calls the function with the request's CBOR arguments, in a fresh
    /// instance, or with `reuse` in a warm instance of the plugin when one is
    /// free. The guest runs on the calling thread until it has run for the
    /// inline budget, then on the guest thread pool.
    ///
    /// The result is the function's value as CBOR; a `result<T, E>`
    /// returning `err` becomes a `handler_error` whose detail is E.
    ///
    /// # Errors
    ///
    /// `invalid_args` when the arguments do not fit the signature; the
    /// deadline, cancellation, limits and traps as their codes.
    pub async fn call(&self, call: LocalCall) -> Result<Value, CallError> {
        let LocalCall {
            plugin,
            function,
            mut request,
            router,
            region,
            calls,
            reuse,
            meter,
        } = call;
        let func = &plugin.functions[function];
        let params = arguments(func, std::mem::take(&mut request.args))?;
        if request.remaining().is_zero() {
            return Err(CallError::deadline_exceeded(Processed::No));
        }

        let deadline = request.context.deadline;
        let cancel = request.context.cancel.clone();
        let scope = CallScope {
            plugin: plugin.name.clone(),
            region,
            calls,
            trace_id: crate::observe::trace::trace_id(&request.context.metadata),
            context: request.context,
            router,
            slice_start: std::time::Instant::now(),
        };
        let _in_use = meter.in_use();
        let run = GuestTimed {
            run: Box::pin(run_guest(
                self.shared.clone(),
                plugin.clone(),
                function,
                params,
                scope,
                reuse,
            )),
            meter,
        };
        let panicked = || {
            CallError::internal(format!(
                "the host panicked while running `{}`",
                plugin.functions[function].name
            ))
        };

        let guests = &self.shared.guests;
        let budget = self.shared.config.inline_budget;
        let inline = !budget.is_zero() && !func.pool_mark.is_set();
        let (run, moved) = match guests.place(run, inline).await {
            Placed::InPlace(run) => return bounded(run, deadline, &cancel).await,
            Placed::Done(output) => return output,
            Placed::Panicked => return Err(panicked()),
            Placed::Pool { run, preempted } => (run, preempted.then(|| func.pool_mark.set())),
        };
        if moved.is_some() {
            tracing::debug!(
                "`{}` ran past the inline budget of {budget:?}; moved to the guest pool",
                func.name
            );
        }
        let task = guests.spawn({
            let plugin = plugin.clone();
            async move {
                let Some(until) = moved else {
                    return run.await;
                };
                // The budget is wall time: a thread the OS set aside for a
                // while (both CPUs busy) can pass it in a short call. Such a
                // call has little left to do once moved, and the function's
                // next calls stay inline. (A call stopped by its deadline or
                // a cancel is aborted with its task, unjudged.)
                let mut timed = CpuTimed::new(run);
                let outcome = (&mut timed).await;
                if timed.used() < budget {
                    let func = &plugin.functions[function];
                    func.pool_mark.withdraw(until);
                    tracing::debug!(
                        "`{}` needed {:?} of CPU time after its move; its calls stay inline",
                        func.name,
                        timed.used()
                    );
                }
                outcome
            }
        });
        // Dropping the handle (the deadline, a cancel, or the caller going
        // away) aborts the guest.
        let mut task = AbortOnDropHandle::new(task);
        let joined = async {
            match (&mut task).await {
                Ok(outcome) => outcome,
                Err(join) if join.is_panic() => Err(panicked()),
                Err(_) => Err(CallError::cancelled(Processed::Maybe)),
            }
        };
        bounded(joined, deadline, &cancel).await
    }
}

/// A guest's run, its polls timed into its plugin's guest time (when
/// metrics are kept): wherever it runs, inline, in place or on the guest
/// pool. A nested call run in place counts in its caller's polls too.
struct GuestTimed<F> {
    run: Pin<Box<F>>,
    meter: PluginMeter,
}

impl<F: Future> Future for GuestTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.meter.is_on() {
            return self.run.as_mut().poll(cx);
        }
        let began = std::time::Instant::now();
        let poll = self.run.as_mut().poll(cx);
        self.meter.guest_time(began.elapsed().as_secs_f64());
        poll
    }
}

/// The request's arguments converted for the path that serves `func`.
fn arguments(func: &Function, args: Vec<Value>) -> Result<Args, CallError> {
    if args.len() != func.params.len() {
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
            args.len()
        )));
    }
    let invalid = |name: &str, e| CallError::invalid_args(format!("parameter `{name}`: {e}"));
    Ok(if func.typed.is_some() {
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
    })
}

/// `answer` within the call's deadline and cancellation: the one bound on a
/// call's answer (see the module documentation).
async fn bounded(
    answer: impl Future<Output = Result<Value, CallError>>,
    deadline: tokio::time::Instant,
    cancel: &CancellationToken,
) -> Result<Value, CallError> {
    tokio::select! {
        outcome = tokio::time::timeout_at(deadline, answer) => match outcome {
            Ok(result) => result,
            Err(_) => Err(CallError::deadline_exceeded(Processed::Maybe)),
        },
        () = cancel.cancelled() => Err(CallError::cancelled(Processed::Maybe)),
    }
}

/// Until when (ms on [`clock_ms`]) a function's calls go straight to the
/// guest pool, because a recent call was too long to run inline; 0 when they
/// do not.
#[derive(Default)]
pub(super) struct PoolMark(AtomicU64);

impl PoolMark {
    /// Whether calls should skip the inline fast path for now.
    fn is_set(&self) -> bool {
        clock_ms() < self.0.load(Ordering::Relaxed)
    }

    /// A call ran (or would have run) too long inline: serve the next calls
    /// from the guest pool for a while. Returns the mark, for
    /// [`PoolMark::withdraw`].
    fn set(&self) -> u64 {
        let until = clock_ms() + POOL_FOR_MS;
        self.0.store(until, Ordering::Relaxed);
        until
    }

    /// Withdraws the mark `until` set by [`PoolMark::set`], unless a later
    /// move has set another.
    fn withdraw(&self, until: u64) {
        let _ = self
            .0
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
    let trace_id = scope.trace_id;
    let classify = |error, note| classify(&plugin.name, &func.name, error, note, limits, trace_id);
    let mut ready = match shared.take(&plugin, scope, reuse).await {
        Ok(ready) => ready,
        Err((error, note)) => return Err(classify(error, note)),
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
            Err(classify(error, note))
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
pub(super) fn data_limit(who: &str, limit: usize, processed: Processed) -> CallError {
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
///
/// Each class is found by its type where wasmtime has a public one: our
/// [`Interrupt`] (from the epoch callback and the limiter),
/// [`wasmtime::PoolConcurrencyLimitError`] and [`Trap`].
fn classify(
    plugin: &str,
    function: &str,
    error: wasmtime::Error,
    panic_note: Option<String>,
    config: &RuntimeConfig,
    trace_id: LogTraceId,
) -> CallError {
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return match interrupt {
            Interrupt::Deadline => CallError::deadline_exceeded(Processed::Maybe),
            Interrupt::Cancelled => CallError::cancelled(Processed::Maybe),
            Interrupt::Memory { limit } => CallError::new(
                ErrorCode::ResourceExhausted,
                Processed::Maybe,
                format!(
                    "plugin `{plugin}` exceeded its memory limit of {} MiB",
                    limit >> 20
                ),
            ),
            Interrupt::Table { limit } => CallError::new(
                ErrorCode::ResourceExhausted,
                Processed::Maybe,
                format!("plugin `{plugin}` exceeded its table limit of {limit} elements"),
            ),
        };
    }
    // The one class found by its text: wasmtime 48's `HostcallFuelExhausted`
    // (hostcall fuel ran out while lifting what the guest handed over) is a
    // private type, and its message is fixed.
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
            // `Trap` shows as "wasm trap: <description>" and has no accessor
            // for the description alone.
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
    tracing::warn!(plugin, function, %trace_id, "call failed: {error:?}");
    CallError::new(
        ErrorCode::Trap,
        Processed::Maybe,
        format!("`{function}` failed: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(error: wasmtime::Error, panic_note: Option<&str>) -> CallError {
        let config = RuntimeConfig::default();
        classify(
            "misbehave",
            "misbehave.crash",
            error,
            panic_note.map(str::to_owned),
            &config,
            LogTraceId(None),
        )
    }

    #[test]
    fn a_trap_is_found_by_its_type_under_the_context_wasmtime_adds() {
        let error = wasmtime::Error::new(Trap::UnreachableCodeReached)
            .context("error while executing at wasm backtrace");
        assert_eq!(
            classified(error, Some("guest panicked: boom")),
            CallError::new(
                ErrorCode::Trap,
                Processed::Maybe,
                "`misbehave.crash` trapped: wasm `unreachable` instruction executed \
                 (guest panicked: boom)"
            )
        );
        let error = wasmtime::Error::new(Trap::StackOverflow).context("backtrace");
        assert_eq!(
            classified(error, None),
            CallError::new(
                ErrorCode::Trap,
                Processed::Maybe,
                "`misbehave.crash` overflowed its stack"
            )
        );
    }

    #[test]
    fn interrupts_map_to_their_codes() {
        let deadline = wasmtime::Error::new(Interrupt::Deadline).context("backtrace");
        assert_eq!(
            classified(deadline, None),
            CallError::deadline_exceeded(Processed::Maybe)
        );
        let memory = wasmtime::Error::new(Interrupt::Memory { limit: 64 << 20 });
        assert_eq!(
            classified(memory, None),
            CallError::new(
                ErrorCode::ResourceExhausted,
                Processed::Maybe,
                "plugin `misbehave` exceeded its memory limit of 64 MiB"
            )
        );
    }
}
