//! Guests calling other functions through the host's `call` import.

use wasmrpc::ErrorCode;
use wasmrpc_tests::{HostProcess, cbor, json};

#[tokio::test]
async fn orders_place_reserves_stock_through_the_host_import() {
    let host = HostProcess::start(&["orders", "inventory"]);
    let client = host.client().await;
    let order = client
        .call(
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
        .call(
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
        .call(
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
