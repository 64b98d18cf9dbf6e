//! Guests calling other functions through the host's `call` import, within
//! what their plugin's `calls` list permits, through either version of the
//! host interface.

use std::time::Duration;

use ciborium::Value;
use wasmrpc::{CallError, Client, ErrorCode, Processed};
use wasmrpc_tests::{HostProcess, assert_call_error, cbor, eventually_async, json, plugin_dir};

/// The arguments of `relay.try-call` or `legacy.try-call`: a nested call of
/// `function` with `args`.
fn nested(function: &str, args: &[i64]) -> Vec<Value> {
    let args = Value::Array(args.iter().map(|&a| Value::from(a)).collect());
    let mut encoded = Vec::new();
    ciborium::into_writer(&args, &mut encoded).unwrap();
    vec![Value::Text(function.into()), Value::Bytes(encoded)]
}

/// What `<plugin>.try-call(function, args)` answered: the nested call's
/// CBOR result, as JSON.
async fn try_call(client: &Client, plugin: &str, function: &str, args: &[i64]) -> String {
    let reply = client
        .call_value(&format!("{plugin}.try-call"), nested(function, args))
        .await
        .unwrap();
    let Value::Bytes(result) = reply else {
        panic!("{plugin}.try-call returned {reply:?}");
    };
    json(&ciborium::from_reader(result.as_slice()).unwrap())
}

/// The `call-error` the guest received from the host, as `try-call` hands
/// it back (the detail of its handler error), as JSON.
async fn seen_by_guest(client: &Client, plugin: &str, function: &str, args: &[i64]) -> String {
    let error: CallError = client
        .call_value(&format!("{plugin}.try-call"), nested(function, args))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::HandlerError, "{error:?}");
    json(&error.detail.expect("a handler error carries its detail"))
}

/// The error a guest of region `test` sees when plugin `plugin` may not
/// call `function`, with `code` the guest's name for `permission_denied`.
fn denied(code: &str, plugin: &str, function: &str) -> String {
    format!(
        "{{\"code\":\"{code}\",\"message\":\"plugin `{plugin}` may not call `{function}`: \
         add it to `calls` in `{plugin}.toml`\",\"region\":\"test\",\"processed\":\"no\",\
         \"detail\":null}}"
    )
}

#[tokio::test]
async fn orders_place_reserves_stock_through_the_host_import() {
    let host = HostProcess::start(&["orders", "inventory"]);
    let client = host.client().await;
    let order = client
        .call_value(
            "orders.place",
            vec![cbor("\"ada\""), cbor("\"sku-1\""), cbor("2")],
        )
        .await
        .unwrap();
    assert_eq!(
        json(&order),
        "{\"order-id\":\"O-ada-R-sku-1-2\",\"customer\":\"ada\",\"sku\":\"sku-1\",\"quantity\":2,\
         \"reservation-id\":\"R-sku-1-2\",\"warehouse\":\"lisbon\",\"region\":\"test\"}"
    );
    // The guest's `log` import reached the host log, tagged with the plugin.
    let logged = wasmrpc_tests::eventually(std::time::Duration::from_secs(2), || {
        host.log()
            .contains("placing order for ada: 2 x sku-1 plugin=orders")
    });
    assert!(logged, "log:\n{}", host.log());
}

#[tokio::test]
async fn nested_handler_errors_reach_the_calling_guest_with_their_detail() {
    let host = HostProcess::start(&["orders", "inventory"]);
    let client = host.client().await;
    let err = client
        .call_value(
            "orders.place",
            vec![cbor("\"ada\""), cbor("\"sku-2\""), cbor("5")],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HandlerError);
    assert_eq!(err.message, "inventory refused: insufficient(3)");
}

#[tokio::test]
async fn nested_call_to_a_missing_function_is_not_found_inside_the_guest() {
    let host = HostProcess::start(&["orders"]);
    let client = host.client().await;
    let err = client
        .call_value(
            "orders.place",
            vec![cbor("\"ada\""), cbor("\"sku-1\""), cbor("1")],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HandlerError);
    assert_eq!(
        err.message,
        "inventory unavailable: not-found: no host serves function `inventory.stock.reserve`"
    );
}

#[tokio::test]
async fn a_nested_call_outside_the_calls_list_is_permission_denied_before_it_is_routed() {
    // `relay.toml` says `calls = ["math.add"]`.
    let host = HostProcess::start(&["relay", "math"]);
    let client = host.client().await;
    let sum = client
        .call_value("relay.add", vec![Value::from(40), Value::from(2)])
        .await;
    assert_eq!(sum.unwrap(), Value::from(42));
    assert_eq!(try_call(&client, "relay", "math.add", &[1, 2]).await, "3");

    assert_eq!(
        seen_by_guest(&client, "relay", "math.divide", &[6, 3]).await,
        denied("permission-denied", "relay", "math.divide")
    );
    // Denied before routing: a function no host serves is not `not-found`.
    assert_eq!(
        seen_by_guest(&client, "relay", "billing.charge", &[]).await,
        denied("permission-denied", "relay", "billing.charge")
    );
}

