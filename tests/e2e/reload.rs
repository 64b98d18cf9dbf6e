//! Hot reload: plugin files dropped, replaced (well or badly), written slowly
//! and deleted while traffic flows; sidecars; regions.toml edits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ciborium::Value;
use wasmrpc::{Client, ErrorCode};
use wasmrpc_tests::{
    Cluster, HostProcess, RegionSpec, WriteStyle, call_in_flight, cbor, component_returning,
    eventually_async, large_component,
};

/// Polls `function` until it answers `expected`; returns how long it took.
async fn until_answers(
    client: &Client,
    function: &str,
    expected: &Value,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let answered = eventually_async(limit, || async {
        client.call_value(function, vec![]).await.as_ref() == Ok(expected)
    })
    .await;
    assert!(
        answered,
        "`{function}` did not answer {expected:?} within {limit:?}"
    );
    start.elapsed()
}

/// A host serving `version.wasm` answering 1: the host, the file, a client.
async fn serving_version_one() -> (HostProcess, std::path::PathBuf, Client) {
    let host = HostProcess::builder().plugins(&[]).admin().start();
    let path = host.plugins().join("version.wasm");
    WriteStyle::InPlace.to(&path, &component_returning(1));
    let client = host.client().await;
    until_answers(
        &client,
        "version.version",
        &Value::from(1),
        Duration::from_secs(3),
    )
    .await;
    (host, path, client)
}

