//! SIGTERM drains: calls in flight finish, the process exits 0.

use std::time::{Duration, Instant};

use ciborium::Value;
use wasmrpc::{ErrorCode, Processed};
use wasmrpc_tests::{HostProcess, call_in_flight, eventually_some};

#[tokio::test]
async fn sigterm_lets_calls_in_flight_finish_then_exits_zero() {
    let mut host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;
    let mut calls = Vec::new();
    for _ in 0..5 {
        calls.push(call_in_flight(&client, "misbehave.busy", vec![Value::from(800)]).await);
    }
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);

    // Calls sent after the drain began are refused, unprocessed; the ones
    // sent before the host noticed the signal still run.
    let refused = eventually_some(Duration::from_secs(5), || async {
        client
            .call_value("math.add", vec![Value::from(1), Value::from(1)])
            .await
            .err()
    })
    .await
    .expect("calls still served 5 s after SIGTERM");
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

#[tokio::test]
async fn a_second_signal_exits_at_once_with_code_130_as_documented() {
    let mut host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--drain-timeout", "30s"])
        .admin()
        .start();
    let client = host.client().await;
    let call = call_in_flight(&client, "misbehave.busy", vec![Value::from(4000)]).await;
    host.signal(libc::SIGTERM);
    host.wait_until_draining(Duration::from_secs(5)).await;
    let signalled = Instant::now();
    host.signal(libc::SIGINT);
    let (status, host) = tokio::task::spawn_blocking(move || {
        let status = host.wait_exit(Duration::from_secs(10));
        (status, host)
    })
    .await
    .unwrap();
    let exited = signalled.elapsed();
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(130)),
        "log:\n{}",
        host.log()
    );
    assert!(exited < Duration::from_secs(2), "exit took {exited:?}");
    // The call in flight was left unanswered: the connection just closed.
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        (err.code, err.processed),
        (ErrorCode::Unavailable, Processed::Maybe)
    );

    // Everywhere shutdown is described, so is this exit code.
    let root = wasmrpc_tests::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let command_line = readme
        .split("## Command line")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Command line section");
    let protocol = std::fs::read_to_string(root.join("PROTOCOL.md")).unwrap();
    let drain = protocol
        .split("## 9. Drain and shutdown")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("PROTOCOL.md has a drain section");
    let help = wasmrpc_tests::cli(&["host", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for (place, text) in [
        ("README.md's Command line section", command_line),
        ("PROTOCOL.md §9", drain),
        ("`wasmrpc host --help`", &help),
    ] {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains("second signal") && text.contains("130"),
            "{place} does not say that a second signal exits with code 130:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_host_keeps_its_peer_links_until_forwarded_calls_finish() {
    let cluster = wasmrpc_tests::Cluster::pair(("eu-west", &[]), ("us-east", &["misbehave"]));
    let _serving = cluster.start("us-east", 0);
    let edge = cluster.host("eu-west", 0).admin().start();
    let client = edge.client().await;
    let listed = eventually_some(Duration::from_secs(10), || async {
        let catalog = client.list().await.ok()?;
        catalog
            .iter()
            .any(|f| f.name == "misbehave.busy")
            .then_some(())
    })
    .await;
    assert!(listed.is_some(), "the edge never learned `misbehave.busy`");
    // The edge has read the call, and so forwarded it, before it drains.
    let forwarded = call_in_flight(&client, "misbehave.busy", vec![Value::from(800)]).await;
    edge.signal(libc::SIGTERM);
    edge.wait_until_draining(Duration::from_secs(5)).await;
    assert_eq!(
        forwarded.await.unwrap(),
        Ok(Value::from(800)),
        "log:\n{}",
        edge.log()
    );
}