#[tokio::test]
async fn a_plugin_without_a_calls_list_may_call_nothing() {
    // `orders` without a sidecar, `relay` with one that says nothing of calls.
    let plugins = plugin_dir(&["orders", "inventory", "relay", "math"]);
    std::fs::remove_file(plugins.path().join("orders.toml")).unwrap();
    std::fs::write(
        plugins.path().join("relay.toml"),
        "reuse_instances = false\n",
    )
    .unwrap();
    let host = HostProcess::builder().plugin_dir(plugins.path()).start();
    let client = host.client().await;

    assert_eq!(
        seen_by_guest(&client, "relay", "math.add", &[1, 2]).await,
        denied("permission-denied", "relay", "math.add")
    );
    // Not even its own functions.
    assert_eq!(
        seen_by_guest(&client, "relay", "relay.add", &[1, 2]).await,
        denied("permission-denied", "relay", "relay.add")
    );
    assert_call_error(
        client
            .call_value(
                "orders.place",
                vec![cbor("\"ada\""), cbor("\"sku-1\""), cbor("1")],
            )
            .await,
        ErrorCode::HandlerError,
        Processed::Yes,
        "inventory unavailable: permission-denied: plugin `orders` may not call \
         `inventory.stock.reserve`: add it to `calls` in `orders.toml`",
    );
}

#[tokio::test]
async fn a_plugin_built_against_host_0_1_0_calls_what_it_may_and_sees_a_denial_as_unauthenticated()
{
    let plugins = plugin_dir(&["legacy", "math"]);
    std::fs::write(
        plugins.path().join("legacy.toml"),
        "calls = [\"math.a*\"]\n",
    )
    .unwrap();
    let host = HostProcess::builder().plugin_dir(plugins.path()).start();
    let client = host.client().await;

    assert_eq!(
        try_call(&client, "legacy", "math.add", &[40, 2]).await,
        "42"
    );
    // 0.1.0 has no `permission-denied`: the closest code, the same message.
    assert_eq!(
        seen_by_guest(&client, "legacy", "math.divide", &[6, 3]).await,
        denied("unauthenticated", "legacy", "math.divide")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_entry_that_is_not_a_pattern_refuses_the_plugin_and_the_host_keeps_serving() {
    let bad = "`math.*.add` is not a function pattern: write `*`, a function name, or a prefix \
               ending in `*`";
    let plugins = plugin_dir(&["relay", "math"]);
    let sidecar = plugins.path().join("relay.toml");
    std::fs::write(&sidecar, "calls = [\"math.*.add\"]\n").unwrap();
    let host = HostProcess::builder()
        .plugin_dir(plugins.path())
        .admin()
        .start();
    let client = host.client().await;
    let relay = || async {
        let status = host.status().await;
        status
            .plugins
            .into_iter()
            .find(|p| p.name == "relay")
            .unwrap()
    };

    // At start: refused (not loaded), and everything else serves.
    let refused_for_bad_pattern = |error: &str| {
        error.starts_with(&format!("invalid `{}`: ", sidecar.display())) && error.ends_with(bad)
    };
    let refused = relay().await;
    assert_eq!(refused.sha256, None, "{refused:?}");
    let error = refused.last_refusal.expect("last_refusal").error;
    assert!(refused_for_bad_pattern(&error), "{error}");
    assert_call_error(
        client
            .call_value("relay.add", vec![Value::from(1), Value::from(2)])
            .await,
        ErrorCode::NotFound,
        Processed::No,
        "no host serves function `relay.add`",
    );
    wasmrpc_tests::assert_adds(&client, 40, 2).await;

    // Fixed, it loads; broken again while serving, the loaded settings stay.
    std::fs::write(&sidecar, "calls = [\"math.add\"]\n").unwrap();
    let loaded = eventually_async(Duration::from_secs(5), || async {
        client
            .call_value("relay.add", vec![Value::from(1), Value::from(2)])
            .await
            .is_ok_and(|sum| sum == Value::from(3))
    })
    .await;
    assert!(
        loaded,
        "the fixed sidecar did not load; log:\n{}",
        host.log()
    );
    std::fs::write(&sidecar, "calls = [\"math.*.add\"]\n").unwrap();
    let refused_again = eventually_async(Duration::from_secs(5), || async {
        host.metrics()
            .await
            .get("wasmrpc_plugin_refusals_total", &[("plugin", "relay")])
            == Some(2.0)
    })
    .await;
    assert!(refused_again, "log:\n{}", host.log());
    // Refused, and the loaded version keeps serving.
    let relay = relay().await;
    assert!(relay.sha256.is_some(), "{relay:?}");
    let error = relay.last_refusal.expect("last_refusal").error;
    assert!(refused_for_bad_pattern(&error), "{error}");
    assert_eq!(try_call(&client, "relay", "math.add", &[40, 2]).await, "42");
    assert_eq!(
        seen_by_guest(&client, "relay", "math.divide", &[6, 3]).await,
        denied("permission-denied", "relay", "math.divide")
    );
}
