//! SIGTERM drains: calls in flight finish, the process exits 0.

use std::time::{Duration, Instant};

use ciborium::Value;
use wasmrpc::{ErrorCode, Processed};
use wasmrpc_tests::HostProcess;

#[tokio::test]
async fn sigterm_lets_calls_in_flight_finish_then_exits_zero() {
    let mut host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call("misbehave.busy", vec![Value::from(800)]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);

    // Calls sent after the drain began are refused, unprocessed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = client
        .call("math.add", vec![Value::from(1), Value::from(1)])
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert_eq!(refused.processed, Processed::No);

    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), Value::from(800));
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = host.wait_exit(Duration::from_secs(10));
        (status, host)
    })
    .await
    .unwrap();
    let exited = signalled.elapsed();
    assert_eq!(
        status.0.map(|s| s.code()),
        Some(Some(0)),
        "log:\n{}",
        status.1.log()
    );
    // Default drain timeout is 5 s; the calls needed about 0.6 s more.
    assert!(exited < Duration::from_secs(5), "exit took {exited:?}");
}
