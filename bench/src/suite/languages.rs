//! The languages group: the same `add(a: s64, b: s64) -> s64` served by a
//! component written in Rust (`math`, about 60 KiB), in Python (`pygreeter`,
//! componentize-py, CPython inside: about 18 MB) and in JavaScript
//! (`jsgreeter`, componentize-js, SpiderMonkey inside: about 12 MB), each by
//! a host of its own: with a fresh instance per call (the default) and with
//! `reuse_instances = true`. Latency at 1 in flight, calls/s at
//! `--in-flight`, the host's memory (`VmRSS`) with each plugin, and how long
//! a host takes to start serving each with a cold and a warm compile cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ciborium::Value;

use super::{CallFn, Kind, Plan, System, args, interleave};
use crate::hosts::{Host, Lab, proc_bytes};
use crate::micro;
use crate::prepare::Paths;
use crate::report::{Goal, Outcome, Row, Section, Summary, Target};

/// A component of the group: the example plugin served (as `<plugin>.add`).
struct Component {
    language: &'static str,
    /// The example plugin `<plugin>.wasm`.
    plugin: &'static str,
}

/// The group's components, Rust first (the others are compared with it).
const COMPONENTS: [Component; 3] = [
    Component {
        language: "Rust",
        plugin: "math",
    },
    Component {
        language: "Python (componentize-py)",
        plugin: "pygreeter",
    },
    Component {
        language: "JavaScript (componentize-js)",
        plugin: "jsgreeter",
    },
];

/// The sidecar of the reuse-mode hosts.
const REUSE_SIDECAR: &str = "reuse_instances = true\n";

/// Index of the Python component in [`COMPONENTS`], which the goals are
/// about.
const PYTHON: usize = 1;

/// The two instance modes each component is served in.
const MODES: [(bool, &str); 2] = [(false, "fresh instance per call"), (true, "instance reuse")];

/// One host of the group (a component in one mode) and what was measured
/// of it.
struct Served {
    component: usize,
    reuse: bool,
    host: Host,
    function: Arc<str>,
    /// `VmRSS` once the host serves the function, before any call.
    idle_rss: u64,
    /// `VmRSS` after the warm-up and the calls at 1 in flight.
    warm_rss: Option<u64>,
    /// What the resident memory is made of, loaded and after those calls.
    idle_parts: Option<Parts>,
    warm_parts: Option<Parts>,
    /// The peak `VmRSS` during the calls at `in_flight`.
    peak_rss: Option<u64>,
}

/// A host start with an empty and with a warm compile cache: how long until
/// it served, and the compile or load time it logged, in milliseconds.
type Starts = [(Duration, Option<u64>); 2];

/// The group's rows and the figures its targets need.
#[derive(Default)]
pub(super) struct LanguagesResults {
    rows: Vec<Row>,
    /// The size of each component's file, by [`COMPONENTS`] index.
    sizes: [Option<u64>; 3],
    /// Per component and mode (`[component][reuse]`).
    one: [[Option<Summary>; 2]; 3],
    many: [[Option<Summary>; 2]; 3],
    rss: [[Option<(u64, u64, u64)>; 2]; 3],
    /// What the memory is made of, loaded and after the calls at 1 in
    /// flight (`[component][reuse]`).
    parts: [[(Option<Parts>, Option<Parts>); 2]; 3],
    /// Host start (cold, warm compile cache), with the compile or load time
    /// the host logged.
    starts: [Option<Starts>; 3],
}

