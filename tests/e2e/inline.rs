//! The inline fast path: calls run on the network thread that read them,
//! and a guest that runs past the inline budget moves to the guest pool;
//! instances made ahead of calls are still fresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ciborium::Value;
use wasmrpc_tests::{HostProcess, assert_adds, eventually_async};

/// Runs `misbehave.busy(ms)` on `client` while the same connection keeps
/// calling `math.add`; returns the busy call's answer and the slowest add.
async fn adds_while_busy(client: &wasmrpc::Client, ms: u32) -> (Value, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let added = Arc::new(AtomicU64::new(0));
    let adder = {
        let (client, stop, added) = (client.clone(), stop.clone(), added.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let sum = client
                    .call_value("math.add", vec![Value::from(i), Value::from(2)])
                    .await
                    .unwrap();
                assert_eq!(sum, Value::from(i + 2));
                slowest = slowest.max(start.elapsed());
                i += 1;
                added.fetch_add(1, Ordering::Relaxed);
                // Pacing, not a wait: a steady trickle of adds, each one
                // measured alone.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            slowest
        })
    };
    // The adds are under way before the busy call starts.
    let adding = eventually_async(Duration::from_secs(5), || async {
        added.load(Ordering::Relaxed) > 0
    })
    .await;
    assert!(adding, "no add answered");
    let busy = client
        .call_value("misbehave.busy", vec![Value::from(ms)])
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    (busy, adder.await.unwrap())
}

