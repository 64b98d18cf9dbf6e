//! The `orders` plugin: imports the host interface to log, learn its region
//! and call another plugin, exchanging arguments and results as CBOR.

use ciborium::Value;
use wasmrpc::host::host::{call, log, region};
use wasmrpc::host::types::{CallError, ErrorCode, Level};

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "example:orders/orders",
    // Also generate bindings for `wasmrpc:host/types`, which the imported
    // `host` interface uses but the world does not name.
    generate_all,
});

struct Orders;

impl Guest for Orders {
    fn place(customer: String, sku: String, qty: u32) -> Result<Order, String> {
        log(
            Level::Info,
            &format!("placing order for {customer}: {qty} x {sku}"),
        );

        let args = Value::Array(vec![Value::Text(sku), Value::Integer(qty.into())]);
        let mut encoded = Vec::new();
        ciborium::into_writer(&args, &mut encoded).map_err(|e| e.to_string())?;

        let reply = call("inventory.stock.reserve", &encoded).map_err(|e| refusal(&e))?;
        let reservation: Value = ciborium::from_reader(reply.as_slice())
            .map_err(|e| format!("inventory sent invalid CBOR: {e}"))?;

        let text = |key: &str| {
            field(&reservation, key)
                .and_then(Value::as_text)
                .map(str::to_owned)
                .ok_or_else(|| format!("inventory reply lacks text field {key:?}"))
        };
        let quantity = field(&reservation, "quantity")
            .and_then(Value::as_integer)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("inventory reply lacks integer field \"quantity\"")?;
        let reservation_id = text("reservation-id")?;

        Ok(Order {
            order_id: format!("O-{customer}-{reservation_id}"),
            customer,
            sku: text("sku")?,
            quantity,
            reservation_id,
            warehouse: text("warehouse")?,
            region: region(),
        })
    }
}

/// The value under text key `key` of CBOR map `map`.
fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

/// Explains a failed `reserve` call.
fn refusal(error: &CallError) -> String {
    if error.code == ErrorCode::HandlerError {
        // The detail is the `stock-error` variant: a map of its case name to
        // its payload (null when it has none).
        let detail = error
            .detail
            .as_deref()
            .and_then(|d| ciborium::from_reader(d).ok());
        if let Some(Value::Map(cases)) = detail
            && let [(Value::Text(case), payload)] = cases.as_slice()
        {
            return match payload {
                Value::Null => format!("inventory refused: {case}"),
                Value::Text(text) => format!("inventory refused: {case}({text})"),
                Value::Integer(n) => format!("inventory refused: {case}({})", i128::from(*n)),
                other => format!("inventory refused: {case}({other:?})"),
            };
        }
        return format!("inventory refused: {}", error.message);
    }
    format!(
        "inventory unavailable: {}: {}",
        kebab(error.code),
        error.message
    )
}

/// The WIT (and wire) name of an error code.
fn kebab(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => "not-found",
        ErrorCode::InvalidArgs => "invalid-args",
        ErrorCode::HandlerError => "handler-error",
        ErrorCode::Trap => "trap",
        ErrorCode::DeadlineExceeded => "deadline-exceeded",
        ErrorCode::Cancelled => "cancelled",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::ResourceExhausted => "resource-exhausted",
        ErrorCode::LoopDetected => "loop-detected",
        ErrorCode::Unauthenticated => "unauthenticated",
        ErrorCode::PermissionDenied => "permission-denied",
        ErrorCode::ProtocolError => "protocol-error",
        ErrorCode::Internal => "internal",
    }
}

export!(Orders);