/// Calls `version.version` in a loop until `stop`; returns the answers and
/// the errors.
async fn version_stream(client: Client, stop: Arc<AtomicBool>) -> (Vec<u32>, Vec<String>) {
    let mut answers = Vec::new();
    let mut errors = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match client.call_value("version.version", vec![]).await {
            Ok(Value::Integer(n)) => answers.push(u32::try_from(i128::from(n)).unwrap()),
            Ok(other) => errors.push(format!("unexpected {other:?}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (answers, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_plugin_is_callable_within_a_second_here_and_a_second_later_elsewhere() {
    let cluster = Cluster::pair(("a", &["math"]), ("b", &["math"]));
    let _hosts = cluster.start_all_linked();
    let at_a = Client::connect(cluster.listed("a", 0)).await.unwrap();
    let at_b = Client::connect(cluster.listed("b", 0)).await.unwrap();

    WriteStyle::InPlace.to(
        &cluster.plugins("b").join("version.wasm"),
        &component_returning(1),
    );
    let here = until_answers(
        &at_b,
        "version.version",
        &Value::from(1),
        Duration::from_secs(1),
    )
    .await;
    let there = until_answers(
        &at_a,
        "version.version",
        &Value::from(1),
        Duration::from_secs(1),
    )
    .await;
    eprintln!(
        "new plugin callable at its host after {here:?}, in the other region {there:?} later"
    );
    let catalog = at_a.list().await.unwrap();
    let info = catalog
        .iter()
        .find(|f| f.name == "version.version")
        .unwrap();
    assert_eq!(info.regions, vec!["b"]);
    assert_eq!(info.signature, "func() -> u32");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_replacements_under_load_fail_no_call_and_end_on_the_last_version() {
    let (_host, path, client) = serving_version_one().await;

    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = (0..4)
        .map(|_| tokio::spawn(version_stream(client.clone(), stop.clone())))
        .collect();
    let started = Instant::now();
    let styles = [
        WriteStyle::InPlace,
        WriteStyle::Rename,
        WriteStyle::SlowChunks {
            chunks: 4,
            pause: Duration::from_millis(30),
        },
    ];
    for version in 2..=31u32 {
        let style = styles[version as usize % styles.len()];
        let bytes = component_returning(version);
        tokio::task::spawn_blocking({
            let path = path.clone();
            move || style.to(&path, &bytes)
        })
        .await
        .unwrap();
        until_answers(
            &client,
            "version.version",
            &Value::from(version),
            Duration::from_secs(3),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut calls = 0;
    for stream in streams {
        let (answers, errors) = stream.await.unwrap();
        assert_eq!(errors, Vec::<String>::new(), "calls failed during reloads");
        // Each stream calls one after another, so with atomic swaps it sees
        // every version at most once and never goes back.
        assert!(
            answers.windows(2).all(|w| w[0] <= w[1]),
            "answers went back: {answers:?}"
        );
        assert!(answers.iter().all(|v| (1..=31).contains(v)));
        calls += answers.len();
    }
    let rate = calls as f64 / elapsed.as_secs_f64();
    eprintln!("{calls} calls in {elapsed:?} ({rate:.0}/s) across 30 replacements, none failed");
    assert!(
        rate > 200.0,
        "the stream was too thin to prove anything: {rate:.0} calls/s"
    );
    for _ in 0..50 {
        assert_eq!(
            client.call_value("version.version", vec![]).await.unwrap(),
            Value::from(31)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_replacements_never_displace_the_working_version() {
    let (host, path, client) = serving_version_one().await;

    let good = component_returning(2);
    let core_module =
        wat::parse_str(r#"(module (func (export "version") (result i32) i32.const 3))"#).unwrap();
    let missing_import = wat::parse_str(
        r#"(component
            (import "acme:missing/thing" (instance (export "poke" (func))))
            (core module $m (func (export "version") (result i32) i32.const 4))
            (core instance $i (instantiate $m))
            (func (export "version") (result u32) (canon lift (core func $i "version"))))"#,
    )
    .unwrap();
    let mut seed = 7u32;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        })
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "failed to parse WebAssembly module",
        ),
        ("random bytes", random, "failed to parse WebAssembly module"),
        (
            "core module",
            core_module,
            "attempted to parse a wasm module with a component parser",
        ),
        (
            "unsatisfiable import",
            missing_import,
            "component imports instance `acme:missing/thing`",
        ),
        ("empty", Vec::new(), "failed to parse WebAssembly module"),
    ];

    let version_one_sha256 = host.status().await.plugins[0].sha256.clone();
    assert!(version_one_sha256.is_some());
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = (0..2)
        .map(|_| tokio::spawn(version_stream(client.clone(), stop.clone())))
        .collect();
    for (refusals, (what, bytes, reason)) in cases.iter().enumerate() {
        // Renamed into place, so that the host sees each file whole and
        // refuses it once. Written in place, a file is empty between the
        // truncation and the write: once, on a loaded machine, the host read
        // it then and refused the empty file before the broken one (the
        // loaded version kept serving, but this test counts refusals).
        // In-place writes are covered by the tests above.
        WriteStyle::Rename.to(&path, bytes);
        // An empty file is waited for as a write in progress (5 s) before
        // it is read and refused.
        let wait = if bytes.is_empty() { 10 } else { 3 };
        let refused = eventually_async(Duration::from_secs(wait), || async {
            host.metrics()
                .await
                .get("wasmrpc_plugin_refusals_total", &[("plugin", "version")])
                == Some(refusals as f64 + 1.0)
        })
        .await;
        assert!(refused, "{what}: not refused; log:\n{}", host.log());
        // Refused for its reason, and the loaded version keeps serving.
        let status = host.status().await;
        let [plugin] = &status.plugins[..] else {
            panic!("{what}: {:?}", status.plugins)
        };
        let refusal = plugin.last_refusal.as_ref().expect("last_refusal");
        assert_eq!(refusal.file, path.to_str().unwrap(), "{what}");
        assert!(
            refusal.error.contains(reason),
            "{what}: expected `{reason}` in {}",
            refusal.error
        );
        assert_eq!(plugin.sha256, version_one_sha256, "{what}");
    }
    assert_eq!(
        host.metrics()
            .await
            .get("wasmrpc_plugin_loads_total", &[("plugin", "version")]),
        Some(1.0)
    );
    stop.store(true, Ordering::Relaxed);
    for stream in streams {
        let (answers, errors) = stream.await.unwrap();
        assert_eq!(errors, Vec::<String>::new());
        assert!(!answers.is_empty());
        assert!(
            answers.iter().all(|v| *v == 1),
            "a broken file answered: {answers:?}"
        );
    }
    // A good file after all that is taken.
    WriteStyle::Rename.to(&path, &good);
    until_answers(
        &client,
        "version.version",
        &Value::from(2),
        Duration::from_secs(3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_is_waited_for_like_a_write_in_progress() {
    let (host, path, client) = serving_version_one().await;
    // A copy that stalls after creating the file: it is empty, closed, and
    // holds still for longer than the settling period.
    std::fs::write(&path, b"").unwrap();
    // The stall is the scenario: longer than the host's settling period.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        client.call_value("version.version", vec![]).await.unwrap(),
        Value::from(1),
        "the loaded version keeps serving"
    );
    WriteStyle::InPlace.to(&path, &component_returning(2));
    until_answers(
        &client,
        "version.version",
        &Value::from(2),
        Duration::from_secs(3),
    )
    .await;
    // Loaded, then replaced once; the empty file was never refused.
    let m = host.metrics().await;
    assert_eq!(
        m.get("wasmrpc_plugin_loads_total", &[("plugin", "version")]),
        Some(2.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("wasmrpc_plugin_refusals_total", &[]),
        0.0,
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_written_file_loads_once_when_complete() {
    let host = HostProcess::builder().plugins(&[]).admin().start();
    let path = host.plugins().join("version.wasm");
    let client = host.client().await;
    let bytes = component_returning(5);
    let writer = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            WriteStyle::SlowChunks {
                chunks: 20,
                pause: Duration::from_millis(50),
            }
            .to(&path, &bytes)
        }
    });
    while !writer.is_finished() {
        let err = client
            .call_value("version.version", vec![])
            .await
            .unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::NotFound,
            "loaded while still being written"
        );
        // Pacing, not a wait: the check repeats for as long as the writer
        // runs.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.await.unwrap();
    until_answers(
        &client,
        "version.version",
        &Value::from(5),
        Duration::from_secs(1),
    )
    .await;
    let m = host.metrics().await;
    assert_eq!(
        m.get("wasmrpc_plugin_loads_total", &[("plugin", "version")]),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("wasmrpc_plugin_refusals_total", &[]),
        0.0,
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_plugin_refuses_new_calls_and_lets_running_ones_finish() {
    let host = HostProcess::start(&["misbehave"]);
    let client = host.client().await;
    let running = call_in_flight(&client, "misbehave.busy", vec![Value::from(1500)]).await;
    std::fs::remove_file(host.plugins().join("misbehave.wasm")).unwrap();
    let refused = eventually_async(Duration::from_secs(1), || async {
        match client
            .call_value("misbehave.busy", vec![Value::from(1)])
            .await
        {
            Err(e) if e.code == ErrorCode::NotFound => true,
            Ok(_) => false,
            Err(e) => panic!("unexpected {e}"),
        }
    })
    .await;
    assert!(refused, "still served 1 s after deletion");
    assert!(
        !running.is_finished(),
        "the running call should still be running"
    );
    assert_eq!(running.await.unwrap().unwrap(), Value::from(1500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_deleted_in_one_region_is_served_from_another() {
    let cluster = Cluster::pair(("a", &["ledger"]), ("b", &["ledger"]));
    let _hosts = cluster.start_all_linked();
    let at_b = Client::connect(cluster.listed("b", 0)).await.unwrap();
    let locate = || vec![cbor("\"x\""), Value::from(0)];
    assert_eq!(
        at_b.call_value("ledger.locate", locate()).await.unwrap(),
        cbor("\"b\"")
    );
    std::fs::remove_file(cluster.plugins("b").join("ledger.wasm")).unwrap();
    let moved = eventually_async(Duration::from_secs(1), || async {
        at_b.call_value("ledger.locate", locate()).await.unwrap() == cbor("\"a\"")
    })
    .await;
    assert!(moved, "b still ran it itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiling_a_large_plugin_does_not_stall_serving() {
    // Without the compile cache, so that the plugin compiles every run.
    let host = HostProcess::builder()
        .plugins(&["math"])
        .args(&["--no-compile-cache"])
        .start();
    let client = host.client().await;
    let add = || vec![Value::from(1), Value::from(2)];
    let mut before = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        assert_eq!(
            client.call_value("math.add", add()).await.unwrap(),
            Value::from(3)
        );
        before.push(t.elapsed());
    }

    let bytes = large_component(1000);
    let path = host.plugins().join("large.wasm");
    WriteStyle::Rename.to(&path, &bytes);
    let written = Instant::now();
    let poller = {
        let client = client.clone();
        tokio::spawn(async move {
            until_answers(
                &client,
                "large.ping",
                &Value::from(7),
                Duration::from_secs(60),
            )
            .await
        })
    };
    let mut during = Vec::new();
    while !poller.is_finished() {
        let t = Instant::now();
        assert_eq!(
            client.call_value("math.add", add()).await.unwrap(),
            Value::from(3)
        );
        during.push(t.elapsed());
    }
    let loaded_after = poller.await.unwrap();
    let p = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * q) as usize]
    };
    eprintln!(
        "large plugin ({} KiB) callable after {loaded_after:?} (written {:?} ago); math.add p50/p99 \
         before: {:?}/{:?} ({} calls), during: {:?}/{:?} ({} calls)",
        bytes.len() / 1024,
        written.elapsed(),
        p(&mut before, 0.5),
        p(&mut before, 0.99),
        before.len(),
        p(&mut during, 0.5),
        p(&mut during, 0.99),
        during.len(),
    );
    assert!(
        loaded_after > Duration::from_millis(500),
        "the plugin compiled too fast to prove anything"
    );
    assert!(
        during.len() > 100,
        "only {} calls answered during the compile",
        during.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_reloads_with_its_plugin_and_a_bad_one_is_refused() {
    let host = HostProcess::builder().plugins(&["ledger"]).admin().start();
    let client = host.client().await;
    let idempotent = |catalog: &[wasmrpc::protocol::FunctionInfo], name: &str| {
        catalog.iter().find(|f| f.name == name).unwrap().idempotent
    };
    let catalog = client.list().await.unwrap();
    assert!(idempotent(&catalog, "ledger.locate"));
    assert!(!idempotent(&catalog, "ledger.record"));

    let sidecar = host.plugins().join("ledger.toml");
    std::fs::write(&sidecar, "idempotent = [\"locate\", \"record\"]\n").unwrap();
    let applied = eventually_async(Duration::from_secs(1), || async {
        idempotent(&client.list().await.unwrap(), "ledger.record")
    })
    .await;
    assert!(applied, "sidecar change not applied");

    std::fs::write(&sidecar, "idempotent = [\"fly\"]\n").unwrap();
    let refused = eventually_async(Duration::from_secs(3), || async {
        host.metrics()
            .await
            .get("wasmrpc_plugin_refusals_total", &[("plugin", "ledger")])
            == Some(1.0)
    })
    .await;
    assert!(
        refused,
        "the bad sidecar was not refused; log:\n{}",
        host.log()
    );
    let status = host.status().await;
    let refusal = status.plugins[0]
        .last_refusal
        .as_ref()
        .expect("last_refusal");
    assert!(
        refusal
            .error
            .contains("`idempotent` names `fly`, but plugin `ledger` has no function `ledger.fly`"),
        "{}",
        refusal.error
    );
    let catalog = client.list().await.unwrap();
    assert!(
        idempotent(&catalog, "ledger.record"),
        "the previous settings keep serving"
    );
    assert_eq!(
        client
            .call_value("ledger.locate", vec![cbor("\"x\""), Value::from(0)])
            .await
            .unwrap(),
        cbor("\"test\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_toml_edits_add_and_remove_regions_and_a_bad_edit_changes_nothing() {
    let mut cluster = Cluster::pair(("a", &["math"]), ("b", &[]));
    let a = cluster.start("a", 0);
    let _b = cluster.start("b", 0);
    let at_a = Client::connect(cluster.listed("a", 0)).await.unwrap();
    let reserve = || vec![cbor("\"sku-1\""), Value::from(1)];

    cluster.add_region(RegionSpec {
        name: "c",
        hosts: 1,
        plugins: &["inventory"],
    });
    let _c = cluster.start("c", 0);
    let start = Instant::now();
    let callable = eventually_async(Duration::from_secs(5), || async {
        at_a.call_value("inventory.stock.reserve", reserve())
            .await
            .is_ok()
    })
    .await;
    assert!(callable, "the new region never became callable");
    eprintln!(
        "added region callable from a running host after {:?}",
        start.elapsed()
    );

    cluster.replace_config("[[region]]\nname = 5\n");
    a.wait_for_log("keeping the previous topology", 1, Duration::from_secs(3));
    assert!(a.log().contains("invalid `"), "{}", a.log());
    assert!(
        at_a.call_value("inventory.stock.reserve", reserve())
            .await
            .is_ok()
    );

    cluster.remove_region("c");
    let unlisted = eventually_async(Duration::from_secs(3), || async {
        let catalog = at_a.list().await.unwrap();
        !catalog.iter().any(|f| f.name == "inventory.stock.reserve")
    })
    .await;
    assert!(unlisted, "removed region still listed");
    let err = at_a
        .call_value("inventory.stock.reserve", reserve())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}