/// A host serving `guests` that logs the runtime's debug lines.
fn host_with(guests: &[&str], args: &[&str]) -> HostProcess {
    HostProcess::builder()
        .plugins(guests)
        .args(args)
        .log_filter("info,wasmrpc::runtime=debug")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_past_the_inline_budget_moves_off_the_network_thread() {
    let host = host_with(&["math", "misbehave"], &[]);
    let client = host.client().await;
    assert_adds(&client, 1, 2).await;

    // `busy` computes for 300 ms. Had it stayed on the thread that read it,
    // the adds on the same connection would wait behind it.
    let running = tokio::spawn({
        let client = client.clone();
        async move { adds_while_busy(&client, 300).await }
    });
    host.wait_for_log(
        "`misbehave.busy` ran past the inline budget of 1ms; moved to the guest pool",
        1,
        Duration::from_secs(5),
    );
    // Within the next second (counted from the move, not from the end of a
    // call that may take longer than that on a loaded machine), `busy` goes
    // to the pool at once: no new line.
    let again = client
        .call_value("misbehave.busy", vec![Value::from(20)])
        .await
        .unwrap();
    assert_eq!(again, Value::from(20));
    // (An add the OS held up on a loaded machine may log a move of its own.)
    assert_eq!(
        host.log()
            .matches("`misbehave.busy` ran past the inline budget")
            .count(),
        1
    );
    let (busy, slowest) = running.await.unwrap();
    assert_eq!(busy, Value::from(300));
    assert!(
        slowest < Duration::from_millis(100),
        "an add on the busy guest's connection waited {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_call_held_up_by_the_os_keeps_its_function_inline() {
    // The budget is wall time, so a short call whose thread the OS stops
    // for a while passes it too. Stopping the whole host (SIGSTOP) for 5 ms
    // at a time while adds run does that; once a stopped add is moved to the
    // pool, it has next to no work left there, and `math.add` stays inline.
    let host = host_with(&["math"], &[]);
    let client = host.client().await;
    assert_adds(&client, 1, 2).await;
    let stop = Arc::new(AtomicBool::new(false));
    let added = Arc::new(AtomicU64::new(0));
    let adders: Vec<_> = (0..4)
        .map(|_| {
            let (client, stop, added) = (client.clone(), stop.clone(), added.clone());
            tokio::spawn(async move {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let sum = client
                        .call_value("math.add", vec![Value::from(i), Value::from(2)])
                        .await
                        .unwrap();
                    assert_eq!(sum, Value::from(i + 2));
                    i += 1;
                    added.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let pid = i32::try_from(host.pid()).unwrap();
    let moved = "`math.add` ran past the inline budget of 1ms; moved to the guest pool";
    let mut stops = 0;
    while !host.log().contains(moved) {
        assert!(
            stops < 3_000,
            "no add was stopped while inline in {stops} stops"
        );
        stops += 1;
        // SAFETY: kill(2) takes plain integers and touches no memory, so
        // the call is sound for any pid; this one is our unreaped child's
        // (`host` owns it until the end of the test), so it names the host.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        // The stop is the scenario: the host held up for 5 ms at a time.
        std::thread::sleep(Duration::from_millis(5));
        // SAFETY: as for SIGSTOP above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        // Pacing, not a wait: the adds run between stops.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    host.wait_for_log("`math.add` needed ", 1, Duration::from_secs(5));
    // Within the second the move would have sent `math.add` to the pool
    // for, the adds run inline: the guest pool's threads stay idle.
    let (pool_before, adds_before) = (host.guest_pool_cpu(), added.load(Ordering::Relaxed));
    // A measuring window, not a wait: the pool's CPU time over 300 ms of adds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pool_used = host.guest_pool_cpu() - pool_before;
    let adds = added.load(Ordering::Relaxed) - adds_before;
    eprintln!("the guest pool ran for {pool_used:?} during {adds} adds");
    assert!(adds >= 100, "only {adds} adds in 300 ms");
    assert!(
        pool_used < Duration::from_millis(20),
        "the guest pool ran for {pool_used:?} during {adds} adds"
    );
    stop.store(true, Ordering::Relaxed);
    for adder in adders {
        adder.await.unwrap();
    }
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("`math.add` needed "))
        .unwrap();
    assert!(
        line.ends_with("of CPU time after its move; its calls stay inline"),
        "{line}"
    );
    eprintln!("{stops} stops; {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_inline_budget_every_guest_runs_on_the_pool() {
    let host = host_with(&["math", "misbehave"], &["--inline-budget", "0s"]);
    let client = host.client().await;
    let (busy, slowest) = adds_while_busy(&client, 200).await;
    assert_eq!(busy, Value::from(200));
    assert!(
        slowest < Duration::from_millis(100),
        "an add waited {slowest:?}"
    );
    assert_eq!(host.log().matches("ran past the inline budget").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_made_ahead_of_calls_are_fresh_for_every_call() {
    // `ledger.tally` counts calls in its instance's memory: 1 means fresh.
    let host = HostProcess::start(&["ledger"]);
    let clients = [host.client().await, host.client().await];
    let mut callers = Vec::new();
    for caller in 0..16 {
        let client = clients[caller % 2].clone();
        callers.push(tokio::spawn(async move {
            for _ in 0..25 {
                let tally = client.call_value("ledger.tally", vec![]).await.unwrap();
                assert_eq!(tally, Value::from(1));
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
    // One at a time, each after the host has made its spares.
    for _ in 0..20 {
        let tally = clients[0].call_value("ledger.tally", vec![]).await.unwrap();
        assert_eq!(tally, Value::from(1));
        host.wait_until_idle(Duration::from_secs(5)).await;
    }
}

/// Context switches of all the threads of process `pid` so far.
fn context_switches(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_host_sleeps() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;
    assert_adds(&client, 1, 2).await;
    // The call's leftovers (teardown, the next spare) are done.
    host.wait_until_idle(Duration::from_secs(5)).await;
    let before = context_switches(host.pid());
    // A measuring window, not a wait: what an idle host does in 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let woke = context_switches(host.pid()) - before;
    eprintln!("an idle host switched context {woke} times in 2 s");
    // Nothing runs: no epoch ticks (1 000 a second while calls run inline)
    // and no reaction to the folder rescans' own reads of the folder.
    assert!(
        woke < 40,
        "an idle host switched context {woke} times in 2 s"
    );
    // And guests are still stopped at their deadline after the sleep.
    let err = client
        .call_value_with(
            "misbehave.spin",
            vec![],
            wasmrpc::CallOptions {
                timeout: Some(Duration::from_millis(100)),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, wasmrpc::ErrorCode::DeadlineExceeded);
    assert_adds(&client, 2, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spares_never_take_the_pool_from_calls() {
    // 32 instance slots; six plugins called once would like 2 spares each.
    let plugins = [
        "math",
        "ledger",
        "misbehave",
        "greeter",
        "inventory",
        "orders",
    ];
    let host = HostProcess::builder()
        .plugins(&plugins)
        .args(&["--max-instances", "32"])
        .start();
    let client = host.client().await;
    let first_calls: [(&str, Vec<Value>); 6] = [
        ("math.add", vec![Value::from(1), Value::from(2)]),
        ("ledger.tally", vec![]),
        ("misbehave.busy", vec![Value::from(1)]),
        ("greeter.echo.echo-bytes", vec![Value::Bytes(vec![1, 2, 3])]),
        (
            "inventory.stock.reserve",
            vec![Value::from("sku-1"), Value::from(1)],
        ),
        (
            "orders.place",
            vec![Value::from("ada"), Value::from("sku-1"), Value::from(1)],
        ),
    ];
    for (function, args) in first_calls {
        // Ran (a handler error is an answer too): the plugin is warm now.
        if let Err(error) = client.call_value(function, args).await {
            assert_eq!(
                error.code,
                wasmrpc::ErrorCode::HandlerError,
                "{function}: {error}"
            );
        }
        // The host has made the spares this call asked for.
        host.wait_until_idle(Duration::from_secs(5)).await;
    }
    // Twelve spares would leave 20 slots. The host keeps at most an eighth
    // of the pool (4) as spares, so 26 calls at once all get an instance.
    let calls: Vec<_> = (0..26)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call_value("misbehave.busy", vec![Value::from(300)])
                    .await
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), Value::from(300));
    }
}
