//! In-process measurements of the host's building blocks, shared by the
//! `all` run and the criterion benchmarks (`benches/micro.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ciborium::Value;
use futures::future::BoxFuture;
use tokio::sync::watch;
use wasmrpc::protocol::{CallError, ErrorCode, FunctionInfo, Processed};
use wasmrpc::runtime::{Plugin, Runtime, RuntimeConfig};
use wasmrpc::service::{CallRequest, Service};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Type};

/// A router for guests that make no nested calls: every call fails.
pub struct NoRouter {
    changes: watch::Sender<u64>,
}

impl NoRouter {
    pub fn new() -> Arc<NoRouter> {
        Arc::new(NoRouter {
            changes: watch::Sender::new(0),
        })
    }
}

impl Service for NoRouter {
    fn call(self: Arc<Self>, request: CallRequest) -> BoxFuture<'static, Result<Value, CallError>> {
        let error = CallError::new(
            ErrorCode::Unavailable,
            Processed::No,
            format!("the benchmark routes no calls (`{}`)", request.function),
        );
        Box::pin(async move { Err(error) })
    }

    fn catalog(&self) -> Vec<FunctionInfo> {
        Vec::new()
    }

    fn local_catalog(&self) -> Vec<FunctionInfo> {
        Vec::new()
    }

    fn local_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// `math.add` run the way a host runs every call: [`Runtime::call`], CBOR
/// arguments converted to component values and back, in a fresh instance
/// (the default) or, with `reuse`, in a warm one.
pub struct RuntimeCall {
    runtime: Runtime,
    reuse: bool,
    plugin: Arc<Plugin>,
    index: usize,
    router: Arc<dyn Service>,
    region: Arc<str>,
}

impl RuntimeCall {
    /// Compiles `math.wasm` (its bytes) with the host's default runtime.
    pub fn new(math_wasm: &[u8], reuse: bool) -> anyhow::Result<RuntimeCall> {
        let runtime = Runtime::new(RuntimeConfig::default())?;
        let plugin = runtime.compile("math", math_wasm)?;
        let index = plugin
            .functions
            .iter()
            .position(|f| f.name == "math.add")
            .context("math.wasm exports no `add`")?;
        Ok(RuntimeCall {
            runtime,
            reuse,
            plugin: Arc::new(plugin),
            index,
            router: NoRouter::new(),
            region: "bench".into(),
        })
    }

    /// Calls `math.add(a, b)` and checks the sum.
    pub async fn add(&self, a: i64, b: i64) -> anyhow::Result<()> {
        let request = CallRequest::new(
            "math.add",
            vec![Value::from(a), Value::from(b)],
            Duration::from_secs(5),
        );
        let value = self
            .runtime
            .call(
                self.plugin.clone(),
                self.index,
                request,
                self.router.clone(),
                self.region.clone(),
                self.reuse,
            )
            .await?;
        check_sum(&value, a, b)
    }
}

/// Checks that `value` is the integer `a + b`.
pub fn check_sum(value: &Value, a: i64, b: i64) -> anyhow::Result<()> {
    match value.as_integer().map(i128::from) {
        Some(sum) if sum == i128::from(a.wrapping_add(b)) => Ok(()),
        _ => bail!("expected {}, got {value:?}", a.wrapping_add(b)),
    }
}

/// The parameter types and result type of export `function` of a compiled
/// component: a world-level function (`add`) or a function of an exported
/// interface (`echo/echo-bytes`, matched on the interface name's end).
pub fn export_types(
    engine: &wasmtime::Engine,
    component: &Component,
    function: &str,
) -> anyhow::Result<(Vec<Type>, Option<Type>)> {
    let (interface, name) = match function.split_once('/') {
        Some((interface, name)) => (Some(interface), name),
        None => (None, function),
    };
    for (export, item) in component.component_type().exports(engine) {
        let func = match (item.ty, interface) {
            (ComponentItem::ComponentFunc(func), None) if export == name => func,
            (ComponentItem::ComponentInstance(instance), Some(interface))
                if export
                    .split('@')
                    .next()
                    .is_some_and(|e| e.ends_with(interface)) =>
            {
                match instance.exports(engine).find(|(n, _)| *n == name) {
                    Some((_, item)) => match item.ty {
                        ComponentItem::ComponentFunc(func) => func,
                        _ => continue,
                    },
                    None => continue,
                }
            }
            _ => continue,
        };
        let params = func.params().map(|(_, ty)| ty).collect();
        return Ok((params, func.results().next()));
    }
    bail!("the component exports no `{function}`")
}