/// Runs the group: a host per component and mode, all started first (the
/// two hosts of a component together: the large components take seconds to
/// compile, one core each), then measured.
pub(super) async fn run(plan: &Plan, lab: &Lab, paths: &Paths) -> LanguagesResults {
    let mut results = LanguagesResults::default();
    let mut served = Vec::new();
    for (index, component) in COMPONENTS.iter().enumerate() {
        let file = match component_file(component, paths) {
            Ok(file) => file,
            Err(e) => {
                results.rows.push(Row {
                    system: system_name(index, None),
                    load: "–".into(),
                    outcome: Outcome::NotApplicable(format!("{e:#}")),
                });
                continue;
            }
        };
        results.sizes[index] = std::fs::metadata(&file).ok().map(|m| m.len());
        super::progress(&format!(
            "the languages group: `{}`'s host start, cold and warm compile cache",
            component.plugin
        ));
        match measure_start(lab, index, &file).await {
            Ok(starts) => results.starts[index] = Some(starts),
            Err(e) => results.rows.push(super::failed(
                &format!("host start with `{}`", component.plugin),
                &e,
            )),
        }
        super::progress(&format!(
            "the languages group: starting `{}`'s hosts",
            component.plugin
        ));
        let (fresh, reuse) = tokio::join!(
            start(lab, index, &file, false),
            start(lab, index, &file, true)
        );
        for (outcome, reuse) in [(fresh, false), (reuse, true)] {
            match outcome {
                Ok(host) => served.push(host),
                Err(e) => results
                    .rows
                    .push(super::failed(&system_name(index, Some(reuse)), &e)),
            }
        }
    }
    let systems: Vec<System> = served
        .iter()
        .enumerate()
        .map(|(i, s)| {
            System::new(
                Kind::Language(i),
                &system_name(s.component, Some(s.reuse)),
                add_call(&s.host, s.function.clone()),
                &[s.host.pid()],
            )
        })
        .collect();
    let (one_calls, many_calls) = (plan.calls / 10, plan.pipelined_calls / 20);
    super::progress("the languages group, 1 in flight");
    let one = interleave(plan, &systems, 1, one_calls, plan.warmup / 10).await;
    for s in &mut served {
        s.warm_rss = s.host.rss().ok();
        s.warm_parts = s.host.pid().and_then(|pid| Parts::of(pid).ok());
    }
    super::progress(&format!(
        "the languages group, {} in flight",
        plan.in_flight
    ));
    let mut many = Vec::new();
    for (s, system) in served.iter_mut().zip(&systems) {
        let sampler = s.host.sample_rss().ok();
        let rows = interleave(
            plan,
            std::slice::from_ref(system),
            plan.in_flight,
            many_calls,
            plan.warmup / 10,
        )
        .await;
        if let Some(sampler) = sampler {
            s.peak_rss = Some(sampler.peak().await);
        }
        many.extend(rows);
    }
    for ((s, one), many) in served.iter().zip(one).zip(many) {
        let (c, m) = (s.component, usize::from(s.reuse));
        results.one[c][m] = one.as_ref().and_then(summary);
        results.many[c][m] = many.as_ref().and_then(summary);
        if let (Some(warm), Some(peak)) = (s.warm_rss, s.peak_rss) {
            results.rss[c][m] = Some((s.idle_rss, warm, peak));
        }
        results.parts[c][m] = (s.idle_parts, s.warm_parts);
        results.rows.extend([one, many].into_iter().flatten());
    }
    results
}

/// The component's file: the example plugin.
fn component_file(component: &Component, paths: &Paths) -> anyhow::Result<PathBuf> {
    let file = paths.guests.join(format!("{}.wasm", component.plugin));
    anyhow::ensure!(file.is_file(), "no component at {}", file.display());
    Ok(file)
}

/// How long a host takes to serve the component `index` from `file`, alone,
/// with an empty compile cache and then with the entry the first start
/// left: (cold, warm), each with what the host logged compiling or loading
/// the code took, in milliseconds.
async fn measure_start(lab: &Lab, index: usize, file: &std::path::Path) -> anyhow::Result<Starts> {
    let plugin = COMPONENTS[index].plugin;
    let region = format!("start-{plugin}");
    let dir = lab.plugin_dir(&region, &[], &[])?;
    std::fs::copy(file, dir.join(format!("{plugin}.wasm")))?;
    let cache = lab.path(&format!("compile-cache-start-{plugin}"));
    let cache = cache.to_str().context("non-UTF-8 temporary path")?;
    let function = format!("{plugin}.add");
    let mut starts = Vec::new();
    for (marker, suffix) in [
        ("compiled in ", " ms"),
        ("from the compile cache in ", " ms"),
    ] {
        let began = std::time::Instant::now();
        let host = lab
            .start_alone_with(&region, &dir, &["--compile-cache", cache])
            .await?;
        host.require(&function).await?;
        let took = began.elapsed();
        let log = host.log();
        let millis = log.lines().find_map(|line| {
            let (_, rest) = line.split_once(marker)?;
            rest.split_once(suffix)?.0.parse().ok()
        });
        anyhow::ensure!(
            millis.is_some(),
            "`{plugin}`'s host did not log `{marker}`: {}",
            log.lines().last().unwrap_or_default()
        );
        starts.push((took, millis));
        drop(host);
    }
    Ok([starts[0], starts[1]])
}

