//! Misbehaving guests are stopped with the right error and never hurt the host.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ciborium::Value;
use wasmrpc::{CallOptions, ErrorCode, Processed};
use wasmrpc_tests::{HostProcess, assert_adds, assert_call_error, cbor, eventually_async};

fn timeout(ms: u64) -> CallOptions {
    CallOptions {
        timeout: Some(Duration::from_millis(ms)),
        ..CallOptions::default()
    }
}

#[tokio::test]
async fn spinning_guest_hits_its_deadline_while_other_calls_keep_answering() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;
    assert_adds(&client, 40, 2).await;

    // A steady loop of `math.add` on the same connection while the guest spins.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let slowest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let adder = {
        let (client, stop, answered, slowest) = (
            client.clone(),
            stop.clone(),
            answered.clone(),
            slowest.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let sum = client
                    .call_value("math.add", vec![Value::from(i), Value::from(1)])
                    .await;
                assert_eq!(sum.unwrap(), Value::from(i + 1));
                let took = start.elapsed();
                {
                    let mut worst = slowest.lock().unwrap();
                    *worst = (*worst).max(took);
                }
                answered.fetch_add(1, Ordering::Relaxed);
                i += 1;
                // Pacing, not a wait: a steady trickle of adds, each one
                // measured alone.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // The adds are under way before the guest starts spinning.
    let adding = eventually_async(Duration::from_secs(5), || async {
        answered.load(Ordering::Relaxed) > 0
    })
    .await;
    assert!(adding, "no add answered");
    let before = answered.load(Ordering::Relaxed);
    let start = Instant::now();
    let err = client
        .call_value_with("misbehave.spin", vec![], timeout(200))
        .await
        .unwrap_err();
    let took = start.elapsed();
    let during = answered.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    adder.await.unwrap();

    assert_eq!(err.code, ErrorCode::DeadlineExceeded);
    assert_eq!(err.processed, Processed::Maybe);
    assert!(
        took >= Duration::from_millis(200),
        "stopped early: {took:?}"
    );
    assert!(took < Duration::from_millis(400), "took {took:?}");
    assert!(
        during >= 5,
        "only {during} adds answered while the guest spun"
    );
    let worst = *slowest.lock().unwrap();
    assert!(
        worst < Duration::from_millis(200),
        "an add waited {worst:?}"
    );
    assert_adds(&client, 40, 2).await;
}

#[tokio::test]
async fn unbounded_allocation_is_stopped_at_the_memory_limit_and_memory_is_returned() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;
    assert_adds(&client, 40, 2).await;
    let baseline = host.rss_kib();
    for _ in 0..5 {
        let err = client
            .call_value("misbehave.hog", vec![])
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ResourceExhausted);
        assert_eq!(
            err.message,
            "plugin `misbehave` exceeded its memory limit of 64 MiB"
        );
    }
    let after = host.rss_kib();
    // Five 64 MiB guests ran; the host keeps at most about one instance's worth.
    assert!(
        after < baseline + 96 * 1024,
        "host RSS grew from {baseline} KiB to {after} KiB"
    );
    assert_adds(&client, 40, 2).await;
}

#[tokio::test]
async fn panic_and_unbounded_recursion_are_traps_and_the_host_serves_on() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;

    assert_call_error(
        client
            .call_value("misbehave.crash", vec![cbor("\"boom\"")])
            .await,
        ErrorCode::Trap,
        Processed::Maybe,
        "`misbehave.crash` trapped: wasm `unreachable` instruction executed (guest panicked: boom)",
    );
    assert_adds(&client, 40, 2).await;

    let err = client
        .call_value("misbehave.recurse", vec![Value::from(0)])
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Trap);
    assert_eq!(err.message, "`misbehave.recurse` overflowed its stack");
    assert_adds(&client, 40, 2).await;
}

#[tokio::test]
async fn guests_get_no_filesystem_or_environment_and_their_output_is_logged() {
    let host = HostProcess::start(&["misbehave"]);
    let client = host.client().await;
    for path in ["/etc/passwd", "/", "."] {
        let err = client
            .call_value("misbehave.read-file", vec![cbor(&format!("\"{path}\""))])
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::HandlerError, "{path}");
    }
    let home = client
        .call_value("misbehave.get-env", vec![cbor("\"PATH\"")])
        .await
        .unwrap();
    assert_eq!(home, Value::Null);

    client
        .call_value("misbehave.chatter", vec![cbor("\"hello \\u001b[31mred\"")])
        .await
        .unwrap();
    let logged = wasmrpc_tests::eventually(Duration::from_secs(2), || {
        let log = host.log();
        log.contains("hello \\u{1b}[31mred plugin=misbehave stream=\"stdout\"")
            && log.contains("hello \\u{1b}[31mred plugin=misbehave stream=\"stderr\"")
    });
    assert!(logged, "guest output not in the log:\n{}", host.log());
}

#[tokio::test]
async fn busy_guest_returns_after_its_work() {
    let host = HostProcess::start(&["misbehave"]);
    let client = host.client().await;
    let start = Instant::now();
    let ms = client
        .call_value("misbehave.busy", vec![Value::from(100)])
        .await
        .unwrap();
    assert_eq!(ms, Value::from(100));
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn reuse_mode_serves_warm_instances_and_discards_one_that_failed() {
    let plugins = wasmrpc_tests::plugin_dir(&["ledger"]);
    std::fs::write(
        plugins.path().join("ledger.toml"),
        "idempotent = [\"locate\"]\nreuse_instances = true\n",
    )
    .unwrap();
    let host = HostProcess::builder().plugin_dir(plugins.path()).start();
    let client = host.client().await;
    let tally = || async { client.call_value("ledger.tally", vec![]).await.unwrap() };
    // One caller at a time: the same warm instance serves each call.
    assert_eq!(tally().await, Value::from(1));
    assert_eq!(tally().await, Value::from(2));
    assert_eq!(tally().await, Value::from(3));
    // An instance that hits its deadline is discarded...
    let err = client
        .call_value_with(
            "ledger.record",
            vec![cbor("\"slow\""), Value::from(500)],
            timeout(100),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::DeadlineExceeded);
    // ...so the next call starts on a fresh one.
    assert_eq!(tally().await, Value::from(1));
    assert_eq!(tally().await, Value::from(2));

    // Without the opt-in, every call gets a fresh instance.
    let fresh = HostProcess::start(&["ledger"]);
    let client = fresh.client().await;
    for _ in 0..3 {
        assert_eq!(
            client.call_value("ledger.tally", vec![]).await.unwrap(),
            Value::from(1)
        );
    }
}
