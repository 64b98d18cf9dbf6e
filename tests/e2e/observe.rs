//! The admin listener of real hosts: `/metrics`, `/healthz`, `/readyz`,
//! `/status`, read over HTTP and checked value by value.

use ciborium::Value;
use wasmrpc::{ErrorCode, Processed};
use wasmrpc_tests::HostProcess;

#[tokio::test]
async fn metrics_count_each_call_by_function_code_and_placement() {
    let host = HostProcess::builder().plugins(&["math"]).admin().start();
    let client = host.client().await;
    const N: usize = 7;
    const M: usize = 3;
    for i in 0..N as i64 {
        let sum = client
            .call("math.add", vec![Value::from(i), Value::from(1)])
            .await
            .unwrap();
        assert_eq!(sum, Value::from(i + 1));
    }
    for _ in 0..M {
        let error = client
            .call("math.divide", vec![Value::from(1), Value::from(0)])
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::HandlerError);
    }
    // A name no catalog has: counted, but never as a label value.
    let error = client
        .call("nope.made-up-by-caller", vec![])
        .await
        .unwrap_err();
    assert_eq!(
        (error.code, error.processed),
        (ErrorCode::NotFound, Processed::No)
    );

    let m = host.metrics().await;
    let calls = |function: &str, code: &str, processed: &str| {
        m.get(
            "wasmrpc_calls_total",
            &[
                ("function", function),
                ("code", code),
                ("processed", processed),
                ("placement", "local"),
            ],
        )
    };
    assert_eq!(calls("math.add", "ok", "yes"), Some(N as f64), "{}", m.text);
    assert_eq!(
        calls("math.divide", "handler_error", "yes"),
        Some(M as f64),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "wasmrpc_calls_total",
            &[
                ("function", "_unknown"),
                ("code", "not_found"),
                ("processed", "no"),
                ("placement", "forwarded"),
            ],
        ),
        Some(1.0),
        "{}",
        m.text
    );
    assert!(!m.text.contains("made-up-by-caller"), "{}", m.text);
    assert_eq!(
        m.get(
            "wasmrpc_call_duration_seconds_count",
            &[("function", "math.add"), ("placement", "local")]
        ),
        Some(N as f64),
        "{}",
        m.text
    );
    assert_eq!(
        m.get("wasmrpc_plugin_loads_total", &[("plugin", "math")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("wasmrpc_connections_open", &[("role", "client")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("wasmrpc_instances_in_use", &[("plugin", "math")]),
        Some(0.0)
    );
    assert!(m.sum("wasmrpc_guest_cpu_seconds_total", &[("plugin", "math")]) > 0.0);
    assert_eq!(m.get("wasmrpc_ready", &[]), Some(1.0));

    let health = host.admin_get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = host.admin_get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let status = host.status().await;
    assert_eq!(status.region, "test");
    assert_eq!(status.host, host.addr.to_string());
    assert!(status.ready);
    assert_eq!(status.plugins.len(), 1);
    assert_eq!(
        status.plugins[0].functions,
        ["math.add", "math.divide", "math.stats"]
    );
}