/// Starts a host serving the component `index` from `file`, alone.
async fn start(
    lab: &Lab,
    index: usize,
    file: &std::path::Path,
    reuse: bool,
) -> anyhow::Result<Served> {
    let plugin = COMPONENTS[index].plugin;
    let region = format!("lang-{plugin}-{}", if reuse { "reuse" } else { "fresh" });
    let sidecar = format!("{plugin}.toml");
    let sidecars: &[(&str, &str)] = if reuse {
        &[(&sidecar, REUSE_SIDECAR)]
    } else {
        &[]
    };
    let dir = lab.plugin_dir(&region, &[], sidecars)?;
    std::fs::copy(file, dir.join(format!("{plugin}.wasm")))
        .with_context(|| format!("cannot copy {}", file.display()))?;
    // The compile cache the start measurement left warm: the host loads the
    // compiled code as a restarted host does, and its memory holds nothing
    // of a compile.
    let cache = lab.path(&format!("compile-cache-start-{plugin}"));
    let cache = cache.to_str().context("non-UTF-8 temporary path")?;
    let host = lab
        .start_alone_with(&region, &dir, &["--compile-cache", cache])
        .await?;
    let function: Arc<str> = format!("{plugin}.add").into();
    host.require(&function).await?;
    // What the host holds once loaded, settled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = host.rss()?;
    let idle_parts = host.pid().and_then(|pid| Parts::of(pid).ok());
    Ok(Served {
        component: index,
        reuse,
        host,
        function,
        idle_rss,
        warm_rss: None,
        idle_parts,
        warm_parts: None,
        peak_rss: None,
    })
}

fn system_name(index: usize, reuse: Option<bool>) -> String {
    let component = &COMPONENTS[index];
    let mode = match reuse {
        Some(reuse) => format!(", {}", MODES[usize::from(reuse)].1),
        None => String::new(),
    };
    format!("{} `{}.add`{mode}", component.language, component.plugin)
}

/// A call of `function` on a connection of its own to `host`, checking the
/// sum.
fn add_call(host: &Host, function: Arc<str>) -> CallFn {
    let client = Arc::new(tokio::sync::OnceCell::new());
    let options = host.client_options().clone();
    let addr = host.addr();
    Arc::new(move |lane: usize| {
        let (client, function, options) = (client.clone(), function.clone(), options.clone());
        Box::pin(async move {
            let client = client
                .get_or_try_init(|| wasmrpc::Client::connect_with(addr, options))
                .await?;
            let (a, b) = args(lane);
            let value = client
                .call_value(&function, vec![Value::from(a), Value::from(b)])
                .await?;
            micro::check_sum(&value, a, b)
        })
    })
}

/// What a host's resident memory is made of, in bytes: `VmRSS` counts a
/// file page once per mapping that has it, so the pages of a plugin's memory
/// image, mapped into each pool slot its instances used, count once per
/// slot; `Pss` counts each page once, shared between the mappings (and
/// processes) that have it.
#[derive(Debug, Clone, Copy)]
struct Parts {
    /// `RssAnon`: the heap, and what instances wrote.
    anon: u64,
    /// `RssFile`: the binary, the compiled code and memory images mapped
    /// from the compile cache.
    file: u64,
    /// `Pss` of `/proc/PID/smaps_rollup`.
    pss: u64,
    /// Mappings of compile cache entries (`.cwasm`) that can be written: the
    /// pool slots holding a memory image.
    image_slots: usize,
}

