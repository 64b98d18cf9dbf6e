//! The per-call store data: WASI context, resource table, limits and call scope.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::stdio::{LogStream, TraceCell};

use crate::observe::trace::LogTraceId;
use crate::pattern::Pattern;
use crate::service::{CallContext, CallRequest, Service};

/// Why the host stopped a guest; returned from the epoch callback or the
/// limiter so the call can be mapped to the right error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupt {
    #[error("deadline exceeded")]
    Deadline,
    #[error("cancelled")]
    Cancelled,
    #[error("memory limit of {limit} bytes reached")]
    Memory { limit: usize },
    #[error("table limit of {limit} elements reached")]
    Table { limit: usize },
}

/// Store data for a plugin instance: the call it is serving, if any.
pub struct PluginState {
    /// Built on the guest's first WASI call: most handlers make none, and
    /// building it (random seeds, streams) is a measurable part of a call.
    wasi: Option<WasiCtx>,
    /// The plugin, for the log lines of its stdout and stderr.
    plugin: Arc<str>,
    table: ResourceTable,
    limiter: Limiter,
    /// The call being served; `None` while a warm instance waits.
    scope: Option<CallScope>,
    /// Where a guest panic message seen on stderr is noted.
    panic_note: Arc<std::sync::Mutex<Option<String>>>,
    /// The trace id of the call being served, for the lines of its stdout
    /// and stderr.
    trace_id: TraceCell,
    /// Bytes the guest may hand the host in one host import call.
    pub max_guest_output: usize,
}

/// What the running guest's host imports need to know about the call.
pub(crate) struct CallScope {
    /// The plugin being called (for log lines).
    pub plugin: Arc<str>,
    /// The region of this host.
    pub region: Arc<str>,
    /// The functions the guest may call through the host: its plugin's
    /// `calls` list.
    pub calls: Arc<[Pattern]>,
    /// The call's deadline, cancellation, hops, visited regions and
    /// metadata, inherited by the calls the guest makes.
    pub context: CallContext,
    /// Where nested `call`s go.
    pub router: Arc<dyn Service>,
    /// When the guest last gave its thread back (or started).
    pub slice_start: Instant,
    /// The call's trace id (from its metadata's `traceparent`), for the
    /// guest's log lines.
    pub trace_id: LogTraceId,
}

impl CallScope {
    /// A nested request inheriting this call's context; it counts as one
    /// hop, so a guest that calls itself stops at the hop limit.
    pub fn nested(&self, function: String, args: Vec<ciborium::Value>) -> CallRequest {
        CallRequest {
            function,
            args,
            context: self.context.nested(),
            from_peer: false,
        }
    }
}

impl PluginState {
    pub(crate) fn new(
        plugin: Arc<str>,
        memory_limit: usize,
        table_limit: usize,
        max_guest_output: usize,
        scope: CallScope,
    ) -> Self {
        let trace_id = TraceCell::new(scope.trace_id);
        PluginState {
            trace_id,
            wasi: None,
            plugin,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_limit,
                table_limit,
                memory_used: 0,
            },
            scope: Some(scope),
            panic_note: Arc::new(std::sync::Mutex::new(None)),
            max_guest_output,
        }
    }

    /// The call being served (or the instantiation under way).
    pub(crate) fn scope(&self) -> &CallScope {
        self.scope
            .as_ref()
            .expect("guest code runs only during a call or an instantiation")
    }

    /// As [`PluginState::scope`], `None` while a ready instance waits.
    pub(crate) fn scope_mut(&mut self) -> Option<&mut CallScope> {
        self.scope.as_mut()
    }

    /// A warm instance starts serving `scope`.
    pub(crate) fn begin(&mut self, scope: CallScope) {
        *self.panic_note.lock().expect("panic note lock") = None;
        self.trace_id.set(scope.trace_id);
        self.scope = Some(scope);
    }

    /// The call is over; the instance waits without holding on to it.
    pub(crate) fn end(&mut self) {
        self.trace_id.set(LogTraceId(None));
        self.scope = None;
    }

    /// The panic message noted during this call, if any.
    pub(crate) fn take_panic_note(&self) -> Option<String> {
        self.panic_note.lock().expect("panic note lock").take()
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limiter
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (plugin, panic_note, trace_id) = (&self.plugin, &self.panic_note, &self.trace_id);
        let ctx = self.wasi.get_or_insert_with(|| {
            // No ambient capability: no preopened directories, no
            // environment, no arguments, and every socket refused.
            WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .socket_addr_check(|_, _| Box::pin(async { false }))
                .stdout(LogStream::stdout(plugin.clone(), trace_id.clone()))
                .stderr(
                    LogStream::stderr(plugin.clone(), trace_id.clone())
                        .capturing_panics(panic_note.clone()),
                )
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// Caps the total linear memory of a store (summed over all its memories) and
/// table sizes. Exceeding either traps with an [`Interrupt`].
struct Limiter {
    memory_limit: usize,
    table_limit: usize,
    memory_used: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_used - current.min(self.memory_used) + desired;
        if total > self.memory_limit {
            return Err(Interrupt::Memory {
                limit: self.memory_limit,
            }
            .into());
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_limit {
            return Err(Interrupt::Table {
                limit: self.table_limit,
            }
            .into());
        }
        Ok(true)
    }
}
