//! In-process measurements of the host's building blocks, shared by the
//! `all` run and the criterion benchmarks (`benches/micro.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ciborium::Value;
use wasmrpc::pattern::Pattern;
use wasmrpc::runtime::{LocalCall, Plugin, Runtime, RuntimeConfig, Source};
use wasmrpc::service::{CallRequest, NoCalls, Service};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Type};

/// Which instance serves a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    /// A fresh instance made ahead of the call (the host's default).
    Spare,
    /// A fresh instance made on the call's path (`--spare-instances 0`).
    OnThePath,
    /// A warm instance (the plugin's `reuse_instances` opt-in).
    Reuse,
}

/// `math.add` run the way a host runs every call: [`Runtime::call`], CBOR
/// arguments converted to component values and back, in the instance
/// `Instances` says.
pub struct RuntimeCall {
    runtime: Runtime,
    reuse: bool,
    plugin: Arc<Plugin>,
    index: usize,
    router: Arc<dyn Service>,
    region: Arc<str>,
    /// `math` calls nothing: an empty `calls` list.
    calls: Arc<[Pattern]>,
}

impl RuntimeCall {
    /// Compiles `math.wasm` (its bytes) with the host's default runtime.
    pub fn new(math_wasm: &[u8], instances: Instances) -> anyhow::Result<RuntimeCall> {
        let mut config = RuntimeConfig::default();
        if instances == Instances::OnThePath {
            config.spare_instances = 0;
        }
        let reuse = instances == Instances::Reuse;
        let runtime = Runtime::new(config)?;
        let source = Source {
            name: "math".into(),
            bytes: math_wasm.to_vec(),
            sha256: String::new(),
        };
        let limits = runtime.limits(None, None)?;
        let plugin = runtime.compile(&source, limits, &[])?;
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
            router: NoCalls::new("the benchmark routes no calls"),
            region: "bench".into(),
            calls: Arc::new([]),
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
            .call(LocalCall {
                plugin: self.plugin.clone(),
                function: self.index,
                request,
                router: self.router.clone(),
                region: self.region.clone(),
                calls: self.calls.clone(),
                reuse: self.reuse,
                meter: Default::default(),
            })
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

/// What [`sequential`] measured.
pub struct Sequential {
    /// Each call plus the work it left behind (tearing its instance down and
    /// making the next one), one after the other: the whole cost of a call.
    pub whole: crate::load::Measurement,
    /// The calls alone, as their callers wait for them.
    pub call: crate::load::Measurement,
}

/// Runs `calls` calls of `math.add` one after the other on a single-threaded
/// tokio runtime, after `warmup` unmeasured ones. Between two calls the
/// thread runs the work the previous call left behind, as a host's network
/// thread does after writing a reply, so that [`Sequential::whole`] is the
/// full cost of a call on one thread. Blocks; call it off async threads.
pub fn sequential(
    math_wasm: &[u8],
    instances: Instances,
    calls: u64,
    warmup: u64,
) -> anyhow::Result<Sequential> {
    let mut measured = interleaved(math_wasm, &[instances], calls, warmup, 1)?;
    Ok(measured.remove(0))
}

/// [`sequential`] for several modes at once, in `rounds` rounds of
/// `calls / rounds` calls, each mode in turn within a round, so that a
/// machine whose speed drifts meets every mode alike. One result per mode,
/// in the order of `modes`.
pub fn interleaved(
    math_wasm: &[u8],
    modes: &[Instances],
    calls: u64,
    warmup: u64,
    rounds: u64,
) -> anyhow::Result<Vec<Sequential>> {
    use std::time::{Duration, Instant};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let adds = modes
        .iter()
        .map(|&mode| RuntimeCall::new(math_wasm, mode))
        .collect::<anyhow::Result<Vec<_>>>()?;
    runtime.block_on(async move {
        let rounds = rounds.max(1);
        let per_round = (calls / rounds).max(1);
        let mut measured: Vec<_> = modes
            .iter()
            .map(|_| {
                (
                    crate::load::histogram(),
                    crate::load::histogram(),
                    Duration::ZERO,
                )
            })
            .collect();
        for add in &adds {
            for i in 0..warmup {
                add.add(i as i64, 2).await?;
                tokio::task::yield_now().await;
            }
        }
        for _ in 0..rounds {
            for (add, (whole, call, elapsed)) in adds.iter().zip(&mut measured) {
                let began = Instant::now();
                for i in 0..per_round {
                    let start = Instant::now();
                    add.add(i as i64, 2).await?;
                    let answered = start.elapsed();
                    // Let what the call left behind run, as between two calls.
                    tokio::task::yield_now().await;
                    call.saturating_record(crate::load::nanos(answered));
                    whole.saturating_record(crate::load::nanos(start.elapsed()));
                }
                *elapsed += began.elapsed();
            }
        }
        Ok(measured
            .into_iter()
            .map(|(whole, call, elapsed)| {
                let calls = whole.len();
                Sequential {
                    whole: crate::load::Measurement {
                        calls,
                        latency: whole,
                        elapsed,
                    },
                    call: crate::load::Measurement {
                        calls,
                        latency: call,
                        elapsed,
                    },
                }
            })
            .collect())
    })
}