impl Parts {
    fn of(pid: u32) -> anyhow::Result<Parts> {
        let kib = |text: &str, key: &str| -> anyhow::Result<u64> {
            proc_bytes(text, key).with_context(|| format!("no `{key}` for process {pid}"))
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
        let image_slots = maps
            .lines()
            .filter(|line| {
                line.split_whitespace()
                    .nth(1)
                    .is_some_and(|perms| perms.starts_with("rw"))
                    && line.trim_end().ends_with(".cwasm")
            })
            .count();
        Ok(Parts {
            anon: kib(&status, "RssAnon:")?,
            file: kib(&status, "RssFile:")?,
            pss: kib(&rollup, "Pss:")?,
            image_slots,
        })
    }

    fn text(&self) -> String {
        format!(
            "PSS {:.1} MiB; anonymous {:.1} MiB, files {:.1} MiB, {} pool slots mapping a memory image",
            mib(self.pss),
            mib(self.anon),
            mib(self.file),
            self.image_slots
        )
    }
}

fn summary(row: &Row) -> Option<Summary> {
    match &row.outcome {
        Outcome::Measured(summary) => Some(*summary),
        _ => None,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl LanguagesResults {
    /// The report's section: the goals, the memory and sizes, then the rows.
    pub(super) fn section(self, plan: &Plan) -> Section {
        let p50 = |c: usize, m: usize| self.one[c][m].map(|s| s.p50_us);
        let python = COMPONENTS[PYTHON].plugin;
        let mut targets = vec![
            Target {
                name: format!("`{python}.add` p50 (µs), 1 in flight, fresh instance per call"),
                goal: Goal::AtMost(250.0),
                measured: p50(PYTHON, 0).map(|v| (v, format!("{v:.1} µs"))),
            },
            Target {
                name: format!("`{python}.add` p50 (µs), 1 in flight, instance reuse"),
                goal: Goal::AtMost(100.0),
                measured: p50(PYTHON, 1).map(|v| (v, format!("{v:.1} µs"))),
            },
        ];
        let rust_rss = self.rss[0][0].map(|(_, warm, _)| mib(warm));
        for (index, component) in COMPONENTS.iter().enumerate() {
            for (m, (_, mode)) in MODES.iter().enumerate() {
                let Some((idle, warm, peak)) = self.rss[index][m] else {
                    continue;
                };
                let (idle, warm, peak) = (mib(idle), mib(warm), mib(peak));
                let text = format!(
                    "{warm:.1} MiB after the calls at 1 in flight; {idle:.1} MiB loaded, \
                     before any call; peak {peak:.1} MiB at {} in flight",
                    plan.in_flight
                );
                let name = format!("host RSS (MiB) with `{}` alone, {mode}", component.plugin);
                let target = match (index, m, rust_rss) {
                    (0, _, _) | (_, _, None) => Target {
                        name,
                        goal: Goal::Reported,
                        measured: Some((warm, text)),
                    },
                    (_, _, Some(rust)) => Target::ratio(
                        &format!("{name} / with `math` alone, fresh"),
                        if index == PYTHON && m == 0 {
                            Goal::AtMost(2.0)
                        } else {
                            Goal::Reported
                        },
                        Some((warm, text)),
                        Some((rust, format!("{rust:.1} MiB"))),
                    ),
                };
                targets.push(target);
                if let (Some(idle), Some(warm)) = self.parts[index][m] {
                    targets.push(Target {
                        name: format!("host PSS (MiB) with `{}` alone, {mode}", component.plugin),
                        goal: Goal::Reported,
                        measured: Some((
                            mib(warm.pss),
                            format!(
                                "after the calls at 1 in flight: {}; loaded: {}",
                                warm.text(),
                                idle.text()
                            ),
                        )),
                    });
                }
            }
        }
        for (index, component) in COMPONENTS.iter().enumerate() {
            let Some([(cold, compiled), (warm, loaded)]) = self.starts[index] else {
                continue;
            };
            let ms = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
            let (cold_s, warm_s) = (cold.as_secs_f64(), warm.as_secs_f64());
            targets.push(Target {
                name: format!(
                    "host start serving `{}` (s), empty compile cache",
                    component.plugin
                ),
                goal: Goal::Reported,
                measured: Some((
                    cold_s,
                    format!("{cold_s:.2} s, of which compiling {} ms", ms(compiled)),
                )),
            });
            targets.push(Target::ratio(
                &format!(
                    "host start serving `{}`, warm compile cache / empty",
                    component.plugin
                ),
                Goal::Reported,
                Some((
                    warm_s,
                    format!("{warm_s:.2} s, of which loading the code {} ms", ms(loaded)),
                )),
                Some((cold_s, format!("{cold_s:.2} s"))),
            ));
        }
        for (index, component) in COMPONENTS.iter().enumerate() {
            if let Some(size) = self.sizes[index] {
                targets.push(Target {
                    name: format!("`{}.wasm` file size (MiB)", component.plugin),
                    goal: Goal::Reported,
                    measured: Some((mib(size), format!("{} bytes", size))),
                });
            }
        }
        Section {
            title: "Languages".into(),
            note: format!(
                "`add(a: s64, b: s64) -> s64` written in Rust, Python (componentize-py) and \
                 JavaScript (componentize-js), each served alone by a host of its own, with a \
                 fresh instance per call and with `reuse_instances = true`. {one} calls at 1 in \
                 flight (the hosts interleaved in {rounds} rounds), then {many} at {n} in flight \
                 on one connection, one host after the other; each after a warm-up of {warm} \
                 calls. These hosts take the compiled code from the compile cache the start \
                 measurement left warm, as a restarted host does. RSS is the host's `VmRSS`; \
                 PSS (`smaps_rollup`) counts once a file page that several mappings hold, \
                 such as the memory image each pool slot maps, which `VmRSS` counts per slot. \
                 A host start is timed from its \
                 launch until it serves `add`, first with an empty compile cache, then \
                 with the entry the first start stored.",
                one = plan.calls / 10,
                many = plan.pipelined_calls / 20,
                n = plan.in_flight,
                rounds = plan.rounds,
                warm = plan.warmup / 10,
            ),
            targets,
            rows: self.rows,
        }
    }
}
